"""In-process progress events, so a CLI or notebook can show what tasks are doing.

Tasks publish; listeners (for example the CLI's rich progress bar) subscribe. Listeners are called
in the publishing thread and must be quick; a failing listener never breaks a run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("prefect_videogen.progress")


@dataclass(frozen=True)
class ProgressEvent:
    kind: str  # "submitted", "status", "stored"
    provider: str
    job_id: str
    progress: float | None = None
    status: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[ProgressEvent], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Add ``listener``; returns a function that removes it."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(event: ProgressEvent) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a display problem must never fail a paid job
            logger.debug("progress listener failed", exc_info=True)
