"""The one retry policy (table-tested, fake clock) and the shared transport's paid-submit safety."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime, timezone

import httpx
import pytest

from prefect_videogen.errors import (
    AuthError,
    DownloadFailed,
    IdempotencyConflict,
    InvalidRequest,
    JobFailed,
    JobTimedOut,
    ProviderUnavailable,
    RateLimited,
    StorageError,
    VerificationFailed,
)
from prefect_videogen.providers.http import API_REQUESTS_IN_FLIGHT, ErrorInfo, HttpTransport, default_error
from prefect_videogen.providers.retry import RetryPolicy, is_retryable, parse_retry_after, should_retry
from prefect_videogen.tasks.generation import retry_if_refused, retry_if_retryable

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),  # the ms header wins, as in openai-python
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"Retry-After": "Sun, 22 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Sun, 22 Nov 2026 11:59:00 GMT"}, 0.0),  # a date in the past: no wait
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, 0.0),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize(
    ("retry", "hint", "rand", "expected"),
    [
        (1, None, 0.0, 0.5),
        (2, None, 0.0, 1.0),
        (3, None, 0.0, 2.0),
        (6, None, 0.0, 8.0),  # capped
        (2, None, 1.0, 0.75),  # full jitter takes a quarter off
        (1, 3.0, 0.5, 3.0),  # the server's hint, as given
        (1, 121.0, 0.0, None),  # beyond max_retry_after: give up rather than stall
    ],
)
def test_policy_delay(retry, hint, rand, expected):
    assert RetryPolicy().delay(retry, hint, rand=lambda: rand) == expected


STATUS_TABLE = [
    # status, free call retried, paid call retried
    (400, False, False),
    (401, False, False),
    (403, False, False),
    (404, False, False),
    (409, False, False),
    (422, False, False),
    (408, True, False),
    (429, True, True),
    (500, True, False),
    (502, True, False),
    (503, True, False),
    (504, True, False),
]


@pytest.mark.parametrize(("status", "free", "paid"), STATUS_TABLE)
def test_should_retry_status_table(status, free, paid):
    assert should_retry(status, paid=False) is free
    assert should_retry(status, paid=True) is paid


@pytest.mark.parametrize(
    ("error", "free", "paid"),
    [
        (httpx.ConnectError("refused"), True, True),  # never connected: nothing was sent
        (httpx.ConnectTimeout("slow connect"), True, True),
        (httpx.PoolTimeout("pool"), True, True),
        (httpx.ReadTimeout("slow answer"), True, False),  # after sending: the job may exist
        (httpx.RemoteProtocolError("dropped"), True, False),
        (httpx.ReadError("reset"), True, False),
        (httpx.WriteError("broken pipe"), True, False),
    ],
)
def test_should_retry_transport_table(error, free, paid):
    assert should_retry(error, paid=False) is free
    assert should_retry(error, paid=True) is paid


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RateLimited("slow down", provider="p", status_code=429), True),
        (ProviderUnavailable("down", provider="p", status_code=503), True),
        (ProviderUnavailable("lost", provider="p", maybe_created=True), False),
        (DownloadFailed("gave up", provider="p", job_id="j1"), False),
        (IdempotencyConflict("same key", provider="p", status_code=409), False),
        (AuthError("bad key", provider="p", status_code=401), False),
        (InvalidRequest("bad", provider="p", status_code=400), False),
        (JobTimedOut(provider="p", job_id="j1", waited_seconds=8, last_status="queued"), False),
        (JobFailed("boom", provider="p", job_id="j1"), False),
        (VerificationFailed("not a video"), False),
        (StorageError("disk full"), True),
        (ValueError("a bug"), False),
        (None, False),
    ],
)
def test_should_retry_typed_errors(error, retried):
    # Typed errors carry what matters (maybe_created, unreachable): paid or free, the same answer.
    assert should_retry(error, paid=False) is retried
    assert should_retry(error, paid=True) is retried
    if error is not None:
        assert is_retryable(error) is retried


def test_an_unreachable_endpoint_fails_a_paid_step_fast_and_a_free_one_retries():
    refused = ProviderUnavailable("refused", provider="p", unreachable=True)
    assert should_retry(refused, paid=True) is False  # a submit: a wrong base_url does not heal
    assert should_retry(refused, paid=False) is True  # a wait/download of a paid job: bounded by its deadline


def test_default_error_mapping_agrees_with_the_status_table():
    """What the transport raises for a status is retried exactly when the status table says so."""
    for status, free, _ in STATUS_TABLE:
        info = ErrorInfo(httpx.Response(status, json={"error": "x"}))
        assert should_retry(default_error("p", info)) is free, status


class _State:
    def __init__(self, exc):
        self.exc = exc

    async def aresult(self):
        if self.exc is not None:
            raise self.exc
        return "ok"


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("slow", provider="p"),
        ProviderUnavailable("down", provider="p"),
        ProviderUnavailable("lost", provider="p", maybe_created=True),
        ProviderUnavailable("refused", provider="p", unreachable=True),
        JobTimedOut(provider="p", job_id="j", waited_seconds=8, last_status="queued"),
        DownloadFailed("gave up", provider="p", job_id="j"),
        StorageError("disk"),
        VerificationFailed("bad"),
        KeyError("bug"),
        None,
    ],
)
async def test_prefect_conditions_are_the_decision_function(error):
    state = _State(error)
    assert await retry_if_retryable(None, None, state) is should_retry(error, paid=False)
    assert await retry_if_refused(None, None, state) is should_retry(error, paid=True)


class Recorder:
    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def transport(self, **kwargs) -> HttpTransport:
        return HttpTransport(
            "testprov",
            "https://api.test/v1",
            headers={"Authorization": "Bearer sk-secretsecret"},
            transport=httpx.MockTransport(self.handler),
            sleep=self.sleep,
            policy=RetryPolicy(jitter=0.0),
            **kwargs,
        )


async def test_paid_submit_is_not_resent_after_an_ambiguous_5xx():
    rec = Recorder(httpx.Response(502, json={"error": {"message": "bad gateway"}}))
    with pytest.raises(ProviderUnavailable) as caught:
        await rec.transport().send("POST", "/videos", paid=True, json={"prompt": "x"})
    assert caught.value.maybe_created and not caught.value.retryable
    assert len(rec.requests) == 1


async def test_paid_submit_is_not_resent_after_a_read_timeout():
    rec = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderUnavailable, match="may have created the job"):
        await rec.transport().send("POST", "/videos", paid=True)
    assert len(rec.requests) == 1


async def test_paid_submit_is_resent_when_nothing_reached_the_server():
    rec = Recorder(
        httpx.ConnectError("refused"),
        httpx.Response(429, headers={"retry-after-ms": "40"}),
        httpx.Response(200, json={"id": "video_1"}),
    )
    response = await rec.transport().send("POST", "/videos", paid=True)
    assert response.json() == {"id": "video_1"}
    assert len(rec.requests) == 3
    assert rec.slept == [0.5, 0.04]


async def test_reads_retry_5xx_then_give_up():
    rec = Recorder(*[httpx.Response(503, text="<html>down</html>")] * 4)
    with pytest.raises(ProviderUnavailable, match="testprov: <html>down</html> \\(HTTP 503\\)"):
        await rec.transport().send("GET", "/videos/v1")
    assert len(rec.requests) == 4 and rec.slept == [0.5, 1.0, 2.0]


async def test_permanent_errors_are_not_retried():
    rec = Recorder(
        httpx.Response(
            401, json={"error": {"message": "Incorrect API key sk-secretsecret"}}, headers={"x-request-id": "req_9"}
        )
    )
    with pytest.raises(AuthError) as caught:
        await rec.transport().send("GET", "/videos/v1")
    assert len(rec.requests) == 1
    assert caught.value.request_id == "req_9"
    assert "sk-secretsecret" not in str(caught.value)


async def test_rate_limit_honours_retry_after_and_surfaces_it():
    rec = Recorder(*[httpx.Response(429, headers={"Retry-After": "2"}, json={"error": "slow down"})] * 4)
    with pytest.raises(RateLimited) as caught:
        await rec.transport().send("GET", "/jobs/1")
    assert caught.value.retry_after == 2.0 and rec.slept == [2.0, 2.0, 2.0]


async def test_cdn_downloads_never_carry_the_key():
    video = b"\x00\x00\x00\x18ftypmp42" + b"x" * 100
    rec = Recorder(httpx.Response(200, content=video, headers={"content-type": "video/mp4"}))
    async with rec.transport().stream("https://cdn.test/v.mp4", authenticated=False) as chunks:
        body = b"".join([chunk async for chunk in chunks])
    assert body == video
    assert "authorization" not in rec.requests[0].headers


async def test_json_answer_to_a_download_is_an_error_not_a_video():
    rec = Recorder(httpx.Response(200, json={"error": "expired"}))
    with pytest.raises(ProviderUnavailable, match="instead of video bytes"):
        async with rec.transport().stream("/videos/v1/content", authenticated=True):
            pass


async def test_error_mapper_hook_comes_first():
    def mapper(response, info):
        if info.status == 404:
            return InvalidRequest("mapped: " + info.message, provider="testprov", status_code=404)
        return None

    rec = Recorder(httpx.Response(404, json={"reason": "Model not found"}))
    with pytest.raises(InvalidRequest, match="mapped: Model not found"):
        await rec.transport(error_mapper=mapper).send("GET", "/models/x")


@pytest.mark.parametrize(("status", "free", "paid"), STATUS_TABLE)
async def test_transport_loop_agrees_with_the_status_table(status, free, paid):
    for is_paid, retried in ((False, free), (True, paid)):
        rec = Recorder(httpx.Response(status, json={"error": "x"}), httpx.Response(200, json={"ok": True}))
        try:
            await rec.transport().send("POST", "/videos", paid=is_paid)
        except ProviderUnavailable as exc:
            assert exc.maybe_created is is_paid  # a paid 5xx/408 may have created the job
        except Exception:
            pass
        assert len(rec.requests) == (2 if retried else 1), (status, is_paid)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: nothing listens there


@pytest.mark.parametrize("paid", [False, True])
async def test_refused_connection_fails_fast_naming_the_url(paid):
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    transport = HttpTransport("testprov", base_url, sleep=sleep)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as caught:
        await transport.send("POST", "/videos", paid=paid, json={"prompt": "x"})
    await transport.aclose()
    assert time.monotonic() - started < 5
    error = caught.value
    assert len(slept) == RetryPolicy().max_connect_retries and sum(slept) < 3  # a couple of quick retries
    assert base_url in str(error) and "no job was created" in str(error)
    assert error.unreachable and not error.maybe_created
    assert "idempotency" not in str(error).lower() and "may have created" not in str(error)
    assert not should_retry(error, paid=True)  # Prefect does not retry the submit either


async def test_api_requests_beyond_the_gate_wait_in_line_and_all_get_answered():
    """Thousands of due reads must not pile into httpcore's pool, whose bookkeeping grows with its queue."""
    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        for _ in range(5):  # let every other request that can start, start
            await asyncio.sleep(0)
        active -= 1
        return httpx.Response(200, json={"id": request.url.path})

    transport = HttpTransport("testprov", "https://api.test/v1", transport=httpx.MockTransport(handler))
    try:
        answers = await asyncio.gather(
            *(transport.json("GET", f"/jobs/{n}") for n in range(5 * API_REQUESTS_IN_FLIGHT))
        )
    finally:
        await transport.aclose()
    assert [a["id"] for a in answers] == [f"/v1/jobs/{n}" for n in range(5 * API_REQUESTS_IN_FLIGHT)]
    assert peak == API_REQUESTS_IN_FLIGHT
