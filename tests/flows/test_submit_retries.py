"""The paid submit is retried by Prefect only when the provider refused it (nothing was created)."""

from __future__ import annotations

import pytest

from prefect_videogen.blocks import LocalVideoStorage, OpenAICredentials
from prefect_videogen.errors import ProviderUnavailable
from prefect_videogen.flows import generate_video
from prefect_videogen.models import VideoRequest
from prefect_videogen.testing import EmulatorServer, Fault, OpenAIEmulator


@pytest.fixture
def openai():
    with EmulatorServer(OpenAIEmulator(latency_seconds=0.05)) as server:
        yield server


def creds(server):
    return OpenAICredentials(api_key="sk-emulator-key", base_url=server.base_url + "/v1")


async def test_refused_submit_is_retried_until_accepted(prefect_server, tmp_path, openai):
    # Four 429s outlast the HTTP layer's three retries; Prefect's task retry then sends it again.
    openai.emulator.faults.add("create", Fault(status=429, headers={"retry-after-ms": "0"}), times=4)
    result = await generate_video(
        VideoRequest(prompt=f"retried {tmp_path.name}"),
        provider=creds(openai),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
    )
    assert result.duration_seconds == 4.0
    assert openai.emulator.counters["create_requests"] == 5
    assert openai.emulator.counters["jobs_created"] == 1


async def test_ambiguous_submit_is_never_retried(prefect_server, tmp_path, openai):
    # Never re-sent: the job the 500 hid is found in GET /videos (the claim's lookup) and adopted.
    openai.emulator.faults.add("create", Fault(status=500, after_create=True))
    result = await generate_video(
        VideoRequest(prompt=f"ambiguous {tmp_path.name}"),
        provider=creds(openai),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
    )
    assert openai.emulator.counters["create_requests"] == 1
    assert openai.emulator.counters["jobs_created"] == 1
    assert openai.emulator.counters["lists"] >= 1 and result.job_id in openai.emulator.jobs


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there


async def test_a_refused_connection_fails_the_flow_in_seconds(prefect_server, tmp_path):
    """Nothing listening at base_url used to take ~170 s (Prefect retried the submit after 30 s and 120 s)."""
    import time

    from prefect_videogen.blocks import APIFrameCredentials, ScenarioCredentials

    base = f"http://127.0.0.1:{closed_port()}"
    for provider in (
        OpenAICredentials(api_key="sk-emulator-key", base_url=base + "/v1"),
        ScenarioCredentials(api_key="k", api_secret="s", base_url=base + "/v1"),
        APIFrameCredentials(api_key="afk_closed_port_key", base_url=base),
    ):
        started = time.monotonic()
        state = await generate_video(
            VideoRequest(prompt=f"refused {tmp_path.name}", duration=4),
            provider=provider,
            storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
            return_state=True,
        )
        error = await state.aresult(raise_on_failure=False)
        assert time.monotonic() - started < 15, provider
        assert isinstance(error, ProviderUnavailable), (provider, error)
        assert base in str(error) and "no job was created" in str(error)
        assert error.unreachable and not error.maybe_created
        assert "idempotency" not in str(error).lower()
