"""The run's spending cap: reserve before a submit, release when nothing can have been created, settle to the charge."""

from __future__ import annotations

import threading

import pytest

from prefect_videogen.errors import BudgetExceeded, ProviderUnavailable
from prefect_videogen.spend.budget import Budget


def test_a_reservation_that_does_not_fit_is_refused_and_reserves_nothing():
    budget = Budget(max_cost_usd=1.0)
    budget.reserve(0.75)
    with pytest.raises(BudgetExceeded) as refused:
        budget.reserve(0.30)
    assert budget.committed_usd == pytest.approx(0.75) and budget.remaining_usd == pytest.approx(0.25)
    assert "0.3" in str(refused.value)


def test_float_sums_fit_exactly():
    budget = Budget(max_cost_usd=0.7)
    for _ in range(7):
        budget.reserve(0.1)
    assert budget.remaining_usd == pytest.approx(0.0)
    with pytest.raises(BudgetExceeded):
        budget.reserve(0.01)


def test_a_failed_submit_gives_the_money_back_unless_the_job_may_exist():
    budget = Budget(max_cost_usd=2.0)
    with pytest.raises(ValueError), budget.reserve(1.0):
        raise ValueError("refused before sending")
    assert budget.committed_usd == 0.0
    # A timeout after the body was sent may have created (and billed) the job: the money stays reserved.
    with pytest.raises(ProviderUnavailable), budget.reserve(1.0):
        raise ProviderUnavailable("read timeout", provider="apiframe", maybe_created=True)
    assert budget.committed_usd == pytest.approx(1.0)


def test_settle_replaces_the_estimate_with_the_charge_and_release_frees_it():
    budget = Budget(max_cost_usd=5.0)
    with budget.reserve(2.0) as reservation:
        pass
    reservation.settle(0.5)
    assert budget.committed_usd == pytest.approx(0.5)
    reservation.release()
    assert budget.committed_usd == 0.0 and budget.remaining_usd == 5.0


def test_without_a_cap_everything_fits_and_is_still_counted():
    budget = Budget()
    budget.reserve(1e6)
    assert budget.remaining_usd is None and budget.committed_usd == 1e6


def test_threads_never_overspend():
    budget = Budget(max_cost_usd=10.0)
    granted: list[bool] = []

    def take() -> None:
        try:
            budget.reserve(1.0)
            granted.append(True)
        except BudgetExceeded:
            granted.append(False)

    threads = [threading.Thread(target=take) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 10 and budget.committed_usd == pytest.approx(10.0)


def test_a_negative_cap_names_the_parameter():
    with pytest.raises(ValueError, match=r"max_cost_usd=-1 .*allowed"):
        Budget(-1)
