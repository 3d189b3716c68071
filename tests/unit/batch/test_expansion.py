"""Prompt expansion: the template over grid x rows, stable item ids, row columns as request fields, clear errors."""

from __future__ import annotations

import hashlib
import json

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


# -- the request fields of the models beyond Sora, per row --------------------------------------------

EVERY_FIELD_MODEL = {
    "provider_model_id": "square-card",
    "durations": [1, 2],
    "aspect_ratios": ["1:1"],
    "sizes": {"480p": {"1:1": "480x480"}},
    "wire": {
        "fields": {
            "image": "image",
            "end_image": "last_frame",
            "reference_images": "refs",
            "negative_prompt": "negative",
            "seed": "seed",
            "generate_audio": "audio",
        },
        "max_reference_images": 3,
        "options": {"style": {"type": "string", "values": ["ink", "chalk"]}, "grain": {"type": "number", "max": 1}},
    },
}


@pytest.fixture
def square(tmp_path, monkeypatch):
    """A local model with every optional field (catalog override), images under the policy's root."""
    from PIL import Image

    from prefect_videogen.policy import WorkerPolicy

    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"providers": {"local": {"models": {"square": EVERY_FIELD_MODEL}}}}))
    monkeypatch.setenv("PREFECT_VIDEOGEN_CATALOG", str(catalog))
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (64, 64), "teal").save(tmp_path / name)
    return WorkerPolicy(allowed_roots=[str(tmp_path)])


def test_csv_columns_set_the_new_fields_per_row(square, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "prompt,model,duration,aspect_ratio,end_image,reference_images,negative_prompt,seed,generate_audio,"
        "option.style,option.grain\n"
        f"a fox,square,1,1:1,{tmp_path / 'a.png'},{tmp_path / 'b.png'} | {tmp_path / 'c.png'},rain,7,TRUE,ink,0.5\n"
        "an owl,square,2,1:1,,,,,false,,\n"
    )
    source = PromptSource(rows_file=str(rows), defaults={"provider_options": {"style": "chalk"}, "seed": 1})
    fox, owl = expand(source, "local", policy=square)
    assert fox.request.end_image == str(tmp_path / "a.png")
    assert fox.request.reference_images == [str(tmp_path / "b.png"), str(tmp_path / "c.png")]
    assert (fox.request.negative_prompt, fox.request.seed, fox.request.generate_audio) == ("rain", 7, True)
    assert fox.request.provider_options == {"style": "ink", "grain": 0.5}  # cells read as JSON when they parse
    assert fox.plan is not None and fox.plan.size == "480x480" and fox.plan.request.resolution == "480p"
    # Empty cells leave the defaults.
    assert (owl.request.end_image, owl.request.reference_images, owl.request.negative_prompt) == (None, [], None)
    assert (owl.request.seed, owl.request.generate_audio, owl.request.provider_options) == (
        1,
        False,
        {"style": "chalk"},
    )


def test_jsonl_rows_take_lists_and_booleans(square, tmp_path):
    rows = tmp_path / "rows.jsonl"
    row = {
        "prompt": "a fox",
        "model": "square",
        "duration": 1,
        "aspect_ratio": "1:1",
        "reference_images": [str(tmp_path / "a.png"), str(tmp_path / "b.png")],
        "generate_audio": False,
        "seed": 3,
        "option.grain": 1,
    }
    rows.write_text(json.dumps(row) + "\n")
    [item] = expand(PromptSource(rows_file=str(rows)), "local", policy=square)
    assert item.request.reference_images == row["reference_images"]
    assert (item.request.generate_audio, item.request.seed, item.request.provider_options) == (False, 3, {"grain": 1})


def test_bad_cells_name_row_column_value_and_what_is_allowed(square, tmp_path):
    from PIL import Image

    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"  # a real image, outside the allowed root
    Image.new("RGB", (64, 64)).save(outside)
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "prompt,model,duration,aspect_ratio,seed,generate_audio,option.style,reference_images,end_image\n"
        "a fox,square,1,1:1,seven,maybe,,,\n"
        "an owl,square,1,1:1,,,oil,,\n"
        f"a crow,square,1,1:1,,,,{tmp_path / 'a.png'}|{outside},\n"
        "a wren,square,1,1:1,,,,,https://example.com/x.png\n"
        "a hare,square,1,1:1,,,,a.png||b.png,\n"
        "a mole,,1,16:9,,,,,\n"
    )
    with pytest.raises(InvalidBatch) as caught:
        expand(PromptSource(rows_file=str(rows), defaults={"negative_prompt": "rain"}), "local", policy=square)
    problems = caught.value.problems
    assert [p.split(" (")[0] for p in problems] == ["row 1", "row 1", "row 2", "row 3", "row 4", "row 5", "row 6"]
    assert "seed='seven' is not allowed; allowed: a whole number from 0 to 4294967295" in problems[0]
    assert "generate_audio='maybe' is not allowed; allowed: true or false" in problems[1]
    assert (
        "provider_options.style='oil' is not allowed for local model 'square'; allowed: 'ink', 'chalk'" in problems[2]
    )
    # Images in the new columns pass the same worker-policy checks as `image`, before any call.
    assert f"reference_images[1]={str(outside)!r} is refused by the worker policy" in problems[3]
    assert "end_image='https://example.com/x.png' is not allowed; allowed: a local file path" in problems[4]
    assert "reference_images=['a.png', '', 'b.png']: Value error, a reference image is blank" in problems[5]
    # A model without the field: the catalog's error names the models that have it.
    assert "negative_prompt='rain' is not allowed for local model 'title-card'" in problems[6]
    assert "local/square" in problems[6]


def test_item_ids_of_rows_without_the_new_columns_are_unchanged():
    """Ids hash the prompt and the row's own settings: rows written before these columns keep their ids."""
    [item] = expand(PromptSource(rows=[{"prompt": "a fox", "duration": "8"}]))
    identity = json.dumps({"prompt": "a fox", "duration": "8"}, sort_keys=True)
    assert item.item_id == "item-" + hashlib.sha256(identity.encode()).hexdigest()[:10]
