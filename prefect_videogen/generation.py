"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.pipeline``; import from there.
"""

from prefect_videogen.pipeline import *  # noqa: F403
from prefect_videogen.pipeline import (  # noqa: F401
    MAX_DOWNLOAD_RESTARTS,
    generate,
    plan_request,
    sidecar_key,
    store_video,
)
