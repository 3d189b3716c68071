"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.batch.expansion``; import from there.
"""

from prefect_videogen.batch.expansion import *  # noqa: F403
from prefect_videogen.batch.expansion import (  # noqa: F401
    BatchItem,
    ID_COLUMNS,
    MAX_COLUMNS,
    MAX_ITEMS,
    PromptSource,
    REQUEST_COLUMNS,
    VideoDefaults,
    expand,
)
