"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.spend.costs``; import from there.
"""

from prefect_videogen.spend.costs import *  # noqa: F403
from prefect_videogen.spend.costs import (  # noqa: F401
    BILLED_STATUSES,
    OPEN_STATUSES,
    ChargeStatus,
    Cost,
    charge_status,
    estimate_cost,
    quoted_cost,
    reported_cost,
)
