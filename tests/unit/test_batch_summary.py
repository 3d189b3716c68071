"""How a batch run reads in the runs list: its name, its final state and its summary text."""

from __future__ import annotations

from prefect.states import StateType

from prefect_videogen.flows.batch import BatchResult, batch_final_state, summary_text


def result(counts: dict[str, int], preview: bool = False) -> BatchResult:
    return BatchResult(
        batch_id="b", preview=preview, items=[], total_estimated_usd=1.0, total_cost_usd=0.5, counts=counts
    )


def test_summary_text_is_human_and_stored_first():
    assert summary_text({"rejected": 1, "stored": 2}) == "2 stored, 1 rejected"
    assert summary_text({}) == "no items"


def test_partly_failed_batch_is_a_named_completed_state_with_counts():
    state = batch_final_state(result({"stored": 2, "rejected": 1}))
    assert state.type == StateType.COMPLETED and state.name == "Partially failed"
    assert state.message == "2 stored, 1 rejected; charged $0.50"
    assert batch_final_state(result({"failed": 2})).name == "All items failed"


def test_clean_batch_is_plain_completed():
    state = batch_final_state(result({"stored": 3}))
    assert state.name == "Completed" and state.message.startswith("3 stored")
    assert batch_final_state(result({"preview": 3}, preview=True)).name == "Completed"


def test_run_name_tells_batches_apart():
    from prefect_videogen.batch.expansion import PromptSource
    from prefect_videogen.flows.batch import run_name_for

    prompts = PromptSource(
        template="{subject} at {time_of_day}",
        grid={"subject": ["a fox", "an owl"], "time_of_day": ["dawn", "dusk", "noon"]},
    )
    assert run_name_for({"prompts": prompts, "batch_name": None}) == "generate-videos a fox at dawn (6 items)"
    assert run_name_for({"prompts": prompts.model_dump(), "batch_name": "spring"}) == "generate-videos spring"
    assert run_name_for({"prompts": {"template": "{p}", "rows_file": "p.csv"}}) == "generate-videos {p} (rows of p.csv)"
