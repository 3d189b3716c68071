"""The one retry policy (table-tested, fake clock) and the shared transport's paid-submit safety."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from prefect_videogen.errors import AuthError, InvalidRequest, ProviderUnavailable, RateLimited
from prefect_videogen.providers.http import HttpTransport
from prefect_videogen.providers.retry import RetryPolicy, is_retry_status, parse_retry_after

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


@pytest.mark.parametrize(("status", "retry"), [(400, False), (401, False), (404, False), (408, True), (409, True),
                                               (429, True), (500, True), (503, True), (422, False)])
def test_retry_statuses(status, retry):
    assert is_retry_status(status) is retry


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
        return HttpTransport("testprov", "https://api.test/v1", headers={"Authorization": "Bearer sk-secretsecret"},
                             transport=httpx.MockTransport(self.handler), sleep=self.sleep,
                             policy=RetryPolicy(jitter=0.0), **kwargs)


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
    rec = Recorder(httpx.ConnectError("refused"), httpx.Response(429, headers={"retry-after-ms": "40"}),
                   httpx.Response(200, json={"id": "video_1"}))
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
    rec = Recorder(httpx.Response(401, json={"error": {"message": "Incorrect API key sk-secretsecret"}},
                                  headers={"x-request-id": "req_9"}))
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
