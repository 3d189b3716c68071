"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.spend.budget``; import from there.
"""

from prefect_videogen.spend.budget import *  # noqa: F403
from prefect_videogen.spend.budget import (  # noqa: F401
    Budget,
    Reservation,
)
