"""A run's spending cap: estimated costs are reserved before each submit, atomically.

Example:
    ```python
    budget = Budget(max_cost_usd=5.0)
    with budget.reserve(1.20):                   # raises BudgetExceeded, nothing sent
        job = await client.submit(plan)          # an exception here releases the reservation
    ```
"""

from __future__ import annotations

import threading
from types import TracebackType

from prefect_videogen.errors import BudgetExceeded


class Reservation:
    """Money set aside for one submit. Kept if the block exits cleanly, released if it raises.

    ``release()`` gives the money back later (a job that failed without charge); ``settle(usd)``
    replaces the estimate with the provider's reported charge.
    """

    def __init__(self, budget: Budget, usd: float) -> None:
        self.budget = budget
        self.usd = usd

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not getattr(exc, "maybe_created", False):
            self.release()

    def settle(self, usd: float) -> None:
        self.budget._adjust(usd - self.usd)
        self.usd = usd

    def release(self) -> None:
        self.settle(0.0)


class Budget:
    """Tracks what a run has committed to spend, in USD, under one lock (threads and tasks alike).

    Args:
        max_cost_usd: the cap; None means unlimited (reservations are still counted).
    """

    def __init__(self, max_cost_usd: float | None = None) -> None:
        if max_cost_usd is not None and max_cost_usd < 0:
            raise ValueError(f"max_cost_usd={max_cost_usd!r} is not allowed; allowed: a number >= 0, or empty")
        self.max_cost_usd = max_cost_usd
        self.committed_usd = 0.0
        self._lock = threading.Lock()

    @property
    def remaining_usd(self) -> float | None:
        return None if self.max_cost_usd is None else max(self.max_cost_usd - self.committed_usd, 0.0)

    def reserve(self, usd: float) -> Reservation:
        """Reserve ``usd`` or raise BudgetExceeded without reserving anything."""
        with self._lock:
            # A tiny tolerance keeps float sums like 7 x 0.1 from refusing an exact fit.
            if self.max_cost_usd is not None and self.committed_usd + usd > self.max_cost_usd + 1e-9:
                raise BudgetExceeded(
                    needed_usd=usd, remaining_usd=self.max_cost_usd - self.committed_usd, budget_usd=self.max_cost_usd
                )
            self.committed_usd += usd
        return Reservation(self, usd)

    def _adjust(self, delta: float) -> None:
        with self._lock:
            self.committed_usd += delta
