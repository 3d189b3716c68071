"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.tasks.artifacts``; import from there.
"""

from prefect_videogen.tasks.artifacts import *  # noqa: F403
from prefect_videogen.tasks.artifacts import (  # noqa: F401
    DEFAULT_LINK_SECONDS,
    ProgressArtifact,
    VideoArtifacts,
    make_thumbnail,
    presigned_url,
    publish_video_artifacts,
    thumbnail_key,
)
