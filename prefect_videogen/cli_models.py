"""``prefect-videogen models``: the model catalog as a table for people and as JSON for machines.

Both views are built from :func:`prefect_videogen.catalog.load_catalog` (so a
``PREFECT_VIDEOGEN_CATALOG`` override shows up here as it does in a run).

JSON (``--json``) is one object; its keys are stable (new keys may be added, none renamed):

- ``catalog_as_of``: the catalog's date; ``today``: the date statuses were computed for.
- ``models``: a list, by provider then model, of objects with
  ``provider``, ``model`` (the catalog key: what ``--model`` takes), ``provider_model_id`` (the
  provider's own id, also accepted), ``default`` (the provider's default model), ``status`` (``live``,
  ``unconfirmed`` or ``retired``, retirement dates already applied), ``retired_on`` (date or null),
  ``description``, ``durations`` (a list of seconds, or ``{"min", "max"}``), ``aspect_ratios``,
  ``resolutions`` (tier -> aspect ratio -> ``WIDTHxHEIGHT``), ``default_resolution``, ``features``
  (the optional request fields it takes: ``image``, ``end_image``, ``reference_images``,
  ``negative_prompt``, ``seed``, ``generate_audio``), ``max_reference_images``, ``max_prompt_chars``,
  ``provider_options`` (wire name -> ``{"type", "values", "min", "max", "description"}``), ``price``
  (``{"unit", "per_second", "table", "per_clip", "usd_per_unit", "source", "as_of"}``: one of
  the three forms set, or null), ``source`` and
  ``unconfirmed`` (what in the row no source confirms).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect_videogen.catalog import Catalog, ModelSpec, Price, ProviderCatalog

# Short names of the optional request fields in the table (the legend under it spells them out).
FEATURE_ABBREVIATIONS = {
    "image": "image",
    "end_image": "end",
    "reference_images": "refs",
    "negative_prompt": "neg",
    "seed": "seed",
    "generate_audio": "audio",
}
FEATURE_LEGEND = (
    "features: image = first frame (--image), end = last frame (--end-image), refs xN = up to N "
    "reference images (--reference-image), neg = --negative-prompt, seed = --seed, audio = --audio; "
    "options: provider_options names (--option NAME=VALUE); * = default"
)


def status_of(spec: ModelSpec, today: date) -> str:
    """live, unconfirmed or retired: a retirement date that has passed wins over the row's status."""
    if spec.status == "retired" or (spec.retired_on is not None and spec.retired_on <= today):
        return "retired"
    return spec.status


def model_record(provider: str, entry: ProviderCatalog, key: str, today: date) -> dict[str, Any]:
    """One model as the stable JSON object documented in this module."""
    spec = entry.models[key]
    wire = entry.wire_for(spec)
    durations: Any = spec.durations if isinstance(spec.durations, list) else spec.durations.model_dump()
    return {
        "provider": provider,
        "model": key,
        "provider_model_id": spec.provider_model_id,
        "default": key == entry.default_model,
        "status": status_of(spec, today),
        "retired_on": spec.retired_on.isoformat() if spec.retired_on else None,
        "description": spec.description,
        "durations": durations,
        "aspect_ratios": list(spec.aspect_ratios),
        "resolutions": {tier: dict(sizes) for tier, sizes in spec.sizes.items()},
        "default_resolution": spec.tier,
        "features": spec.features(wire),
        "max_reference_images": wire.max_reference_images if wire and "reference_images" in wire.fields else 0,
        "max_prompt_chars": min(entry.max_prompt_chars, spec.max_prompt_chars or entry.max_prompt_chars),
        "provider_options": {
            name: option.model_dump(mode="json") for name, option in (wire.options if wire else {}).items()
        },
        "price": spec.price.model_dump(mode="json") if spec.price else None,
        "source": spec.source,
        "unconfirmed": list(spec.unconfirmed),
    }


def model_records(catalog: Catalog, provider: str | None = None, *, today: date | None = None) -> dict[str, Any]:
    """The ``--json`` document: every model of ``provider`` (all providers when None).

    Raises:
        InvalidVideoRequest: ``provider`` is not in the catalog (the message lists the known ones).
    """
    day = today or date.today()
    names = [provider] if provider is not None else sorted(catalog.providers)
    records: list[dict[str, Any]] = []
    for name in names:
        entry = catalog.provider(name)
        records.extend(model_record(name, entry, key, day) for key in sorted(entry.models))
    return {"catalog_as_of": catalog.as_of.isoformat(), "today": day.isoformat(), "models": records}


# --- the table -------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}"


def _amount(unit: str, value: float) -> str:
    return f"${value:g}" if unit == "usd" else _number(value)


def price_lines(price: Price | None) -> list[str]:
    """A price as short lines: per second per tier, or per clip when the table is not proportional."""
    if price is None:
        return ["-"]
    lines = [f"{tier} {_amount(price.unit, value)}/s" for tier, value in (price.per_second or {}).items()]
    lines += [f"{tier} {_amount(price.unit, value)}/clip" for tier, value in (price.per_clip or {}).items()]
    for tier, clips in (price.table or {}).items():
        rates = {value / int(seconds) for seconds, value in clips.items() if int(seconds) > 0}
        if len(rates) == 1:
            lines.append(f"{tier} {_amount(price.unit, rates.pop())}/s")
        else:
            lines.append(f"{tier} " + ", ".join(f"{s}s {_amount(price.unit, v)}" for s, v in clips.items()))
    return [*lines, "USD" if price.unit == "usd" else price.unit.replace("_", " ")]


def _durations_text(record: dict[str, Any]) -> str:
    durations = record["durations"]
    if isinstance(durations, dict):
        return f"{durations['min']}-{durations['max']}"
    return " ".join(str(d) for d in durations)


def _resolutions_text(record: dict[str, Any]) -> str:
    """Each tier with one size: the first of the model's aspect ratios the tier has."""
    lines = []
    for tier, sizes in record["resolutions"].items():
        aspect = next((a for a in record["aspect_ratios"] if a in sizes), next(iter(sizes), None))
        star = "*" if tier == record["default_resolution"] and len(record["resolutions"]) > 1 else ""
        lines.append(f"{tier}{star} {sizes[aspect]}" if aspect else f"{tier}{star}")
    return "\n".join(lines)


def _features_text(record: dict[str, Any]) -> str:
    parts = []
    for name in record["features"]:
        short = FEATURE_ABBREVIATIONS.get(name, name)
        if name == "reference_images" and record["max_reference_images"]:
            short += f" x{record['max_reference_images']}"
        parts.append(short)
    return " ".join(parts) or "-"


def _options_lines(record: dict[str, Any]) -> list[str]:
    """provider_options names, with their range or values when short; plain types are in --json."""
    lines = []
    for name, option in record["provider_options"].items():
        if option.get("values"):
            detail = "|".join(str(v) for v in option["values"])
        elif option.get("min") is not None or option.get("max") is not None:
            low, high = (_number(option[end]) if option.get(end) is not None else "" for end in ("min", "max"))
            detail = f"{low}..{high}"  # an open end stays empty: "..1" is "at most 1"
        else:
            detail = ""
        lines.append(f"+{name}" + (f" {detail}" if detail and len(detail) <= 12 else ""))
    return lines


def _status_text(record: dict[str, Any]) -> str:
    if record["status"] == "retired":
        return "retired " + record["retired_on"] if record["retired_on"] else "retired"
    if record["retired_on"]:
        return f"{record['status']}, retires {record['retired_on']}"
    return str(record["status"])


def _notes(record: dict[str, Any]) -> str:
    """Where the row's facts come from and what is not confirmed: shown under the table."""
    parts = []
    if record["unconfirmed"]:
        parts.append("unconfirmed: " + ", ".join(record["unconfirmed"]))
    if record["source"]:
        parts.append("source: " + record["source"])
    price = record["price"]
    if price and (price.get("source") or price.get("as_of")):
        parts.append("price: " + ", ".join(p for p in (price.get("source"), price.get("as_of")) if p))
    return "; ".join(parts)


def render_tables(document: dict[str, Any], console: Any) -> None:
    """Print one rich table per provider (fits 100 columns), then each row's sources and unconfirmed parts."""
    from rich.markup import escape
    from rich.table import Table

    providers = list(dict.fromkeys(record["provider"] for record in document["models"]))
    for provider in providers:
        records = [r for r in document["models"] if r["provider"] == provider]
        table = Table(
            title=f"[bold]{escape(provider)}[/bold]",
            title_justify="left",
            box=None,
            header_style="underline",
            leading=1,
        )
        # Widths: a Scenario id (model_kling-v3-t2v-4k), "unconfirmed", "1080p* 1920x1080"; the rest wraps.
        table.add_column("model / status", min_width=24, max_width=24, overflow="fold")
        table.add_column("seconds", min_width=7, max_width=7)
        table.add_column("aspect", max_width=9)
        table.add_column("resolutions", min_width=15, max_width=16)
        table.add_column("features, options", min_width=19, max_width=20, overflow="fold")
        table.add_column("price", min_width=10, max_width=13)
        for record in records:
            colour = {"live": "green", "unconfirmed": "yellow", "retired": "red"}[record["status"]]
            name = f"[bold]{escape(record['model'])}[/bold]" + ("*" if record["default"] else "")
            name += f"\n[{colour}]{escape(_status_text(record))}[/{colour}]"
            if record["provider_model_id"] != record["model"]:
                name += f"\n[dim]{escape(record['provider_model_id'])}[/dim]"
            table.add_row(
                name,
                _durations_text(record),
                " ".join(record["aspect_ratios"]),
                escape(_resolutions_text(record)),
                escape("\n".join([_features_text(record), *_options_lines(record)])),
                escape("\n".join(price_lines(_price(record)))),
            )
        console.print(table)
        notes = Table.grid(padding=(0, 1), pad_edge=True)  # a hanging indent: wrapped notes stay in their column
        notes.add_column(style="bold", no_wrap=True)
        notes.add_column()
        for record in records:
            if text := _notes(record):
                notes.add_row(escape(record["model"]) + ":", escape(text))
        console.print(notes, highlight=False)
        console.print()
    console.print(f"[dim]{escape(FEATURE_LEGEND)}[/dim]", highlight=False)
    console.print(
        f"[dim]catalog of {document['catalog_as_of']}; every size per aspect ratio, price and option in full: "
        "--json; correct or add a row: PREFECT_VIDEOGEN_CATALOG=overrides.json[/dim]",
        highlight=False,
    )


def _price(record: dict[str, Any]) -> Price | None:
    return Price.model_validate(record["price"]) if record["price"] else None
