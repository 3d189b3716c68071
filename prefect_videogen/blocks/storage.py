"""Storage blocks: where videos and their sidecars are written.

``S3VideoStorage`` is also a Prefect ``WritableFileSystem``, so the same block can hold task
results (``@task(result_storage=block)``) next to the videos.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.core import Block
from prefect.filesystems import WritableFileSystem
from pydantic import Field, SecretStr, field_validator

from prefect_videogen.blocks.base import DOCS_URL, LOGO_URL
from prefect_videogen.errors import register_secret
from prefect_videogen.policy import check_directory, has_scheme
from prefect_videogen.storage.base import DEFAULT_KEY_TEMPLATE, DEFAULT_PART_SIZE, VideoStorage
from prefect_videogen.storage.keys import check_key, validate_template

_MIB = 1024 * 1024
# AWS bucket naming rules (3-63 characters, lowercase, digits, dots, dashes); MinIO and R2 share them.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class LocalVideoStorage(Block):
    """Videos in a directory on this machine (``./videos`` by default).

    Example:
        ```python
        from prefect_videogen.blocks import LocalVideoStorage

        storage = LocalVideoStorage.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "Videogen Local Storage"
    _block_type_slug = "videogen-local-storage"
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL

    base_path: str = Field(default="./videos", description="Directory that holds the videos and sidecars.")
    key_template: str = Field(
        default=DEFAULT_KEY_TEMPLATE,
        description="Object key template; placeholders: date, slug, job_id, provider, model, flow_run, item.",
    )

    @field_validator("base_path")
    @classmethod
    def _local_base_path(cls, value: str) -> str:
        if has_scheme(value) and not value.lower().startswith("file://"):
            raise ValueError(
                f"base_path={value!r} is not a local directory; other stores only through their own block "
                "(S3VideoStorage for s3://), never through a path string"
            )
        return value

    def get_storage(self) -> VideoStorage:
        """The storage, once the worker's policy allows ``base_path`` (under its allowed roots)."""
        check_directory("storage.base_path", self.base_path)
        return VideoStorage(self.base_path, key_template=self.key_template)


class S3VideoStorage(WritableFileSystem):
    """Videos in an S3 bucket, or an S3-compatible store (MinIO, Cloudflare R2...) through ``endpoint_url``.

    Uploads stream as multipart uploads of ``part_size_mib`` parts; a video appears under its key
    only once complete and verified. Leave the keys empty to use the environment's credentials
    (AWS_* variables, ~/.aws, an instance or task role). As result storage, task results are kept
    under the same bucket and prefix.

    Example:
        ```python
        from prefect_videogen.blocks import S3VideoStorage

        storage = S3VideoStorage.load("BLOCK_NAME")
        video_storage = storage.get_storage()
        ```
    """

    _block_type_name = "Videogen S3 Storage"
    _block_type_slug = "videogen-s3-storage"
    _logo_url = LOGO_URL
    _documentation_url = DOCS_URL

    bucket: str = Field(description="Name of the bucket, for example my-videos (no s3:// and no slashes).")
    prefix: str = Field(
        default="", description="Folder inside the bucket for videos, sidecars and results; empty for the bucket root."
    )
    region_name: str | None = Field(
        default=None, description="AWS region of the bucket, for example eu-west-1; empty to use the environment's."
    )
    endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint of an S3-compatible store (MinIO, R2); empty for AWS."
    )
    aws_access_key_id: str | None = Field(
        default=None, description="Access key id; empty to use the environment's credentials or an IAM role."
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret access key that goes with the access key id."
    )
    aws_session_token: SecretStr | None = Field(
        default=None, description="Session token of temporary credentials, if any."
    )
    key_template: str = Field(
        default=DEFAULT_KEY_TEMPLATE,
        description="Object key template; placeholders: date, slug, job_id, provider, model, flow_run, item.",
    )
    part_size_mib: int = Field(
        default=DEFAULT_PART_SIZE // _MIB,
        ge=5,
        le=5120,
        description="Size of each multipart upload part in MiB (S3 allows 5 to 5120); memory use grows with it.",
    )

    @field_validator("bucket")
    @classmethod
    def _valid_bucket(cls, value: str) -> str:
        if not _BUCKET_NAME.match(value):
            raise ValueError(
                f"bucket={value!r} is not a bucket name: 3-63 lowercase letters, digits, dots or dashes, "
                "without s3:// or a folder (put folders in prefix)"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        value = value.strip("/")
        return check_key(value) if value else value

    @field_validator("key_template")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return validate_template(value)

    @field_validator("endpoint_url")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"endpoint_url={value!r} must start with http:// or https://")
        return value or None

    def _storage_options(self) -> dict[str, Any]:
        """Options for ``s3fs.S3FileSystem``: the only place the secrets go (private: never log or return it)."""
        secret = self.aws_secret_access_key.get_secret_value() if self.aws_secret_access_key else None
        token = self.aws_session_token.get_secret_value() if self.aws_session_token else None
        # Second line of defence: should a secret ever reach an error message, redact() removes it.
        register_secret(secret)
        register_secret(token)
        client_kwargs = {"region_name": self.region_name} if self.region_name else {}
        options: dict[str, Any] = {
            "key": self.aws_access_key_id,
            "secret": secret,
            "token": token,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": client_kwargs,
            # Presigned links: SigV4 works in every AWS region and on S3-compatible stores; SigV2 does not.
            # Retries in botocore's "standard" mode, as AWS recommends (3 attempts, throttling and
            # transient errors retried): its "legacy" default makes 5 attempts with longer backoffs,
            # and a run's storage check must report an unreachable endpoint in seconds.
            "config_kwargs": {"signature_version": "s3v4", "retries": {"mode": "standard"}},
            # Also the read block size: verifying a video reads its header and first frame, not 50 MiB.
            "default_block_size": self.part_size_mib * _MIB,
        }
        return {name: value for name, value in options.items() if value}

    def get_storage(self) -> VideoStorage:
        """Build the s3fs-backed :class:`VideoStorage` for ``s3://bucket/prefix``."""
        base_url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return VideoStorage(
            base_url,
            storage_options=self._storage_options(),
            key_template=self.key_template,
            part_size=self.part_size_mib * _MIB,
        )

    async def aread_path(self, path: str) -> bytes:
        """Read the object at ``path`` (relative to bucket/prefix), for Prefect result storage."""
        storage = self.get_storage()
        return await asyncio.to_thread(storage.fs.cat_file, storage.path(path))

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        """Read the object at ``path`` (relative to bucket/prefix), for Prefect result storage."""
        storage = self.get_storage()
        return storage.fs.cat_file(storage.path(path))

    async def awrite_path(self, path: str, content: bytes) -> str:
        """Write ``content`` at ``path`` (relative to bucket/prefix) in one PUT, for Prefect result storage."""
        storage = self.get_storage()
        await asyncio.to_thread(storage.fs.pipe_file, storage.path(path), content)
        return path

    @async_dispatch(awrite_path)
    def write_path(self, path: str, content: bytes) -> str:
        """Write ``content`` at ``path`` (relative to bucket/prefix) in one PUT, for Prefect result storage."""
        storage = self.get_storage()
        storage.fs.pipe_file(storage.path(path), content)
        return path
