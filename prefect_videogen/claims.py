"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.spend.claims``; import from there.
"""

from prefect_videogen.spend.claims import *  # noqa: F403
from prefect_videogen.spend.claims import (  # noqa: F401
    CLAIMS_PREFIX,
    DEFAULT_FRESH_SECONDS,
    FRESH_SECONDS_ENV,
    ClaimStore,
    JobClaim,
    claimed_submit,
    find_orphan,
    fresh_seconds,
)
