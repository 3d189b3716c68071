"""Opt-in checks against the real Scenario API.

Run only when selected and configured:

    SCENARIO_API_KEY=... SCENARIO_API_SECRET=... [SCENARIO_PROJECT_ID=...] \\
        python -m pytest tests/live/test_live_scenario.py -m live

The quote and auth checks are free (a dry run creates no job). The generation check spends creative
units and also needs SCENARIO_LIVE_SPEND=1.
"""

from __future__ import annotations

import os

import pytest

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import AuthError, ModelUnavailable
from prefect_videogen.media import probe_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.pipeline import generate
from prefect_videogen.providers.scenario import ScenarioVideoProvider
from prefect_videogen.storage import VideoStorage

pytestmark = pytest.mark.live

KEY = os.environ.get("SCENARIO_API_KEY")
SECRET = os.environ.get("SCENARIO_API_SECRET")
PROJECT = os.environ.get("SCENARIO_PROJECT_ID") or None


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    if "live" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("live test: select it with -m live")
    if not (KEY and SECRET):
        pytest.skip("set SCENARIO_API_KEY and SCENARIO_API_SECRET to run live Scenario tests")


def client(secret: str | None = None) -> ScenarioVideoProvider:
    return ScenarioVideoProvider(KEY or "", secret or SECRET or "", project_id=PROJECT)


async def test_live_quote_prices_without_creating_a_job():
    plan = load_catalog().plan("scenario", VideoRequest(prompt="a red fox running through fresh snow", duration=4))
    async with client() as scenario:
        try:
            amount, unit = await scenario.quote(plan)
        except ModelUnavailable as exc:
            pytest.skip(f"Scenario no longer serves Sora 2: {exc}")
    assert unit == "creative_units" and amount > 0


async def test_live_wrong_secret_is_an_auth_error():
    plan = load_catalog().plan("scenario", VideoRequest(prompt="a fox", duration=4))
    async with client(secret="not-the-secret") as scenario:
        with pytest.raises(AuthError):
            await scenario.quote(plan)


@pytest.mark.skipif(
    os.environ.get("SCENARIO_LIVE_SPEND") != "1", reason="spends creative units: set SCENARIO_LIVE_SPEND=1"
)
async def test_live_text_to_video(tmp_path):
    request = VideoRequest(prompt="a red fox running through fresh snow", duration=4)
    async with client() as scenario:
        try:
            result = await generate(scenario, request, VideoStorage(str(tmp_path)), timeout=900)
        except ModelUnavailable as exc:
            pytest.skip(f"Scenario no longer serves Sora 2: {exc}")
    probe = probe_video(result.video_uri)
    assert (probe.width, probe.height) == (1280, 720)
    assert abs(probe.duration_seconds - 4) <= 0.5
