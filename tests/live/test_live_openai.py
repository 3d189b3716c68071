"""Opt-in live test against OpenAI's Videos API or a gateway: real money, real minutes.

Runs only when selected (``pytest -m live tests/live/test_live_openai.py``) and OPENAI_API_KEY is
set; OPENAI_BASE_URL points it at a gateway (OpenAI itself retired Sora 2 on 2026-09-24, so there
the test checks that the model is refused before any request).
"""

from __future__ import annotations

import os

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import ModelUnavailable
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.pipeline import generate
from prefect_videogen.providers.openai import DEFAULT_BASE_URL, OpenAIVideoProvider
from prefect_videogen.storage import VideoStorage

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="OPENAI_API_KEY is not set"),
]


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    if "live" not in (request.config.getoption("-m") or ""):
        pytest.skip("live tests run only when selected with -m live")


@pytest.fixture
async def client():
    base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    async with OpenAIVideoProvider(os.environ["OPENAI_API_KEY"], base_url=base_url) as provider:
        yield provider


async def test_live_smallest_video(client, tmp_path):
    request = VideoRequest(
        prompt="a paper boat drifting on a calm pond, soft morning light", duration=4, aspect_ratio="16:9"
    )
    if client.is_official_api:
        with pytest.raises(ModelUnavailable, match="retired"):
            await client.submit(load_catalog().plan("openai", request))
        return
    result = await generate(client, request, VideoStorage(str(tmp_path)), timeout=900)
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (1280, 720)
    assert probe.duration_seconds == pytest.approx(4, abs=0.5)
