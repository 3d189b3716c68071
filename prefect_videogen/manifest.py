"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.batch.manifest``; import from there.
"""

from prefect_videogen.batch.manifest import *  # noqa: F403
from prefect_videogen.batch.manifest import (  # noqa: F401
    FORMAT,
    MANIFEST_PREFIX,
    SAVE_CONCURRENCY,
    Manifest,
    ManifestItem,
    ManifestStore,
    _is_format_1,
    item_file_name,
    load_manifest,
    read_manifest,
)
