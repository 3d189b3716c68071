"""Prompt expansion: a template filled from a grid of variables and/or rows (list, CSV or JSONL).

Every item gets a stable id (an ``id`` column, else a hash of what defines it), so reruns and
manifests line up however the rows are ordered. Row columns named like request fields
(``duration``, ``aspect_ratio``, ``resolution``, ``model``, ``image``) set that field for the row.

Example:
    ```python
    source = PromptSource(template="{subject} at {time_of_day}",
                          grid={"subject": ["a fox", "an owl"], "time_of_day": ["dawn", "dusk"]})
    items = expand(source)          # 4 items
    items = expand(source, "local")  # each item's plan is checked against the catalog
    ```
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import string
from typing import Any

import fsspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_videogen.catalog import VideoPlan, load_catalog
from prefect_videogen.errors import InvalidBatch, VideoGenError
from prefect_videogen.models import AspectRatio, Resolution, VideoRequest
from prefect_videogen.storage.base import safe_part

REQUEST_COLUMNS = ("model", "duration", "aspect_ratio", "resolution", "image")
ID_COLUMNS = ("id", "item_id")
MAX_ITEMS = 10_000


class VideoDefaults(BaseModel):
    """Request fields every item starts from (rows may override them)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Model from the provider's catalog; empty = its default.")
    duration: int = Field(default=4, gt=0, description="Seconds.")
    aspect_ratio: AspectRatio = Field(default="16:9", description="16:9 or 9:16.")
    resolution: Resolution = Field(default="standard", description="standard or high.")
    provider_options: dict[str, Any] = Field(default_factory=dict, description="Passed through to the provider.")


class PromptSource(BaseModel):
    """Where a batch's prompts come from: a template over a grid and/or rows."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        default="{prompt}",
        description="Python format template over the variables, e.g. '{subject} at {time_of_day}, {style}'.",
    )
    grid: dict[str, list[str]] = Field(
        default_factory=dict, description="Variables to combine: every combination becomes an item."
    )
    rows: list[dict[str, Any]] = Field(
        default_factory=list, description="One item per row (crossed with the grid); columns are variables."
    )
    rows_file: str | None = Field(
        default=None, description="A CSV or JSONL file (local path or fsspec URL) of rows, read with the rows above."
    )
    defaults: VideoDefaults = Field(default_factory=VideoDefaults, description="Request fields of every item.")


class BatchItem(BaseModel):
    """One expanded prompt, ready to validate."""

    item_id: str
    row: int = Field(description="1-based position in the expansion, for error messages.")
    variables: dict[str, str]
    original_prompt: str = Field(description="The template filled in, before any rewrite.")
    request: VideoRequest
    plan: VideoPlan | None = Field(default=None, description="The request checked against the catalog.")


def _read_rows(path: str) -> list[dict[str, Any]]:
    with fsspec.open(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    if path.lower().endswith((".jsonl", ".ndjson")):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InvalidBatch([f"{path} line {number}: not JSON ({exc.msg})"]) from exc
        return rows
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def _template_fields(template: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise InvalidBatch([f"template {template!r}: {exc}"]) from exc


def expand(source: PromptSource, provider: str | None = None) -> list[BatchItem]:
    """Fill the template for every row x grid combination; with ``provider``, plan each against the catalog.

    Raises:
        InvalidBatch: a row misses a template variable, ids repeat, a field is invalid, the catalog
            refuses a value, or there are no items; every problem is listed with its row.
    """
    catalog = load_catalog() if provider else None
    rows = list(source.rows) + (_read_rows(source.rows_file) if source.rows_file else [])
    names = list(source.grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*(source.grid[n] for n in names))]
    fields = _template_fields(source.template)
    problems: list[str] = []
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    for number, (row, combo) in enumerate(itertools.product(rows or [{}], combos), start=1):
        if number > MAX_ITEMS:
            problems.append(f"more than {MAX_ITEMS} items; split the batch")
            break
        variables = {str(k): "" if v is None else str(v) for k, v in {**row, **combo}.items()}
        missing = [name for name in fields if name not in variables]
        if missing:
            problems.append(f"row {number}: template variable(s) {', '.join(missing)} missing; row has {sorted(variables)}")
            continue
        prompt = source.template.format(**variables)
        overrides = {k: row[k] for k in REQUEST_COLUMNS if k in row and row[k] not in (None, "")}
        explicit_id = next((str(row[c]) for c in ID_COLUMNS if row.get(c) not in (None, "")), None)
        identity = json.dumps({"prompt": prompt, **overrides}, sort_keys=True, default=str)
        item_id = safe_part(explicit_id, max_length=64) if explicit_id else "item-" + hashlib.sha256(identity.encode()).hexdigest()[:10]
        if item_id in seen:
            problems.append(f"row {number}: item id {item_id!r} repeats row {seen[item_id]} (same prompt and settings)")
            continue
        seen[item_id] = number
        try:
            request = VideoRequest(prompt=prompt, **{**source.defaults.model_dump(), **overrides})
        except ValidationError as exc:
            problems.extend(
                f"row {number} ({item_id}): {'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                for e in exc.errors()
            )
            continue
        plan = None
        if catalog is not None and provider is not None:
            try:
                plan = catalog.plan(provider, request)
            except VideoGenError as exc:
                problems.append(f"row {number} ({item_id}): {exc}")
                continue
        items.append(BatchItem(item_id=item_id, row=number, variables=variables, original_prompt=prompt,
                               request=request, plan=plan))
    if not items and not problems:
        problems.append("the batch has no items: give rows, rows_file or grid values")
    if problems:
        raise InvalidBatch(problems)
    return items
