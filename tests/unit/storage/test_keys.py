"""Object keys from hostile prompts and templates: they never escape the storage root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prefect_videogen.errors import InvalidVideoRequest
from prefect_videogen.storage import VideoStorage, check_key, render_key
from prefect_videogen.storage.keys import DEFAULT_KEY_TEMPLATE, MAX_KEY_BYTES, MAX_SLUG_CHARS

HOSTILE = {
    "traversal": "../../etc/passwd",
    "absolute": "/etc/passwd",
    "backslashes": "..\\..\\windows\\system32",
    "nul and controls": "a\x00b\x1b[31mred\x7f\r\nnext",
    "10k chars": "x" * 10_000,
    "10k words": "fox " * 2_500,
    "unicode": "Ünïcödé 日本語の狐",
    "emoji only": "🎬🦊🔥",
    "dots only": "....",
    "slashes": "a/b/c/../../..",
    "url": "s3://other-bucket/key?x=1#frag",
    "format braces": "{date}{slug.__class__}",
}
SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.mark.parametrize("prompt", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("job_id", ["job_1", "../../../root", "a\x00b", "x" * 10_000, "任务/🎬"])
def test_hostile_prompt_and_job_id_make_a_safe_key_inside_the_root(prompt, job_id, tmp_path):
    key = render_key(DEFAULT_KEY_TEMPLATE, slug=prompt, job_id=job_id, provider="local")

    parts = key.split("/")
    assert len(parts) == 2  # the template's one folder (date); no value adds segments
    assert all(SAFE.match(part) and part not in (".", "..") for part in parts), key
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert len(parts[1].split("-")[0]) <= MAX_SLUG_CHARS
    root = tmp_path / "videos"
    target = Path(VideoStorage(str(root)).path(key)).resolve()
    assert target.is_relative_to(root.resolve())


def test_slug_reads_like_the_prompt():
    key = render_key("{slug}.mp4", slug="A red fox, running through fresh snow!")
    assert key == "a-red-fox-running-through-fresh-snow.mp4"


def test_unicode_is_transliterated_and_emoji_falls_back():
    assert render_key("{slug}", slug="Ünïcödé") == "unicode"
    assert render_key("{slug}", slug="🎬🦊") == "video"


def test_empty_fields_drop_their_segment():
    assert render_key("{flow_run}/{slug}.mp4", slug="fox", flow_run="") == "fox.mp4"


@pytest.mark.parametrize(
    "template",
    [
        "../{slug}.mp4",
        "/{slug}/../../x",
        "{slug.__class__}",
        "{slug!r}",
        "{slug:>300}",
        "{unknown}",
        "{}",
        "{slug",
        "a\x00{slug}",
        "{slug}\\x.mp4",
        "x" * 300 + "/{slug}",
    ],
)
def test_unsafe_templates_are_refused(template):
    with pytest.raises(InvalidVideoRequest) as info:
        render_key(template, slug="fox")
    assert info.value.field in ("key_template", "key")


def test_unknown_field_is_refused_not_ignored():
    with pytest.raises(InvalidVideoRequest, match="key field"):
        render_key("{slug}", slug="fox", colour="red")


@pytest.mark.parametrize(
    "key", ["", "/abs.mp4", "a//b.mp4", "a/../b.mp4", "./a.mp4", "a\\b.mp4", "a\x00.mp4", "a\n.mp4", "k" * 1025]
)
def test_check_key_refuses_keys_that_could_escape_or_break(key):
    with pytest.raises(InvalidVideoRequest):
        check_key(key)


def test_storage_refuses_a_hostile_key_before_touching_the_filesystem(tmp_path):
    storage = VideoStorage(str(tmp_path / "videos"))
    with pytest.raises(InvalidVideoRequest):
        storage.path("../outside.mp4")
    assert not (tmp_path / "outside.mp4").exists()


def test_long_key_error_message_is_bounded():
    with pytest.raises(InvalidVideoRequest) as info:
        check_key("a/" + "b" * 10_000)
    assert len(str(info.value)) < 400
