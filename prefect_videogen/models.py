"""The data that flows through prefect-videogen: requests in, jobs in between, results out.

Requests are strict (``extra="forbid"``, constrained fields); provider answers are mapped into
:class:`VideoJob` leniently by each provider adapter.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# Which aspect ratios and resolution tiers a model takes is catalog data (catalog.json), checked in
# Catalog.plan; the request only fixes their shape so that junk never reaches the catalog check.
AspectRatio = Annotated[str, StringConstraints(pattern=r"^([1-9][0-9]?:[1-9][0-9]?|adaptive)$")]
Resolution = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]{1,16}$")]

# The optional request fields added for the models beyond Sora. A field left unset is not part of the
# fingerprint, so requests (and claims, caches) made before these fields existed keep their keys.
FEATURE_FIELDS = ("end_image", "reference_images", "negative_prompt", "seed", "generate_audio")
MAX_REFERENCE_IMAGES = 10

# The longest prompt any catalogued provider accepts (OpenAI: 1-32000 characters); each provider's
# own, possibly smaller, limit is checked against the catalog.
MAX_PROMPT_CHARS = 32_000


# Characters that show nothing: controls, format characters (U+200B zero width space, U+FEFF...),
# separators and unassigned code points. A prompt of only these is blank to a reader.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Cn"})


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return (code < 0x20 and ch not in "\n\t") or 0x7F <= code <= 0x9F  # C0 (but newline, tab), DEL, C1


def check_prompt_text(value: str) -> str:
    """Refuse control characters other than newline and tab, and prompts with no visible character."""
    for position, ch in enumerate(value):
        if _is_control(ch):
            raise ValueError(
                f"prompt contains control characters (U+{ord(ch):04X} at position {position}); "
                "only newlines and tabs are allowed"
            )
    if all(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in value):
        raise ValueError(
            "prompt is blank (no visible character: only spaces or invisible characters such as U+200B); "
            "write what the video should show"
        )
    return value


def refuse_bool(field: str, value: Any) -> Any:
    """Booleans are not numbers: pydantic would take ``true`` as 1."""
    if isinstance(value, bool):
        raise ValueError(f"{field}={value!r} is a boolean; give a whole number")
    return value


class VideoRequest(BaseModel):
    """What to generate. Validated against the model catalog before anything is sent.

    Example:
        ```python
        from prefect_videogen import VideoRequest

        request = VideoRequest(prompt="a red fox running through fresh snow", duration=4, aspect_ratio="9:16")
        ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="What the video shows. Providers have their own limits (APIFrame: 4000 characters).",
    )
    model: str | None = Field(
        default=None,
        description="Model name from the provider's catalog, for example sora-2 or sora-2-pro. Empty: the provider's default.",
    )
    duration: int = Field(default=4, gt=0, le=600, description="Length of the video in seconds.")
    aspect_ratio: AspectRatio = Field(
        default="16:9",
        description="Width:height such as 16:9 (landscape), 9:16 (portrait), 1:1, 4:3, 21:9, or adaptive; "
        "which ones a model takes is in `prefect-videogen models`.",
    )
    resolution: Resolution | None = Field(
        default=None,
        description="Resolution tier: standard, high, 720p, 1080p or 4k, as the model lists them "
        "(`prefect-videogen models`). Empty: the model's default tier.",
    )
    image: str | None = Field(
        default=None,
        description="Optional first frame for image-to-video: a local file path or an http(s) URL.",
    )
    end_image: str | None = Field(
        default=None,
        description="Optional last frame (models with an end frame): a local file path or an http(s) URL.",
    )
    reference_images: list[str] = Field(
        default_factory=list,
        max_length=MAX_REFERENCE_IMAGES,
        description="Optional reference images (models that take them, up to the model's count): "
        "local file paths or http(s) URLs.",
    )
    negative_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        description="What the video should not show (models with a negative prompt).",
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 1, description="Random seed for repeatable output (models with a seed)."
    )
    generate_audio: bool | None = Field(
        default=None, description="Whether the model also generates sound (models with generated audio)."
    )
    provider_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Model-specific extras, checked against the names and values the model declares in the catalog.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        return check_prompt_text(value)

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_not_bool(cls, value: Any) -> Any:
        return refuse_bool("duration", value)

    @field_validator("negative_prompt")
    @classmethod
    def _negative_prompt_text(cls, value: str | None) -> str | None:
        return None if value is None else check_prompt_text(value)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_not_bool(cls, value: Any) -> Any:
        return refuse_bool("seed", value)

    @field_validator("image", "end_image")
    @classmethod
    def _image_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("the image is blank; give a local file path or an http(s) URL, or leave it out")
        return value

    @field_validator("reference_images")
    @classmethod
    def _references_not_blank(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("a reference image is blank; give local file paths or http(s) URLs")
        return value

    def features_set(self) -> dict[str, Any]:
        """The optional feature fields this request sets (a field left unset is not sent)."""
        values = {name: getattr(self, name) for name in FEATURE_FIELDS}
        return {name: value for name, value in values.items() if value not in (None, [])}

    def fingerprint(self) -> str:
        """A stable sha256 of the normalised request: same request, same fingerprint.

        Unset feature fields are left out, so a request that sets none of them has the fingerprint it had
        before they existed (claims and caches written by earlier versions still match).
        """
        unset = set(FEATURE_FIELDS) - set(self.features_set())
        canonical = json.dumps(self.model_dump(mode="json", exclude=unset), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class JobStatus(str, Enum):
    """Where a provider job is. Provider vocabularies are mapped onto these by explicit tables."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


RejectionStage = Literal["prompt", "image", "output"]


class Rejection(BaseModel):
    """A job blocked by the provider's content policy, as the adapter classified it."""

    stage: RejectionStage | None = Field(
        default=None, description="The input flagged (or the output), when the provider says which."
    )
    charged: bool | None = Field(default=None, description="Whether the provider billed it; None when it does not say.")


class VideoJob(BaseModel):
    """A job as a provider last described it.

    The typed fields are what other layers read (errors, costs, the ledger); ``provider_data`` is the
    adapter's own, read back only by the adapter that wrote it.
    """

    provider: str
    job_id: str
    model: str
    status: JobStatus
    raw_status: str = Field(description="The provider's own status word, kept for logs.")
    progress: float | None = Field(default=None, description="0.0 to 1.0 where the provider reports it.")
    error_code: str | None = None
    error_message: str | None = None
    poll_after_seconds: float | None = Field(default=None, description="The provider's hint for the next poll.")
    reported_cost: float | None = Field(default=None, description="What the provider says it charged.")
    reported_cost_unit: str | None = None
    rejection: Rejection | None = Field(default=None, description="Set when a failed job was a content-policy block.")
    charged: bool | None = Field(
        default=None, description="The provider's own word on whether this job was billed; None when it gives none."
    )
    provider_data: dict[str, Any] = Field(
        default_factory=dict, description="Provider specifics the adapter needs later (never secrets)."
    )

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Load a job pickled by an earlier version (Prefect keeps cached submit results).

        Fields added since take their defaults; the ``provider_data`` keys that carried the rejection and
        the charged flag before they were typed move to the typed fields.
        """
        fields = dict(state.get("__dict__") or {})
        data = dict(fields.get("provider_data") or {})
        if "rejection" not in fields:
            old = data.pop("rejection", None)
            fields["rejection"] = Rejection.model_validate(old) if isinstance(old, dict) else None
        if "charged" not in fields:
            old_charged = data.pop("charged", None)
            fields["charged"] = old_charged if isinstance(old_charged, bool) else None
        fields["provider_data"] = data
        for name, field in type(self).model_fields.items():
            if name not in fields and not field.is_required():
                fields[name] = field.get_default(call_default_factory=True)
        super().__setstate__({**state, "__dict__": fields})


class VideoResult(BaseModel):
    """A stored video, as returned by the ``generate_video`` flow."""

    video_uri: str
    sidecar_uri: str
    provider: str
    model: str
    job_id: str
    bytes: int
    sha256: str
    duration_seconds: float = Field(description="Duration read back from the stored file.")
    width: int
    height: int
    resolution: str = Field(description="WIDTHxHEIGHT read back from the stored file.")
    prompt: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds spent per step.")
    warnings: list[str] = Field(
        default_factory=list,
        description="How the stored video differs from what was asked for (kept: it is paid for), e.g. its size.",
    )
