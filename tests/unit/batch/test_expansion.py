"""Prompt expansion: the template over grid x rows, stable item ids, row columns as request fields, clear errors."""

from __future__ import annotations

import pytest

from prefect_videogen.batch.expansion import PromptSource, expand
from prefect_videogen.errors import InvalidBatch


def test_the_grid_gives_every_combination_in_order():
    items = expand(
        PromptSource(template="{subject} at {time}", grid={"subject": ["a fox", "an owl"], "time": ["dawn", "dusk"]})
    )
    assert [i.original_prompt for i in items] == ["a fox at dawn", "a fox at dusk", "an owl at dawn", "an owl at dusk"]
    assert [i.row for i in items] == [1, 2, 3, 4]
    assert all(i.plan is None for i in items)  # no provider: not planned


def test_item_ids_do_not_depend_on_row_order():
    rows = [{"subject": "a fox"}, {"subject": "an owl"}]
    forward = {i.original_prompt: i.item_id for i in expand(PromptSource(template="{subject}", rows=rows))}
    backward = {i.original_prompt: i.item_id for i in expand(PromptSource(template="{subject}", rows=rows[::-1]))}
    assert forward == backward and len(set(forward.values())) == 2
    named = expand(PromptSource(template="{subject}", rows=[{"id": "fox-1", "subject": "a fox"}]))
    assert named[0].item_id == "fox-1"


def test_row_columns_named_like_request_fields_set_them_and_the_catalog_checks_them():
    [item] = expand(PromptSource(template="{subject}", rows=[{"subject": "a fox", "duration": "8"}]), "local")
    assert item.request.duration == 8 and item.plan is not None and item.plan.provider == "local"


def test_a_missing_variable_names_the_row_and_what_it_has():
    with pytest.raises(InvalidBatch) as caught:
        expand(
            PromptSource(
                template="{subject} in {place}", rows=[{"subject": "a fox", "place": "snow"}, {"subject": "an owl"}]
            )
        )
    text = str(caught.value)
    assert "row 2" in text and "place" in text and "row 1" not in text


def test_repeated_ids_are_refused():
    with pytest.raises(InvalidBatch, match="fox"):
        expand(PromptSource(template="{subject}", rows=[{"id": "fox", "subject": "a"}, {"id": "fox", "subject": "b"}]))
