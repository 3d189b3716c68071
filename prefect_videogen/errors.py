"""The one error tree of prefect-videogen.

Every error the package raises on purpose derives from :class:`VideoGenError`::

    VideoGenError
    ├── InvalidVideoRequest            bad input, found before any paid call (also a ValueError)
    │   ├── PolicyViolation            a run parameter asks for what the worker's policy does not allow
    │   └── InlineBlockRefused         a deployment run got block fields inline, not a saved block
    ├── InvalidBatch                   bad batch rows, all listed by row, before any paid call
    ├── ProviderError                  the provider answered with an error (provider, status_code, request_id)
    │   ├── AuthError                  401/403: wrong or missing key, plan does not allow it; never retried
    │   ├── RateLimited                429: retry_after seconds when the provider said
    │   ├── InvalidRequest             400/404/422: the provider rejected what we sent; never retried
    │   │   └── ModelUnavailable       the model is unknown to, or retired by, this provider
    │   ├── InsufficientCredits        402: the account cannot pay for the job
    │   ├── IdempotencyConflict        409 on an idempotent submit: same key, different body
    │   └── ProviderUnavailable        5xx, timeouts, dropped connections, unreachable endpoints
    │       └── DownloadFailed         a paid job's video could not be fetched in the download budget
    ├── JobFailed                      the job ran and failed (code, message)
    │   └── ContentRejected            moderation: never re-sent automatically
    ├── JobTimedOut                    no terminal status before the deadline (job_id)
    ├── SubmitUncertain                a paid submit may have created a job nobody can find (claim_uri)
    ├── BudgetExceeded                 a submit would take the run over its budget
    ├── ApprovalDenied                 the run's estimate needed approval and did not get it
    └── StorageError                   the video could not be stored
        └── VerificationFailed         the stored bytes are not the video that was asked for

``retryable`` is a property of the type (and, for a few, of the instance); the one decision over
it, used by the HTTP transport and every Prefect ``retry_condition_fn``, is
:func:`prefect_videogen.providers.retry.should_retry`.

Messages never contain secrets: provider error bodies are reduced to their message text and
every message passes through :func:`redact` before it is stored on an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# Shapes of provider keys (OpenAI "sk-...", APIFrame "afk_...") and of HTTP credentials. Redaction is
# a second line of defence: keys are never put into messages on purpose.
_SECRET_PATTERNS = [
    re.compile(r"\b(sk|afk)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(authorization|x-api-key)\s*[:=]\s*\S+(\s+\S+)?"),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
]
_registered_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` removes it from any message."""
    if value and len(value) >= 4:
        _registered_secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and key-shaped tokens replaced by ``***``."""
    for secret in sorted(_registered_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("***", text)
    return text


class VideoGenError(Exception):
    """Base class of every error prefect-videogen raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, which Exception's default pickling cannot replay;
        # Prefect pickles task failures, so rebuild from the instance's attributes instead.
        return (_restore, (type(self), self.__dict__.copy()))


def _restore(cls: type[VideoGenError], state: dict[str, Any]) -> VideoGenError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class InvalidVideoRequest(VideoGenError, ValueError):
    """A request field has a value the chosen provider and model do not allow.

    Raised before anything is sent to a provider.
    """

    def __init__(self, field: str, value: Any, allowed: Iterable[Any] | str, *, context: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed if isinstance(allowed, str) else list(allowed)
        allowed_text = allowed if isinstance(allowed, str) else ", ".join(repr(a) for a in self.allowed)
        where = f" for {context}" if context else ""
        super().__init__(f"{field}={value!r} is not allowed{where}; allowed: {allowed_text}")


class PolicyViolation(InvalidVideoRequest):
    """A run parameter asks the worker for something its policy does not allow (a path outside the
    allowed roots, a FIFO, a private address...). See :class:`prefect_videogen.policy.WorkerPolicy`.

    The message names the parameter, the rule and what is allowed (including the setting that
    changes it), never the content of a file or of an answer.
    """

    def __init__(self, field: str, value: Any, rule: str, allowed: str) -> None:
        super().__init__(field, value, allowed)
        self.rule = rule
        self.message = redact(f"{field}={value!r} is refused by the worker policy: {rule}; allowed: {allowed}")
        self.args = (self.message,)


class InvalidBatch(VideoGenError, ValueError):
    """One or more batch items are invalid; every problem is listed with its row. Nothing was sent."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} invalid batch item(s); nothing was submitted:\n  {shown}{more}")


class ProviderError(VideoGenError):
    """The provider answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id
        self.detail = redact(message)
        details = ", ".join(
            part
            for part in (
                f"HTTP {status_code}" if status_code else "",
                f"request id {request_id}" if request_id else "",
            )
            if part
        )
        super().__init__(f"{provider}: {message}" + (f" ({details})" if details else ""))


class AuthError(ProviderError):
    """The provider refused our credentials (401) or our plan (403). Never retried."""


class RateLimited(ProviderError):
    """The provider asked us to slow down (429)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class InvalidRequest(ProviderError):
    """The provider rejected what we sent (400, 404, 422). Never retried."""


class ModelUnavailable(InvalidRequest):
    """The model is unknown to, or retired by, this provider."""

    def __init__(self, message: str, *, model: str, **kwargs: Any) -> None:
        self.model = model
        super().__init__(message, **kwargs)


class InsufficientCredits(ProviderError):
    """The account cannot pay for the job (402). Nothing was charged."""

    def __init__(
        self,
        message: str,
        *,
        credits_required: float | None = None,
        credits_available: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.credits_required = credits_required
        self.credits_available = credits_available
        super().__init__(message, **kwargs)


class IdempotencyConflict(ProviderError):
    """The same idempotency key was sent with a different body (409)."""


class ProviderUnavailable(ProviderError):
    """5xx answers, timeouts and dropped connections: worth another try later.

    ``maybe_created`` is True when a paid submit failed after its body was sent: the provider may
    have created (and will bill) the job, so the submit is not retryable; look the job up instead.

    ``unreachable`` is True when no connection to the provider could be made at all (refused,
    unknown host): nothing was sent, so nothing was created. A submit then fails after the
    transport's few quick attempts; a wait or download of an existing job is retried within its
    deadline (see :func:`prefect_videogen.providers.retry.should_retry`).
    """

    def __init__(self, message: str, *, maybe_created: bool = False, unreachable: bool = False, **kwargs: Any) -> None:
        self.maybe_created = maybe_created
        self.unreachable = unreachable
        super().__init__(message, **kwargs)
        if maybe_created:
            self.message += "; the provider may have created the job, so it was not re-sent"
            self.args = (self.message,)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return not self.maybe_created


class DownloadFailed(ProviderUnavailable):
    """A finished (and billed) job's video could not be downloaded within the download budget.

    The job is kept: ``resume_command`` fetches it later without a new submit. Not retried by
    Prefect: the transport already resumed and retried the download for its whole time budget.
    """

    def __init__(self, message: str, *, job_id: str, resume_command: str | None = None, **kwargs: Any) -> None:
        self.job_id = job_id
        self.resume_command = resume_command
        hint = f"; run `{resume_command}` to fetch it without a new submit" if resume_command else ""
        super().__init__(
            f"job {job_id} is paid and kept, but its video could not be downloaded: {message}{hint}", **kwargs
        )

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return False


class JobFailed(VideoGenError):
    """The provider ran the job and reports it failed."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        job_id: str,
        code: str | None = None,
        charged: bool | None = None,
    ) -> None:
        self.provider = provider
        self.job_id = job_id
        self.code = code
        self.charged = charged
        self.job: Any = None  # the provider's last description of the job (a VideoJob), for the ledger
        code_text = f" [{code}]" if code else ""
        super().__init__(f"{provider} job {job_id} failed{code_text}: {message}")


class ContentRejected(JobFailed):
    """The provider's moderation blocked the job.

    ``stage`` says what was flagged when the provider tells: ``"prompt"``, ``"image"``,
    ``"output"`` or ``None``. ``charged`` says whether the provider still billed it (``None``
    when unknown). Identical input is never re-sent automatically after this error.
    """

    def __init__(self, message: str, *, stage: str | None = None, **kwargs: Any) -> None:
        self.stage = stage
        super().__init__(message, **kwargs)
        if stage:
            self.message = f"{self.message} (blocked: {stage})"
            self.args = (self.message,)


class JobTimedOut(VideoGenError):
    """No terminal status arrived before the deadline. The job may still finish: resume it.

    Never retried: ``timeout_seconds`` bounds the whole wait, and a retry would wait past it.
    """

    retryable = False

    def __init__(self, *, provider: str, job_id: str, waited_seconds: float, last_status: str) -> None:
        self.provider = provider
        self.job_id = job_id
        self.waited_seconds = waited_seconds
        self.last_status = last_status
        super().__init__(
            f"{provider} job {job_id} still {last_status!r} after {waited_seconds:.0f} s; "
            "it may still finish: wait for the same job id again instead of submitting anew"
        )


class SubmitUncertain(VideoGenError):
    """A paid submit may have created a job, and the provider offers no way to find it for us.

    Raised instead of submitting again: the claim (``claim_uri``) records the request and when it
    was sent. Check the provider's dashboard for a job created then; rerun with ``refresh`` to pay
    for a new one once you know there is none (or to accept paying twice).
    """

    def __init__(self, reason: str, *, provider: str, claim_uri: str, item_id: str | None = None) -> None:
        self.provider = provider
        self.claim_uri = claim_uri
        self.item_id = item_id
        self.job_id = None
        item = f" (item {item_id})" if item_id else ""
        super().__init__(
            f"{provider} submit{item} may have created a job that cannot be looked up: {reason}. Its claim is "
            f"{claim_uri}. Check the {provider} dashboard for a job created at the claim's created_at; "
            "if there is none (or to pay for another), rerun with refresh"
        )


class BudgetExceeded(VideoGenError):
    """A submit would take the run over its budget; nothing was sent."""

    def __init__(self, *, needed_usd: float, remaining_usd: float, budget_usd: float) -> None:
        self.needed_usd = needed_usd
        self.remaining_usd = remaining_usd
        self.budget_usd = budget_usd
        super().__init__(
            f"estimated ${needed_usd:.2f} exceeds the ${remaining_usd:.2f} left of the run's "
            f"${budget_usd:.2f} budget (max_cost_usd); nothing was submitted"
        )


class ApprovalDenied(VideoGenError):
    """The run's estimated cost needed approval in the Prefect UI and it was refused or timed out."""


class StorageError(VideoGenError):
    """The video could not be written to storage."""

    retryable = True


class VerificationFailed(StorageError):
    """The bytes are not the video that was asked for (not decodable, wrong duration or size)."""

    retryable = False


class InlineBlockRefused(InvalidVideoRequest):
    """A deployment run was given a block's fields inline instead of a saved block. Nothing ran.

    Prefect stores a run's parameters as given, so inline credentials would sit in the run's
    parameters, and an inline storage or renderer could point the worker anywhere. The fields are
    not echoed: they may hold a key.
    """

    def __init__(self, field: str, allowed: Iterable[str]) -> None:
        self.field = field
        self.value = None
        self.allowed = list(allowed)
        VideoGenError.__init__(
            self,
            f"{field}: a deployment run takes a saved block, not block fields given inline; save a "
            f"{' or '.join(self.allowed)} block (Prefect UI: Blocks, or `.save(name)` in Python) and pick it "
            f"for {field}, or leave {field} empty for the default",
        )
