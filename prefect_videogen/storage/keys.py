"""Object keys: built from a template, every part made safe for S3 and for local directories.

A key never escapes the storage root: no absolute paths, no ``.``/``..`` segments, no backslashes,
no control characters, and bounded lengths (S3 allows 1024 bytes of UTF-8 per key; most local
filesystems 255 bytes per path segment).

Example:
    ```python
    from prefect_videogen.storage.keys import render_key

    key = render_key("{date}/{slug}-{job_id}.mp4", slug="A fox ../../etc/passwd", job_id="job/1")
    # "2026-11-22/a-fox-etc-passwd-job-1.mp4"
    ```
"""

from __future__ import annotations

import re
import string
from datetime import datetime, timezone

from slugify import slugify

from prefect_videogen.errors import InvalidVideoRequest

DEFAULT_KEY_TEMPLATE = "{date}/{slug}-{job_id}.mp4"
KEY_FIELDS = ("date", "slug", "job_id", "provider", "model", "flow_run", "item")
MAX_SLUG_CHARS = 60
MAX_PART_CHARS = 100
# S3's hard limit on a key, in bytes of UTF-8.
MAX_KEY_BYTES = 1024
# NAME_MAX of ext4, APFS and most other local filesystems, in bytes.
MAX_SEGMENT_BYTES = 255
_UNSAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._-]+")
# C0/C1 control characters and DEL: invisible in logs and UIs, and refused by some S3-compatible stores.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ALLOWED = f"placeholders {', '.join('{' + name + '}' for name in KEY_FIELDS)}, without format specs"


def safe_part(value: str, *, max_length: int = MAX_PART_CHARS) -> str:
    """Reduce ``value`` to letters, digits, dot, dash and underscore; never ``.`` or ``..``."""
    cleaned = _UNSAFE_KEY_PART.sub("-", value).strip(".-")[:max_length].strip(".-")
    return cleaned or "x"


def validate_template(template: str) -> str:
    """Check that ``template`` only uses the known placeholders, plainly (no ``{slug.attr}``, ``!r``, ``:>9``).

    Attribute and index access in a format string would let a template reach into the values'
    attributes, so only bare names are accepted.

    Raises:
        InvalidVideoRequest: an unknown placeholder, a format spec or conversion, or broken braces.
    """
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InvalidVideoRequest("key_template", template, _ALLOWED) from exc
    for name, spec, conversion in fields:
        if name not in KEY_FIELDS or spec or conversion:
            raise InvalidVideoRequest("key_template", template, _ALLOWED)
    return template


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise.

    Raises:
        InvalidVideoRequest: absolute, ``.``/``..``/empty segments, backslashes, control
            characters, or longer than S3 or a local filesystem allows.
    """
    shown = key if len(key) <= 80 else key[:77] + "..."
    allowed = (
        f"a relative key of at most {MAX_KEY_BYTES} bytes, segments of at most {MAX_SEGMENT_BYTES} bytes, "
        "without '.', '..' or empty segments, backslashes or control characters"
    )
    parts = key.split("/")
    if (
        not key
        or len(key.encode()) > MAX_KEY_BYTES
        or "\\" in key
        or _CONTROL.search(key)
        or any(part in ("", ".", "..") or len(part.encode()) > MAX_SEGMENT_BYTES for part in parts)
    ):
        raise InvalidVideoRequest("key", shown, allowed)
    return key


def render_key(template: str, **fields: str) -> str:
    """Fill a key template; every field is sanitised, so no value can add path segments.

    ``slug`` is made from the prompt (transliterated to ASCII, lowercase, at most 60 characters,
    ``video`` when nothing is left, for example an emoji-only prompt). Other fields keep letters,
    digits, ``.``, ``-`` and ``_`` (at most 100 characters). Empty segments are dropped.

    Raises:
        InvalidVideoRequest: the template is invalid, or the rendered key is not a safe key.
    """
    validate_template(template)
    values = {name: "" for name in KEY_FIELDS}
    values["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for name, value in fields.items():
        if name not in KEY_FIELDS:
            raise InvalidVideoRequest("key field", name, KEY_FIELDS)
        if name == "slug":
            values[name] = slugify(str(value), max_length=MAX_SLUG_CHARS, word_boundary=True) or "video"
        elif str(value):
            values[name] = safe_part(str(value))  # an empty value stays empty: its segment is dropped
    key = template.format(**values)
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidVideoRequest("key_template", template, "a relative key without '..' segments")
    return check_key("/".join(parts))
