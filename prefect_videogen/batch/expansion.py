"""Prompt expansion: a template filled from a grid of variables and/or rows (list, CSV or JSONL).

Every item gets a stable id (an ``id`` column, else a hash of what defines it), so reruns and
manifests line up however the rows are ordered. Row columns named like request fields set that
field for the row: ``model``, ``duration``, ``aspect_ratio``, ``resolution``, ``image``,
``end_image``, ``reference_images``, ``negative_prompt``, ``seed``, ``generate_audio``; an empty
cell leaves the field to the defaults. In a CSV cell, ``reference_images`` are separated by ``|``
(a character URLs must escape and file names rarely hold), ``generate_audio`` is ``true`` or
``false``; a JSONL row may give a list and a boolean. ``option.NAME`` columns set
``provider_options[NAME]`` (over the defaults' options); a text value is read as JSON when it
parses (``0.5``, ``true``, ``"5"``), else as text.

Example:
    ```python
    source = PromptSource(template="{subject} at {time_of_day}",
                          grid={"subject": ["a fox", "an owl"], "time_of_day": ["dawn", "dusk"]})
    items = expand(source)          # 4 items
    items = expand(source, "local")  # each item's plan is checked against the catalog
    ```
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import json
import string
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_videogen.catalog import VideoPlan, load_catalog
from prefect_videogen.errors import InvalidBatch, PolicyViolation, VideoGenError
from prefect_videogen.models import AspectRatio, Resolution, VideoRequest, refuse_bool
from prefect_videogen.policy import (
    WorkerPolicy,
    check_request_inputs,
    fetch_url,
    has_scheme,
    open_local_file,
    read_limited,
)
from prefect_videogen.policy import current as current_policy
from prefect_videogen.storage.base import safe_part

REQUEST_COLUMNS = (
    "model",
    "duration",
    "aspect_ratio",
    "resolution",
    "image",
    "end_image",
    "reference_images",
    "negative_prompt",
    "seed",
    "generate_audio",
)
OPTION_PREFIX = "option."
# Separates the reference images of one CSV cell: URLs must percent-encode "|" (RFC 3986) and file
# names rarely hold it, whereas ";" and "," occur in both.
REFERENCE_SEPARATOR = "|"
ID_COLUMNS = ("id", "item_id")
MAX_ITEMS = 10_000
# Columns per rows-file row: a wide header of a capped file could still make every row a huge dict.
MAX_COLUMNS = 200


def _request_field(name: str) -> Any:
    """VideoRequest's field ``name`` (bounds, default and help text) for a model that sets it for many requests."""
    return copy.copy(VideoRequest.model_fields[name])


class VideoDefaults(BaseModel):
    """Request fields every item starts from (rows may override them)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Model from the provider's catalog; empty = its default.")
    duration: int = Field(default=4, gt=0, description="Seconds.")
    aspect_ratio: AspectRatio = _request_field("aspect_ratio")
    resolution: Resolution | None = _request_field("resolution")
    reference_images: list[str] = _request_field("reference_images")
    negative_prompt: str | None = _request_field("negative_prompt")
    seed: int | None = _request_field("seed")
    generate_audio: bool | None = _request_field("generate_audio")
    provider_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Model-specific extras of every item, checked against the names and values the model declares "
        "in the catalog; a row's option.NAME columns are set over them.",
    )

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_not_bool(cls, value: Any) -> Any:
        return refuse_bool("duration", value)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_not_bool(cls, value: Any) -> Any:
        return refuse_bool("seed", value)


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
        default_factory=list,
        description="One item per row (crossed with the grid); columns are variables. Columns named like request "
        "fields set them for the row (model, duration, aspect_ratio, resolution, image, end_image, reference_images, "
        "negative_prompt, seed, generate_audio); option.NAME columns set provider_options.",
    )
    rows_file: str | None = Field(
        default=None,
        description="A CSV or JSONL file of rows, read with the rows above (same columns; in a CSV cell, "
        "reference_images are separated by |): a local path under the worker's allowed roots, or an http(s) URL "
        "where the worker allows them.",
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


def _parse_rows(text: str, name: str) -> list[dict[str, Any]]:
    """Rows of a CSV or JSONL text; errors give line numbers, never the file's content."""
    rows: list[dict[str, Any]] = []
    if name.lower().endswith((".jsonl", ".ndjson")):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidBatch([f"rows_file line {number}: not JSON ({exc.msg})"]) from None
                if not isinstance(row, dict):
                    raise InvalidBatch([f"rows_file line {number}: not a JSON object of column: value"])
                if len(row) > MAX_COLUMNS:
                    raise InvalidBatch([f"rows_file line {number}: more than {MAX_COLUMNS} columns"])
                rows.append(row)
                if len(rows) > MAX_ITEMS:
                    break
        return rows
    try:
        reader = csv.DictReader(io.StringIO(text))
        if len(reader.fieldnames or ()) > MAX_COLUMNS:
            raise InvalidBatch([f"rows_file: more than {MAX_COLUMNS} columns"])
        for row in reader:
            rows.append({str(k): v for k, v in row.items()})
            if len(rows) > MAX_ITEMS:
                break
    except csv.Error as exc:
        raise InvalidBatch([f"rows_file: not a CSV file ({type(exc).__name__})"]) from None
    return rows


def _read_rows(path: str, policy: WorkerPolicy | None = None) -> list[dict[str, Any]]:
    """Read a rows file the worker's policy allows: a local file under its roots, or (when the worker
    allows it) an http(s) URL on an allowed address; size capped before reading, rows capped after."""
    policy = current_policy(policy)
    setting = "PREFECT_VIDEOGEN_MAX_ROWS_FILE_BYTES"
    scheme = urlsplit(path).scheme.lower() if has_scheme(path) else ""
    if scheme in ("http", "https"):
        if not policy.allow_url_rows_files:
            raise PolicyViolation(
                "rows_file",
                path,
                "rows files from URLs are off on this worker",
                f"a local file ({policy.roots_text()}), or URLs once the worker sets "
                "PREFECT_VIDEOGEN_ALLOW_URL_ROWS_FILES=true",
            )
        data = fetch_url("rows_file", path, policy, max_bytes=policy.max_rows_file_bytes, setting=setting)
    elif scheme and scheme != "file":
        raise PolicyViolation(
            "rows_file",
            path,
            f"the {scheme!r} protocol is not read for a run",
            "a local CSV or JSONL file under the allowed roots, or an http(s) URL where the worker allows URLs",
        )
    else:
        with open_local_file(
            "rows_file",
            path,
            policy,
            max_bytes=policy.max_rows_file_bytes,
            setting=setting,
            missing="an existing local CSV or JSONL file",
        ) as (handle, _):
            data = read_limited(handle, policy.max_rows_file_bytes)
        if len(data) > policy.max_rows_file_bytes:
            raise PolicyViolation(
                "rows_file",
                path,
                "the file grew while it was read",
                f"a file of at most {policy.max_rows_file_bytes} bytes ({setting})",
            )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidBatch(["rows_file: not UTF-8 text (a CSV or JSONL file)"]) from None
    rows = _parse_rows(text, urlsplit(path).path if scheme else path)
    if len(rows) > MAX_ITEMS:
        raise InvalidBatch([f"rows_file has more than {MAX_ITEMS} rows; split the batch"])
    return rows


def parse_option_value(text: str) -> Any:
    """A provider option typed as text (a CSV cell, ``--option NAME=VALUE``): JSON when it parses, else the text.

    Example:
        ```python
        assert parse_option_value("0.5") == 0.5 and parse_option_value("true") is True
        assert parse_option_value("close-up") == "close-up" and parse_option_value('"5"') == "5"
        ```
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


_BOOLEAN_CELLS = {"true": True, "false": False}


def row_fields(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The request fields a row sets (empty cells left out) and its bad cells, each as an error text.

    Cells are read as a CSV gives them (text) or a JSONL row does (numbers, booleans, lists).
    """
    fields: dict[str, Any] = {}
    bad: list[str] = []
    for column in REQUEST_COLUMNS:
        value = row.get(column)
        if value is None or value == "" or value == []:
            continue
        if column == "reference_images" and not isinstance(value, list):
            if not isinstance(value, str):
                bad.append(
                    _cell_error(column, value, f"image paths or http(s) URLs separated by {REFERENCE_SEPARATOR!r}")
                )
                continue
            value = [part.strip() for part in value.split(REFERENCE_SEPARATOR)]
        elif column == "generate_audio" and not isinstance(value, bool):
            value = _BOOLEAN_CELLS.get(str(value).strip().lower())
            if value is None:
                bad.append(_cell_error(column, row[column], "true or false"))
                continue
        elif column == "seed" and isinstance(value, str):
            text = value.strip()
            if not (text.isascii() and text.isdigit()):
                bad.append(_cell_error(column, value, "a whole number from 0 to 4294967295"))
                continue
            value = int(text)
        fields[column] = value
    options = {
        str(column)[len(OPTION_PREFIX) :]: parse_option_value(value) if isinstance(value, str) else value
        for column, value in row.items()
        if str(column).startswith(OPTION_PREFIX) and value not in (None, "")
    }
    for name in options:
        if not name.strip():
            bad.append(_cell_error(OPTION_PREFIX, options[name], "option.NAME columns with a NAME"))
    if options:
        fields["provider_options"] = options
    return fields, bad


def _cell_error(column: str, value: Any, allowed: str) -> str:
    return f"{column}={_value_text((column,), value)} is not allowed; allowed: {allowed}"


def _template_fields(template: str) -> list[str]:
    """The template's placeholders: plain ``{name}`` only (format specs such as ``{p:>3000000000}``
    would let a run allocate without bound; conversions, attribute and index access reach into
    objects), all refused with the field named."""
    allowed = "plain {name} placeholders (no format spec, conversion, attribute or index access)"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidBatch([f"template={template!r}: {exc}; allowed: {allowed}"]) from None
    fields = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if not name.isidentifier() or spec or conversion:
            what = (
                "a positional placeholder"
                if not name
                else "a format spec"
                if spec
                else "a conversion"
                if conversion
                else "attribute or index access"
            )
            raise InvalidBatch([f"template field {shown} is {what}; allowed: {allowed}"])
        fields.append(name)
    return fields


def _count_items(source: PromptSource, rows: int) -> int:
    """Items the source would expand to (rows x the product of the grid's value counts), computed
    without expanding and bounded: past MAX_ITEMS the exact number does not matter."""
    count = max(rows, 1)
    for values in source.grid.values():
        count *= len(values)
        if count > MAX_ITEMS:
            sizes = " x ".join(str(len(v)) for v in source.grid.values())
            raise InvalidBatch(
                [f"the batch has more than {MAX_ITEMS} items ({max(rows, 1)} row(s) x grid {sizes}); split the batch"]
            )
    if count > MAX_ITEMS:
        raise InvalidBatch([f"the batch has more than {MAX_ITEMS} items ({rows} rows); split the batch"])
    return count


def _value_text(loc: tuple[Any, ...], value: Any) -> str:
    """A bad value as shown in an error: prompts and long strings (possibly a rows file's text) by length only."""
    text = repr(value)
    if isinstance(value, str) and (loc[-1:] == ("prompt",) or len(text) > 60):
        return f"<{len(value)} characters>"
    return text


def expand(source: PromptSource, provider: str | None = None, *, policy: WorkerPolicy | None = None) -> list[BatchItem]:
    """Fill the template for every row x grid combination; with ``provider``, plan each against the catalog.

    ``rows_file`` and each item's image are checked against the worker's ``policy`` (from the
    environment when not given); the grid's size is checked before anything is expanded.

    Raises:
        PolicyViolation: ``rows_file`` is not something the worker's policy lets a run read.
        InvalidBatch: a row misses a template variable, ids repeat, a field is invalid, the catalog
            refuses a value, or there are no items; every problem is listed with its row.
    """
    catalog = load_catalog() if provider else None
    fields = _template_fields(source.template)
    _count_items(source, len(source.rows))
    file_rows = _read_rows(source.rows_file, policy) if source.rows_file else []
    rows = list(source.rows) + file_rows
    _count_items(source, len(rows))
    names = list(source.grid)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*(source.grid[n] for n in names))]
    problems: list[str] = []
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    checked_images: dict[tuple[str | None, ...], str | None] = {}
    for number, ((index, row), combo) in enumerate(itertools.product(enumerate(rows or [{}]), combos), start=1):
        variables = {str(k): "" if v is None else str(v) for k, v in {**row, **combo}.items()}
        missing = [name for name in fields if name not in variables]
        if missing:
            if index < len(source.rows) or not file_rows:
                problems.append(
                    f"row {number}: template variable(s) {', '.join(missing)} missing; row has {sorted(variables)}"
                )
            else:
                # A rows file's columns are not listed: its first line could be anything the worker can read.
                problems.append(
                    f"row {number} (rows_file row {index - len(source.rows) + 1}): template "
                    f"variable(s) {', '.join(missing)} missing; grid has {sorted(combo)}, "
                    "the file's columns are not shown"
                )
            continue
        prompt = source.template.format(**variables)
        overrides, bad_cells = row_fields(row)
        explicit_id = next((str(row[c]) for c in ID_COLUMNS if row.get(c) not in (None, "")), None)
        identity = json.dumps({"prompt": prompt, **overrides}, sort_keys=True, default=str)
        item_id = (
            safe_part(explicit_id, max_length=64)
            if explicit_id
            else "item-" + hashlib.sha256(identity.encode()).hexdigest()[:10]
        )
        if item_id in seen:
            problems.append(f"row {number}: item id {item_id!r} repeats row {seen[item_id]} (same prompt and settings)")
            continue
        seen[item_id] = number
        if bad_cells:
            problems.extend(f"row {number} ({item_id}): {cell}" for cell in bad_cells)
            continue
        try:
            defaults = source.defaults.model_dump()
            options = {**defaults["provider_options"], **overrides.get("provider_options", {})}
            request = VideoRequest(prompt=prompt, **{**defaults, **overrides, "provider_options": options})
        except ValidationError as exc:
            problems.extend(
                f"row {number} ({item_id}): {'.'.join(map(str, e['loc']))}={_value_text(e['loc'], e.get('input'))}: {e['msg']}"
                for e in exc.errors()
            )
            continue
        images = (request.image, request.end_image, *request.reference_images)
        if provider is not None and images not in checked_images:
            # The pre-flight policy and content check, once per distinct set of images (not per item).
            try:
                check_request_inputs(request, policy, provider=provider)
                checked_images[images] = None
            except VideoGenError as exc:
                checked_images[images] = str(exc)
        if checked_images.get(images):
            problems.append(f"row {number} ({item_id}): {checked_images[images]}")
            continue
        plan = None
        if catalog is not None and provider is not None:
            try:
                plan = catalog.plan(provider, request)
            except VideoGenError as exc:
                problems.append(f"row {number} ({item_id}): {exc}")
                continue
        items.append(
            BatchItem(
                item_id=item_id, row=number, variables=variables, original_prompt=prompt, request=request, plan=plan
            )
        )
    if not items and not problems:
        problems.append("the batch has no items: give rows, rows_file or grid values")
    if problems:
        raise InvalidBatch(problems)
    return items
