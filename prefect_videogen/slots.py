"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.tasks.slots``; import from there.
"""

from prefect_videogen.tasks.slots import *  # noqa: F403
from prefect_videogen.tasks.slots import (  # noqa: F401
    Bound,
    ProviderSlot,
    release_current_slot,
)
