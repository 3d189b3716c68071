"""Python's cyclic garbage collector while a batch's items run.

A batch keeps a large, long-lived heap in its process (Prefect's and its dependencies' modules, the
run context that holds every task run's final state, the batch's own records) while every item
makes thousands of short-lived objects. With the collector's defaults (a young collection every 700
new objects, a full one each time a quarter more objects have survived into the old generation),
the full collections walk that whole heap again and again, a larger share of the flow's CPU the
larger the batch (BENCHMARKS.md, "twelfth look"). While a batch's items run, this module

- freezes what exists when they start (``gc.freeze``): the collector skips those objects. They are
  still freed by reference counting as usual; only garbage cycles among them wait for the unfreeze.
- lets the young generation grow to :data:`YOUNG_THRESHOLD` objects before it is collected
  (``gc.set_threshold``): fewer of an item's objects live long enough to be promoted to the old
  generation, so full collections come less often.

Both settings belong to the whole process, so they are counted: the first batch to start changes
them, the last to end puts back what it found. A process that froze its own heap (``gc.freeze``
before forking workers) or turned automatic collection off (a threshold of 0) keeps that.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Young objects allocated (net of those freed) before a young collection while a batch runs;
#: Python's default is 700.
YOUNG_THRESHOLD = 10_000

_lock = threading.Lock()
_running = 0
_saved: tuple[int, int, int] = (0, 0, 0)
_froze = False


@contextmanager
def collector_for_batch() -> Iterator[None]:
    """Run the body with the collector set for a batch (see the module's docstring); restore after."""
    global _running, _saved, _froze
    with _lock:
        if _running == 0:
            _saved = gc.get_threshold()
            _froze = gc.get_freeze_count() == 0  # the process's own frozen heap stays its own
            if _froze:
                gc.freeze()
            if _saved[0]:  # 0: automatic collection is off in this process, and stays off
                gc.set_threshold(max(YOUNG_THRESHOLD, _saved[0]), _saved[1], _saved[2])
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                gc.set_threshold(*_saved)
                if _froze:
                    gc.unfreeze()
