"""Prompt rewrite: ChatClient on MockTransport, end to end against ChatEmulator, the cached Prefect task."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings
from prefect.states import Completed, Failed

from prefect_videogen.blocks.chat import ChatCompletionsCredentials
from prefect_videogen.errors import (
    AuthError,
    ContentRejected,
    InsufficientCredits,
    InvalidRequest,
    InvalidVideoRequest,
    JobFailed,
    ModelUnavailable,
    ProviderUnavailable,
    RateLimited,
)
from prefect_videogen.providers.accounts import account_id_for
from prefect_videogen.providers.chat import ChatClient, RewriteResult
from prefect_videogen.tasks.rewrite import cache_key_for, retry_rewrite, rewrite_prompt
from prefect_videogen.testing.chat_emulator import ChatEmulator, cinematic
from prefect_videogen.testing.server import EmulatorServer, Fault

from fakes import SleepRecorder
from prefect_helpers import task_states

KEY = "sk-chat-0123456789abcdefSECRET"
OTHER_KEY = "sk-chat-fedcba9876543210SECRET"
GATEWAY = "https://gateway.example/v1"
INSTRUCTION = "Rewrite the prompt as one vivid shot description for a video model."


def completion(content="  a fox, golden hour  ", finish="stop", **extra):
    message = {"role": "assistant", "content": content, "refusal": extra.pop("refusal", None)}
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
        "service_tier": "default",
        **extra,
    }


def openai_error(message, *, type="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def mock_client(handler, *, sleep=None, **kwargs) -> tuple[ChatClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request) if callable(handler) else handler.pop(0)

    client = ChatClient(
        KEY, base_url=GATEWAY, transport=httpx.MockTransport(record), sleep=sleep or SleepRecorder(), **kwargs
    )
    return client, seen


async def rewrite(client: ChatClient, prompt: str = "a fox in snow", **kwargs) -> RewriteResult:
    return await client.rewrite(
        prompt, instruction=kwargs.pop("instruction", INSTRUCTION), model=kwargs.pop("model", "gpt-4o-mini"), **kwargs
    )


# -- unit: the client on MockTransport ---------------------------------------------------------------


async def test_rewrite_sends_the_documented_request_and_parses_the_answer():
    client, seen = mock_client(lambda r: httpx.Response(200, json=completion()), organization="org-1")
    result = await rewrite(client)
    assert json.loads(seen[0].content) == {
        "model": "gpt-4o-mini",
        "temperature": 0.0,
        "messages": [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "a fox in snow"}],
    }
    assert str(seen[0].url) == f"{GATEWAY}/chat/completions" and seen[0].method == "POST"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}" and seen[0].headers["openai-organization"] == "org-1"
    assert result == RewriteResult(
        original="a fox in snow",
        rewritten="a fox, golden hour",
        model="gpt-4o-mini-2024-07-18",
        prompt_tokens=20,
        completion_tokens=5,
        total_tokens=25,
        completion_id="chatcmpl-123",
    )


async def test_answer_without_usage_or_model_is_tolerated_and_temperature_can_be_left_out():
    answer = completion("ok")
    del answer["usage"], answer["model"]
    client, seen = mock_client(lambda r: httpx.Response(200, json=answer))
    result = await rewrite(client, temperature=None, model="local-llama")
    assert "temperature" not in json.loads(seen[0].content)
    assert (result.rewritten, result.model, result.total_tokens) == ("ok", "local-llama", None)


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (completion("   \n "), JobFailed, "rewrite is empty"),
        (completion(None), JobFailed, "rewrite is empty"),
        (completion(None, "content_filter"), ContentRejected, "content filter"),
        (completion("partial", "content_filter"), ContentRejected, "content filter"),
        (completion(None, refusal="I can't help with that."), ContentRejected, "refused.*can't help"),
        (completion("a fox, golden ho", "length"), JobFailed, "cut short"),
        ({"id": "x", "object": "chat.completion", "choices": []}, ProviderUnavailable, "without choices"),
        ({"error": None}, ProviderUnavailable, "without choices"),
    ],
)
async def test_unusable_answers_are_clear_errors_and_not_resent(answer, error, text):
    client, seen = mock_client(lambda r: httpx.Response(200, json=answer))
    with pytest.raises(error, match=text) as caught:
        await rewrite(client)
    assert len(seen) == 1
    assert not caught.value.retryable  # an empty or filtered rewrite would repeat; a 200 may have been billed
    if isinstance(caught.value, ContentRejected):
        assert caught.value.job_id == "chatcmpl-123" or answer.get("id") is None


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (
            401,
            openai_error("Incorrect API key provided: sk-********CRET.", code="invalid_api_key"),
            AuthError,
            "Incorrect API key",
        ),
        (
            400,
            openai_error("Unrecognized request argument supplied: foo", param="foo"),
            InvalidRequest,
            "Unrecognized request argument",
        ),
        (
            404,
            openai_error("The model `gpt-9` does not exist or you do not have access to it.", code="model_not_found"),
            ModelUnavailable,
            "model 'gpt-4o-mini' is not served",
        ),
        (
            429,
            openai_error("You exceeded your current quota.", type="insufficient_quota", code="insufficient_quota"),
            InsufficientCredits,
            "exceeded your current quota",
        ),
        (500, openai_error("The server had an error", type="server_error"), ProviderUnavailable, "may have created"),
        (502, "<html>Bad gateway</html>", ProviderUnavailable, "Bad gateway"),
    ],
)
async def test_error_bodies_map_to_typed_errors_and_are_sent_once(status, body, error, text):
    kwargs = {"json": body} if isinstance(body, dict) else {"text": body}
    client, seen = mock_client(lambda r: httpx.Response(status, headers={"x-request-id": "req_1"}, **kwargs))
    with pytest.raises(error, match=text) as caught:
        await rewrite(client)
    assert len(seen) == 1  # a completion is paid: a 5xx after sending is never re-sent by the client
    assert caught.value.status_code == status and caught.value.request_id == "req_1"
    if error is ModelUnavailable:
        assert caught.value.model == "gpt-4o-mini"


async def test_rate_limit_hint_is_honoured_then_the_rewrite_succeeds():
    sleep = SleepRecorder()
    responses = [
        httpx.Response(
            429, json=openai_error("Rate limit reached", code="rate_limit_exceeded"), headers={"retry-after-ms": "250"}
        ),
        httpx.Response(429, json=openai_error("Rate limit reached"), headers={"retry-after": "2"}),
        httpx.Response(200, json=completion()),
    ]
    client, seen = mock_client(responses, sleep=sleep)
    assert (await rewrite(client)).rewritten == "a fox, golden hour"
    assert len(seen) == 3 and sleep.delays == [0.25, 2.0]


async def test_rate_limit_beyond_the_retry_budget_is_rate_limited():
    client, seen = mock_client(
        lambda r: httpx.Response(429, json=openai_error("slow down"), headers={"retry-after": "600"})
    )
    with pytest.raises(RateLimited) as caught:
        await rewrite(client)
    assert len(seen) == 1 and caught.value.retry_after == 600 and caught.value.retryable


async def test_read_timeout_after_sending_is_not_resent():
    def handler(request):
        raise httpx.ReadTimeout("timed out", request=request)

    client, seen = mock_client(handler)
    with pytest.raises(ProviderUnavailable, match="may have created") as caught:
        await rewrite(client)
    assert len(seen) == 1 and caught.value.maybe_created


@pytest.mark.parametrize(
    ("field", "kwargs"), [("prompt", {"prompt": "  "}), ("instruction", {"instruction": ""}), ("model", {"model": " "})]
)
async def test_blank_input_fails_before_any_request(field, kwargs):
    client, seen = mock_client(lambda r: httpx.Response(200, json=completion()))
    with pytest.raises(InvalidVideoRequest, match=f"^{field}="):
        await rewrite(client, **kwargs)
    assert seen == []


# -- the credentials block, the cache key, the retry decision -----------------------------------------


def test_block_validates_its_fields_without_echoing_the_key():
    with pytest.raises(ValueError, match="unknown field.*api_kye"):
        ChatCompletionsCredentials(api_kye=KEY)
    with pytest.raises(ValueError, match="unknown field.*temprature") as unknown:
        ChatCompletionsCredentials(api_key=KEY, temprature=0.2)
    with pytest.raises(ValueError, match="must be an http") as bad_url:
        ChatCompletionsCredentials(api_key=KEY, base_url="ftp://api.openai.com/v1")
    # pydantic would echo a truncated input ("sk-chat-0123...ECRET"); the block hides inputs in errors.
    assert not [text for text in (str(unknown.value), str(bad_url.value)) if "input_value" in text or KEY[:12] in text]
    with pytest.raises(ValueError, match="blank"):
        ChatCompletionsCredentials(api_key="  ")
    with pytest.raises(ValueError, match="model"):
        ChatCompletionsCredentials(api_key=KEY, model="  ")
    creds = ChatCompletionsCredentials(api_key=KEY)
    assert (creds.base_url, creds.model) == ("https://api.openai.com/v1", "gpt-4o-mini")


def test_block_account_id_is_non_secret_and_client_points_at_base_url():
    assert ChatCompletionsCredentials(api_key=KEY, account_label="team-a").account_id() == "team-a"
    hashed = ChatCompletionsCredentials(api_key=KEY).account_id()
    assert hashed == account_id_for(KEY) and hashed.startswith("key-sha256-") and len(hashed) == 23
    assert KEY not in hashed and hashed != ChatCompletionsCredentials(api_key=OTHER_KEY).account_id()
    client = ChatCompletionsCredentials(api_key=KEY, base_url=GATEWAY + "/", account_label="team-a").get_client()
    assert isinstance(client, ChatClient) and client.base_url == GATEWAY and client.account_id == "team-a"
    assert KEY not in repr(client)


def key_for(creds: ChatCompletionsCredentials, prompt: str = "a fox", instruction: str = INSTRUCTION) -> str:
    return cache_key_for(
        base_url=creds.base_url,
        model=creds.model,
        instruction=instruction,
        prompt=prompt,
        account_id=creds.account_id(),
    )


def test_cache_key_covers_the_request_identity_but_not_the_secret():
    base = ChatCompletionsCredentials(api_key=KEY, account_label="team-a")
    key = key_for(base)
    assert len(key) == 64 and int(key, 16) >= 0 and KEY not in key
    assert key == key_for(ChatCompletionsCredentials(api_key=OTHER_KEY, account_label="team-a"))
    others = {
        key_for(base, prompt="a fox!"),
        key_for(base, instruction="Shorter."),
        key_for(ChatCompletionsCredentials(api_key=KEY, account_label="team-b")),
        key_for(ChatCompletionsCredentials(api_key=KEY, account_label="team-a", model="gpt-4o")),
        key_for(ChatCompletionsCredentials(api_key=KEY, account_label="team-a", base_url=GATEWAY)),
    }
    assert len(others) == 5 and key not in others
    # Without a label, the account is the key's hash: another key is another account.
    assert key_for(ChatCompletionsCredentials(api_key=KEY)) != key_for(ChatCompletionsCredentials(api_key=OTHER_KEY))


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (ProviderUnavailable("502", provider="chat", status_code=502, maybe_created=True), True),
        (ProviderUnavailable("cannot connect", provider="chat"), True),
        (RateLimited("slow down", provider="chat", retry_after=600), True),
        (AuthError("bad key", provider="chat", status_code=401), False),
        (InvalidRequest("bad field", provider="chat", status_code=400), False),
        (ContentRejected("filtered", provider="chat", job_id="c", stage="output"), False),
        (JobFailed("empty", provider="chat", job_id="c", code="empty_rewrite"), False),
        (RuntimeError("a bug"), False),
    ],
)
async def test_retry_condition_accepts_a_possible_duplicate_rewrite_but_never_a_repeatable_failure(exc, retry):
    assert await retry_rewrite(rewrite_prompt, None, Failed(data=exc)) is retry
    assert await retry_rewrite(rewrite_prompt, None, Completed(data=None)) is False


# -- end to end: loopback HTTP against the emulator --------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(ChatEmulator(api_key={KEY, OTHER_KEY})) as running:
        yield running


@pytest.fixture
def emulator(server):
    server.emulator.reset()
    return server.emulator


@pytest.fixture
def api(server):
    return f"{server.base_url}/v1"


@pytest.fixture
async def client(api, emulator):
    async with ChatClient(KEY, base_url=api, sleep=SleepRecorder()) as chat:
        yield chat


async def test_rewrite_end_to_end(client, emulator):
    result = await rewrite(client, "a red fox running through fresh snow")
    assert result.rewritten == "cinematic, 35mm: a red fox running through fresh snow"
    assert result.model == "gpt-4o-mini" and result.completion_id.startswith("chatcmpl-")
    assert result.total_tokens == result.prompt_tokens + result.completion_tokens > 0
    assert (emulator.counters["requests"], emulator.counters["completions"]) == (1, 1)
    assert emulator.requests[0]["messages"][0] == {"role": "system", "content": INSTRUCTION}


async def test_emulator_rewrite_is_configurable(server, api, emulator):
    server.emulator.rewrite = lambda instruction, prompt: f"{prompt.upper()} ({len(instruction.split())} words)"
    try:
        async with ChatClient(KEY, base_url=server.base_url) as chat:  # served at the root too
            result = await rewrite(chat, "a fox", instruction="be loud")
    finally:
        server.emulator.rewrite = cinematic
    assert result.rewritten == "A FOX (2 words)"


async def test_emulator_faults_map_to_typed_errors(client, emulator):
    emulator.faults.add("completions", Fault(status=429, headers={"retry-after-ms": "5"}))
    assert (await rewrite(client)).rewritten.startswith("cinematic")
    assert (emulator.counters["requests"], emulator.counters["completions"]) == (2, 1)

    emulator.reset()
    emulator.faults.add("completions", Fault(status=500, after_create=True))
    with pytest.raises(ProviderUnavailable, match="may have created"):
        await rewrite(client)
    assert (emulator.counters["requests"], emulator.counters["completions"]) == (1, 1)  # billed once, not re-sent

    emulator.reset()
    emulator.faults.add("completions", Fault(reject="output"))
    with pytest.raises(ContentRejected, match="content filter"):
        await rewrite(client)

    emulator.faults.add("completions", Fault(status=200, body=completion(" ")))
    with pytest.raises(JobFailed, match="empty"):
        await rewrite(client)

    with pytest.raises(ModelUnavailable, match="gpt-9.*does not exist"):
        await rewrite(client, model="gpt-9")


async def test_bad_key_is_auth_error_and_not_retried(api, emulator):
    async with ChatClient("sk-wrong-0000000000000000", base_url=api, sleep=SleepRecorder()) as chat:
        with pytest.raises(AuthError, match="Incorrect API key provided: sk-\\*{8}0000") as caught:
            await rewrite(chat)
    assert caught.value.status_code == 401 and emulator.counters["requests"] == 1
    assert emulator.counters["completions"] == 0


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temprature": 0},
            {},
            400,
            "Unrecognized request argument supplied: temprature",
        ),
        ({"model": "gpt-4o-mini"}, {}, 400, "Missing required parameter: 'messages'"),
        ({"messages": [{"role": "user", "content": "x"}]}, {}, 400, "you must provide a model parameter"),
        ({"model": "gpt-4o-mini", "messages": "x"}, {}, 400, "Invalid type for 'messages'"),
        ({"model": "gpt-4o-mini", "messages": []}, {}, 400, "empty array"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 3}]},
            {},
            400,
            "Invalid type for 'messages[0].content'",
        ),
        ({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]}, {}, 400, "Invalid value: 'robot'"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "0"},
            {},
            400,
            "Invalid type for 'temperature'",
        ),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            {},
            400,
            "Expected a value <= 2",
        ),
        ({"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "x"}]}, {}, 400, "'user' message"),
        ([1, 2], {}, 400, "Invalid type for 'body'"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            {"authorization": ""},
            401,
            "didn't provide an API key",
        ),
    ],
)
async def test_emulator_rejects_what_the_api_rejects(api, emulator, body, headers, status, message):
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {KEY}"}) as http:
        response = await http.post(f"{api}/chat/completions", json=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert emulator.counters["completions"] == 0


# -- the Prefect task: cached across flow runs --------------------------------------------------------


@flow(name="rewrite-test")
async def rewrite_flow(prompt: str, instruction: str, credentials: ChatCompletionsCredentials) -> RewriteResult:
    return await rewrite_prompt(prompt, instruction, credentials)


@flow(name="rewrite-twice-test")
async def rewrite_concurrently(prompt: str, credentials: ChatCompletionsCredentials) -> list[RewriteResult]:
    return list(await asyncio.gather(*(rewrite_prompt(prompt, INSTRUCTION, credentials) for _ in range(3))))


def unique(prompt: str) -> str:
    # The cache outlives a test session when PREFECT_HOME is shared: each test asks a prompt never seen.
    return f"{prompt} #{uuid.uuid4().hex[:8]}"


async def test_same_rewrite_is_paid_once_across_flow_runs(prefect_server, api, emulator):
    creds = ChatCompletionsCredentials(api_key=KEY, base_url=api, account_label="team-a")
    prompt = unique("a lighthouse at dusk")
    first = await rewrite_flow(prompt, INSTRUCTION, creds)
    state = await rewrite_flow(prompt, INSTRUCTION, creds, return_state=True)
    again = await state.result()
    assert again == first and first.rewritten == f"cinematic, 35mm: {prompt}"
    assert emulator.counters["requests"] == 1
    assert await task_states(state.state_details.flow_run_id, expected=1) == {"rewrite gpt-4o-mini": "Cached"}

    # Another instruction, or another prompt, is another rewrite.
    await rewrite_flow(prompt, "Shorter, please.", creds)
    await rewrite_flow(prompt + "!", INSTRUCTION, creds)
    assert emulator.counters["requests"] == 3

    # A rotated key on the same account: same cache entry, no call (a miss would be a 4th request).
    rotated = ChatCompletionsCredentials(api_key=OTHER_KEY, base_url=api, account_label="team-a")
    assert (await rewrite_flow(prompt, INSTRUCTION, rotated)) == first
    assert emulator.counters["requests"] == 3
    # Without a shared label, another key is another account and pays for its own rewrite.
    await rewrite_flow(prompt, INSTRUCTION, ChatCompletionsCredentials(api_key=OTHER_KEY, base_url=api))
    assert emulator.counters["requests"] == 4


async def test_concurrent_duplicates_are_paid_once(prefect_server, api, emulator):
    creds = ChatCompletionsCredentials(api_key=KEY, base_url=api, account_label="team-a")
    results = await rewrite_concurrently(unique("a heron lifting off a pond"), creds)
    assert len({r.rewritten for r in results}) == 1 and emulator.counters["completions"] == 1


async def test_ambiguous_5xx_is_retried_by_the_task(prefect_server, api, emulator):
    creds = ChatCompletionsCredentials(api_key=KEY, base_url=api, account_label="team-a")
    emulator.faults.add("completions", Fault(status=503, after_create=True))
    quick = rewrite_prompt.with_options(retry_delay_seconds=0)

    @flow
    async def retrying(prompt: str) -> RewriteResult:
        return await quick(prompt, INSTRUCTION, creds)

    result = await retrying(unique("rain on a tin roof"))
    assert result.rewritten.startswith("cinematic, 35mm: rain on a tin roof")
    # The accepted cost of the decision in retry_rewrite: the lost completion was billed, then redone.
    assert (emulator.counters["requests"], emulator.counters["completions"]) == (2, 2)


async def test_content_filter_fails_the_task_without_retrying(prefect_server, api, emulator):
    creds = ChatCompletionsCredentials(api_key=KEY, base_url=api, account_label="team-a")
    emulator.faults.add("completions", Fault(reject="output"), times=3)
    quick = rewrite_prompt.with_options(retry_delay_seconds=0)

    @flow
    async def filtered(prompt: str) -> RewriteResult:
        return await quick(prompt, INSTRUCTION, creds)

    with pytest.raises(ContentRejected):
        await filtered(unique("a fox"))
    assert emulator.counters["requests"] == 1


async def test_api_key_never_leaks(prefect_server, api, emulator, debug_logs):
    creds = ChatCompletionsCredentials(api_key=KEY, base_url=api, account_label="team-a")
    prompt = unique("a kite over dunes")
    state = await rewrite_flow(prompt, INSTRUCTION, creds, return_state=True)
    result = await state.result()
    # A gateway that echoes the key in an error body: the message is redacted.
    emulator.faults.add("completions", Fault(status=400, body=openai_error(f"bad request from Bearer {KEY} ({KEY})")))
    async with creds.get_client() as chat:
        with pytest.raises(InvalidRequest) as caught:
            await rewrite(chat)
    async with ChatClient(KEY + "x", base_url=api) as wrong:
        with pytest.raises(AuthError) as auth:
            await rewrite(wrong)
    async with get_client() as prefect:
        run = await prefect.read_flow_run(state.state_details.flow_run_id)
    texts = [
        repr(creds),
        str(creds),
        creds.account_id(),
        key_for(creds, prompt),
        result.model_dump_json(),
        str(caught.value),
        repr(caught.value),
        caught.value.detail,
        str(auth.value),
        json.dumps(run.parameters, default=str),
    ]
    texts += [record.getMessage() for record in debug_logs.records]
    storage = Path(get_current_settings().results.local_storage_path)
    records = [path.read_text(errors="replace") for path in storage.rglob("*") if path.is_file()]
    assert records  # the persisted cache records (metadata and the serialized result) are checked too
    texts += records
    assert any("HTTP Request" in text for text in texts)  # httpx debug logs were captured
    assert any("rewrote a" in text for text in texts)  # and the task's own log
    assert not [text for text in texts if KEY in text or "0123456789abcdefSECRET" in text]
