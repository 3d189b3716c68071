"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.batch.expansion``; import from there.
"""

from prefect_videogen.batch.expansion import *  # noqa: F403
from prefect_videogen.batch.expansion import (  # noqa: F401
    ID_COLUMNS,
    MAX_COLUMNS,
    MAX_ITEMS,
    REQUEST_COLUMNS,
    BatchItem,
    PromptSource,
    VideoDefaults,
    expand,
)
