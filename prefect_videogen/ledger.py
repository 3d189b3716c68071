"""Old import path, kept so code and pickled Prefect results from earlier versions still load.

The module lives at ``prefect_videogen.spend.ledger``; import from there.
"""

from prefect_videogen.spend.ledger import *  # noqa: F403
from prefect_videogen.spend.ledger import (  # noqa: F401
    LEDGER_PREFIX,
    Ledger,
    LedgerEntry,
    summarize,
)
