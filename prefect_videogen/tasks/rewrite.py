"""Rewrite a prompt with a chat model as a Prefect task, cached so the same rewrite is paid once.

The cache key is a sha256 over the endpoint (``base_url``), the model, the instruction, the prompt
and the NON-secret account id of the credentials: never the key itself (Prefect would hash a
``SecretStr`` as ``**********`` anyway, so two keys would look alike), and never the task's source
(a refactor must not pay again). Records persist, so the key holds across flow runs.

Concurrent duplicates (a batch with a repeated prompt) are paid once too: the policy runs under
SERIALIZABLE isolation with the same lock manager as paid submits (``tasks.caching.lock_manager``:
in process by default, Redis across machines when configured).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import CachePolicy
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.tasks import Task
from prefect.transactions import IsolationLevel

from prefect_videogen.blocks.chat import ChatCompletionsCredentials
from prefect_videogen.errors import ProviderUnavailable
from prefect_videogen.providers.chat import RewriteResult
from prefect_videogen.providers.retry import is_retryable
from prefect_videogen.tasks.caching import lock_manager
from prefect_videogen.tasks.generation import _retry_delays

CACHE_KEY_VERSION = "videogen-rewrite-v1"
# Temperature 0: the cached rewrite is the one the model would most likely give again.
TEMPERATURE = 0.0


def cache_key_for(*, base_url: str, model: str, instruction: str, prompt: str, account_id: str) -> str:
    """The cache key of one rewrite: 64 hex digits of a sha256 over its non-secret identity.

    Example:
        ```python
        key = cache_key_for(base_url=creds.base_url, model=creds.model, instruction=instruction,
                            prompt=prompt, account_id=creds.account_id())
        ```
    """
    identity = [CACHE_KEY_VERSION, base_url.rstrip("/"), model, instruction, prompt, account_id]
    return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()


@dataclass
class RewriteCachePolicy(CachePolicy):
    """Key = base_url + model + instruction + prompt + non-secret account id (see :func:`cache_key_for`)."""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        credentials = inputs["credentials"]
        return cache_key_for(
            base_url=credentials.base_url,
            model=credentials.model,
            instruction=inputs["instruction"],
            prompt=inputs["prompt"],
            account_id=credentials.account_id(),
        )


def rewrite_policy() -> CachePolicy:
    return RewriteCachePolicy().configure(isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=lock_manager())


async def retry_rewrite(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn`` of :func:`rewrite_prompt`.

    Like ``retry_if_retryable``, plus ``ProviderUnavailable`` even when the completion may have been
    generated (a 5xx or timeout after the request was sent). For a video submit that would risk a
    duplicate bill of dollars; for a chat rewrite the duplicate costs a few hundred tokens (a fraction
    of a cent), far less than failing the video item it feeds. The HTTP layer still sends with
    ``paid=True`` (no quick re-send of an ambiguous failure); only this coarse, delayed retry takes the
    risk. Rejections, empty rewrites, auth and request errors are never retried: they would repeat.

    Async on purpose: inside an async task run, ``state.result()`` returns a coroutine instead of
    raising, and a sync check would never see the exception. Prefect awaits an async condition in
    async task runs and runs it to completion in sync ones.
    """
    try:
        await state.aresult()
    except ProviderUnavailable:
        return True
    except Exception as exc:
        return is_retryable(exc)
    return False


@task(
    task_run_name="rewrite {credentials.model}",
    retries=2,
    retry_delay_seconds=_retry_delays([2, 10]),
    retry_condition_fn=retry_rewrite,
    cache_policy=rewrite_policy(),
    persist_result=True,
)
async def rewrite_prompt(prompt: str, instruction: str, credentials: ChatCompletionsCredentials) -> RewriteResult:
    """Rewrite ``prompt`` with the chat model of ``credentials``, following ``instruction``.

    Cached across flow runs on (base_url, model, instruction, prompt, account id): the same rewrite is
    paid once. Pass ``refresh_cache=True`` through ``rewrite_prompt.with_options`` to pay for a new one.

    Example:
        ```python
        from prefect import flow

        from prefect_videogen.blocks.chat import ChatCompletionsCredentials
        from prefect_videogen.tasks.rewrite import rewrite_prompt

        @flow
        async def expand(prompt: str) -> str:
            creds = ChatCompletionsCredentials.load("BLOCK_NAME")
            result = await rewrite_prompt(prompt, "Rewrite as a detailed shot description.", creds)
            return result.rewritten
        ```
    """
    async with credentials.get_client() as client:
        result = await client.rewrite(prompt, instruction=instruction, model=credentials.model, temperature=TEMPERATURE)
    get_run_logger().info(
        "rewrote a %d-character prompt into %d characters with %s (%s tokens)",
        len(prompt),
        len(result.rewritten),
        result.model,
        result.total_tokens,
    )
    return result
