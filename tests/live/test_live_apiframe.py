"""Opt-in live tests against the real APIFrame v2 API (spends credits: a sora-2 4 s clip is 4 credits).

Run only when selected and configured:
    APIFRAME_API_KEY=afk_... python -m pytest tests/live/test_live_apiframe.py -m live
"""

from __future__ import annotations

import os

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import AuthError, ModelUnavailable
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.pipeline import generate
from prefect_videogen.providers.apiframe import APIFrameVideoProvider
from prefect_videogen.storage.base import VideoStorage

API_KEY = os.environ.get("APIFRAME_API_KEY", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not API_KEY, reason="APIFRAME_API_KEY is not set"),
]


@pytest.fixture(autouse=True)
def only_when_selected(request):
    if "live" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("live tests run only when selected with -m live")


async def test_wrong_key_is_refused_for_free():
    async with APIFrameVideoProvider("afk_definitely_not_a_key_000000") as client:
        with pytest.raises(AuthError):
            await client.submit(load_catalog().plan("apiframe", VideoRequest(prompt="a red fox in snow")))


async def test_sora_2_text_to_video(tmp_path):
    """Spends 4 credits, unless APIFrame no longer serves sora-2 (then it says so, for free)."""
    async with APIFrameVideoProvider(API_KEY) as client:
        try:
            result = await generate(
                client,
                VideoRequest(prompt="a red fox running through fresh snow", duration=4),
                VideoStorage(str(tmp_path)),
                timeout=900,
            )
        except ModelUnavailable as exc:
            pytest.skip(f"APIFrame no longer serves sora-2: {exc}")
    probe = probe_video(result.video_uri)
    assert abs(probe.duration_seconds - 4) < 0.5
    assert (probe.width, probe.height) == (1280, 720)
