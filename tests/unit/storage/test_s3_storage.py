"""S3 storage against a real S3 API on loopback (moto in server mode): streaming, integrity, links.

Everything goes through HTTP to moto, and every check reads state back with an independent
boto3 client: objects, multipart uploads, bytes, content types.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import re
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

moto_server = pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
boto3 = pytest.importorskip("boto3")

from PIL import Image  # noqa: E402

from prefect_videogen.blocks import S3VideoStorage  # noqa: E402
from prefect_videogen.errors import StorageError, VerificationFailed  # noqa: E402
from prefect_videogen.media import probe_video, render_title_card  # noqa: E402
from prefect_videogen.models import JobStatus, VideoJob, VideoRequest  # noqa: E402
from prefect_videogen.pipeline import generate, plan_request, sidecar_key, store_video  # noqa: E402
from prefect_videogen.providers.local import LocalProvider  # noqa: E402
from prefect_videogen.storage import VideoStorage  # noqa: E402
from prefect_videogen.tasks.artifacts import make_thumbnail, presigned_url, publish_video_artifacts  # noqa: E402

MIB = 1024 * 1024
# Distinctive, and shaped like no known key pattern, so only real redaction or real care hides it.
SECRET = "moto-Secret-Value-7f3a9c"
TOKEN = "moto-Session-Token-51bd2e"


@pytest.fixture(scope="module")
def endpoint():
    """A moto S3 server on 127.0.0.1, on a free port, with fake credentials in the environment."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # never probe an instance-metadata endpoint
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            env.setenv(name, value)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture(scope="module")
def s3(endpoint):
    """An independent boto3 client, to check what really is in the bucket."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3):
    name = f"videos-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def make_block(endpoint: str, bucket: str, **overrides) -> S3VideoStorage:
    fields = dict(
        bucket=bucket,
        prefix="videos",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
        aws_session_token=TOKEN,
    )
    return S3VideoStorage(**{**fields, **overrides})


@pytest.fixture
def versioned(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


@pytest.fixture
def block(endpoint, bucket):
    return make_block(endpoint, bucket)


@pytest.fixture
def storage(block):
    return block.get_storage()


@pytest.fixture(scope="module")
def mp4_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("mp4") / "card.mp4"
    render_title_card(path, prompt="a fox in fresh snow", width=160, height=96, duration=1, fps=12)
    return path.read_bytes()


def keys(s3, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def ever_completed(s3, bucket: str) -> list[str]:
    """Keys that ever held an object, deleted or not (needs a versioned bucket).

    An aborted multipart upload leaves no version; one completed and then deleted does.
    """
    listing = s3.list_object_versions(Bucket=bucket)
    return [item["Key"] for item in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]


def pending_uploads(s3, bucket: str) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def verify_video(fs, path: str) -> None:
    """The same check store_video makes: PyAV reads the staging object through the s3fs file."""
    with fs.open(path, "rb") as handle:
        try:
            probe_video(handle)
        except ValueError as exc:
            raise VerificationFailed(str(exc)) from exc


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_streamed_mp4_is_published_only_under_its_final_key(storage, s3, bucket, mp4_bytes):
    stored = await storage.write_stream("2026/card.mp4", chunked(mp4_bytes, 1000), verify=verify_video)

    assert keys(s3, bucket) == ["videos/2026/card.mp4"]  # no staging object left behind
    body = s3.get_object(Bucket=bucket, Key="videos/2026/card.mp4")
    data = body["Body"].read()
    assert stored.sha256 == sha256(data) == sha256(mp4_bytes)
    assert stored.size == len(mp4_bytes)
    assert stored.uri == f"s3://{bucket}/videos/2026/card.mp4"
    assert body["ContentType"] == "video/mp4"
    assert probe_video(io.BytesIO(data)).frames == 12


async def test_a_stream_bigger_than_a_part_goes_up_as_a_multipart_upload(storage, s3, bucket):
    payload = os.urandom(12 * MIB)  # 8 MiB parts: two parts
    parts_seen = []

    async def watched() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), MIB):
            if start == 9 * MIB:  # the first part must be up by now, while the rest still streams
                for upload in pending_uploads(s3, bucket):
                    parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])["Parts"]
                    parts_seen.extend((upload["Key"], part["Size"]) for part in parts)
            yield payload[start : start + MIB]

    stored = await storage.write_stream("big.bin", watched(), verify=None)

    assert len(parts_seen) == 1
    staging_key, part_size = parts_seen[0]
    assert staging_key.startswith("videos/.big.bin.") and staging_key.endswith(".partial")
    assert part_size == 8 * MIB
    data = s3.get_object(Bucket=bucket, Key="videos/big.bin")["Body"].read()
    assert stored.sha256 == sha256(data) == sha256(payload)
    assert keys(s3, bucket) == ["videos/big.bin"]
    assert pending_uploads(s3, bucket) == []


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_a_failure_midway_aborts_the_upload_and_leaves_nothing(storage, s3, versioned):
    bucket = versioned
    seen_upload = []

    async def dropped_after_12_mib() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b"\x01" * MIB
        seen_upload.extend(pending_uploads(s3, bucket))  # a part is up: the multipart upload is open
        raise ConnectionResetError("provider dropped the connection")

    with pytest.raises(StorageError, match="provider dropped the connection"):
        await storage.write_stream("broken.mp4", dropped_after_12_mib())

    assert len(seen_upload) == 1
    assert keys(s3, bucket) == []
    assert pending_uploads(s3, bucket) == []
    assert ever_completed(s3, bucket) == []  # aborted, not completed with partial bytes then deleted


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_cancelling_an_upload_aborts_it(storage, s3, versioned):
    bucket = versioned
    part_sent = asyncio.Event()

    async def stalls_after_a_part() -> AsyncIterator[bytes]:
        for _ in range(9):
            yield b"\x02" * MIB
        part_sent.set()
        await asyncio.Event().wait()  # the provider stalls until we give up
        yield b""

    upload = asyncio.ensure_future(storage.write_stream("stalled.mp4", stalls_after_a_part()))
    await part_sent.wait()
    assert len(pending_uploads(s3, bucket)) == 1
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    assert keys(s3, bucket) == []
    assert pending_uploads(s3, bucket) == []
    assert ever_completed(s3, bucket) == []


class JsonErrorBodyProvider(LocalProvider):
    """A provider whose CDN answers 200 with a JSON error body instead of the video."""

    @asynccontextmanager
    async def stream_video(self, job):
        async def body() -> AsyncIterator[bytes]:
            yield b'{"error": {"message": "video expired", "code": "gone"}}'

        yield body()


async def test_a_json_body_saved_as_mp4_fails_verification_and_publishes_nothing(storage, s3, bucket):
    plan = plan_request("local", VideoRequest(prompt="a fox", duration=1))
    job = VideoJob(provider="local", job_id="job_json", model="title-card", status=JobStatus.SUCCEEDED, raw_status="ok")

    with pytest.raises(VerificationFailed, match="not a decodable video"):
        await store_video(JsonErrorBodyProvider(), plan, job, storage)

    assert keys(s3, bucket) == []  # neither the video, its staging object nor a sidecar
    assert pending_uploads(s3, bucket) == []


async def test_presigned_link_serves_the_stored_bytes(storage, mp4_bytes):
    stored = await storage.write_stream("linked.mp4", chunked(mp4_bytes, 4096))

    url = presigned_url(storage, stored.key, expires_seconds=300)

    assert url is not None and url.startswith("http://127.0.0.1:")
    assert "X-Amz-Signature=" in url  # SigV4: accepted in every AWS region
    assert SECRET not in url
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert sha256(response.content) == stored.sha256
    assert response.headers["content-type"] == "video/mp4"


async def test_presigned_url_carries_a_session_token_only_when_one_is_configured(endpoint, bucket):
    # AWS requires temporary credentials' token in the URL (X-Amz-Security-Token); without the
    # secret key it cannot sign anything else. Long-lived keys put no token there.
    with_token = presigned_url(make_block(endpoint, bucket).get_storage(), "a.mp4")
    without = presigned_url(make_block(endpoint, bucket, aws_session_token=None).get_storage(), "a.mp4")
    assert TOKEN in with_token and "X-Amz-Security-Token" in with_token
    assert "X-Amz-Security-Token" not in without and SECRET not in with_token + without


async def test_presigned_url_is_none_on_local_storage(tmp_path):
    assert presigned_url(VideoStorage(str(tmp_path)), "a.mp4") is None


async def test_thumbnail_is_the_first_frame_beside_the_video(storage, s3, bucket, mp4_bytes):
    await storage.write_stream("clips/card.mp4", chunked(mp4_bytes, 4096))

    key = await make_thumbnail(storage, "clips/card.mp4")

    assert key == "clips/card.jpg"
    image = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key="videos/clips/card.jpg")["Body"].read()))
    assert (image.format, image.size) == ("JPEG", (160, 96))


async def test_secrets_stay_out_of_repr_dumps_and_failure_text(endpoint):
    block = make_block(endpoint, "no-such-bucket-here")
    shown = [repr(block), str(block), str(block.model_dump()), block.model_dump_json(), repr(block.get_storage())]
    for text in shown:
        assert SECRET not in text and TOKEN not in text

    with pytest.raises(StorageError) as info:
        await block.get_storage().write_stream("a.mp4", chunked(b"x" * 100, 10))

    text = "".join(traceback.format_exception(info.value))
    assert "NoSuchBucket" in text or "does not exist" in text
    assert SECRET not in text and TOKEN not in text


@pytest.mark.parametrize("small", [False, True], ids=["stream", "small object"])
async def test_writing_to_a_missing_bucket_does_not_create_it(endpoint, s3, small):
    storage = make_block(endpoint, "never-created-bucket").get_storage()
    with pytest.raises(StorageError, match="never-created-bucket"):
        if small:  # a ledger line, a manifest record, a sidecar: one worker-thread call, same rules
            await storage.write_bytes("a.json", b"{}")
        else:
            await storage.write_stream("a.mp4", chunked(b"x", 1))
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "never-created-bucket" not in names


async def test_the_block_retries_in_botocores_standard_mode(block):
    # Standard mode: 3 attempts with short backoffs; the legacy default's 5 attempts made an unreachable
    # endpoint (connection refused) slow to report as "not writable".
    client = await block.get_storage().fs.set_session()
    assert client.meta.config.retries == {"mode": "standard"}
    assert client.meta.config.signature_version == "s3v4"


@pytest.mark.parametrize(
    "bad",
    [
        {"bucket": "s3://x/y"},
        {"bucket": "Upper"},
        {"prefix": "../up"},
        {"endpoint_url": "127.0.0.1:9000"},
        {"key_template": "{slug.__class__}"},
        {"part_size_mib": 4},
    ],
)
def test_block_refuses_bad_settings(endpoint, bad):
    with pytest.raises(ValueError):
        make_block(endpoint, bad.pop("bucket", "ok-bucket"), **bad)


@pytest.fixture(scope="module")
async def generated(endpoint, s3):
    """One video generated end to end by the local renderer into S3 (shared: rendering takes ~1 s)."""
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    storage = make_block(endpoint, name).get_storage()
    request = VideoRequest(prompt="a fox ../../ in snow 🦊", duration=1)
    result = await generate(LocalProvider(queue_delay_seconds=0), request, storage)
    return name, storage, result


async def test_generate_end_to_end_stores_a_verified_video_and_its_sidecar(generated, s3):
    bucket, storage, result = generated
    video_key = storage.key_of(result.video_uri)

    assert sorted(keys(s3, bucket)) == sorted([f"videos/{video_key}", f"videos/{sidecar_key(video_key)}"])
    data = s3.get_object(Bucket=bucket, Key=f"videos/{video_key}")["Body"].read()
    probe = probe_video(io.BytesIO(data))
    assert sha256(data) == result.sha256 and len(data) == result.bytes
    assert (probe.width, probe.height) == (result.width, result.height) == (1280, 720)
    assert round(probe.duration_seconds, 3) == result.duration_seconds == 1.0
    sidecar = await storage.read_json(sidecar_key(video_key))
    assert sidecar["video_key"] == video_key and sidecar["sha256"] == result.sha256
    assert "http" not in str(sidecar)  # keys, never expiring URLs


async def test_block_is_prefect_result_storage(prefect_server, block, s3, bucket):
    from prefect import flow, task
    from prefect.results import ResultStore

    await block.save(f"results-{bucket}", overwrite=True)
    loaded = await S3VideoStorage.load(f"results-{bucket}")
    assert loaded.aws_secret_access_key.get_secret_value() == SECRET  # kept server-side, masked in dumps
    assert await loaded.get_storage().exists("nothing-here.mp4") is False

    @task(persist_result=True, result_storage=block, result_storage_key="results/square-{parameters[n]}")
    def square(n: int) -> int:
        return n * n

    @flow
    def squares() -> int:
        return square(7)

    assert squares() == 49
    assert "videos/results/square-7" in keys(s3, bucket)
    record = await ResultStore(result_storage=block).aread("results/square-7")
    assert record.result == 49


async def test_publish_video_artifacts_shows_a_fresh_link_and_thumbnail(prefect_server, generated):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    _, storage, result = generated

    @flow
    async def show():
        return await publish_video_artifacts(result, storage, expires_seconds=600)

    created = await show()

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                id=ArtifactFilterId(any_=[created.link_artifact_id, created.image_artifact_id])
            )
        )
    by_type = {artifact.type: artifact for artifact in found}
    link = re.search(r"\((http[^)]+)\)", by_type["markdown"].data).group(1)
    async with httpx.AsyncClient() as http:
        video, image = await http.get(link), await http.get(by_type["image"].data)
    assert sha256(video.content) == result.sha256
    assert Image.open(io.BytesIO(image.content)).format == "JPEG"
    assert created.thumbnail_key == storage.key_of(result.video_uri).removesuffix(".mp4") + ".jpg"
    for artifact in found:
        assert SECRET not in str(artifact.data) + str(artifact.description)


async def test_publish_video_artifacts_on_local_storage_links_the_file(prefect_server, tmp_path, mp4_bytes):
    import socket

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    storage = VideoStorage(str(tmp_path / "videos"))
    request = VideoRequest(prompt="a local fox", duration=1)
    result = await generate(LocalProvider(queue_delay_seconds=0), request, storage)

    @flow
    async def show():
        return await publish_video_artifacts(result, storage)

    created = await show()
    # No file:// link (browsers refuse it): a markdown artifact naming the host, and an embedded thumbnail.
    assert created.image_artifact_id is not None and created.thumbnail_key is None and created.expires_at is None
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                id=ArtifactFilterId(any_=[created.link_artifact_id, created.image_artifact_id])
            )
        )
    by_type = {a.type: a for a in found}
    assert (
        f"Stored on host `{socket.gethostname()}`" in by_type["markdown"].data
        and "file://" not in by_type["markdown"].data
    )
    assert by_type["image"].data.startswith("data:image/jpeg;base64,")
    assert by_type["markdown"].key == f"video-local-{result.job_id}".lower().replace("_", "-")


async def test_local_storage_failure_keeps_the_original_error_and_no_staging_file(tmp_path):
    # Local files have a discard() that refuses autocommitted files; calling it used to replace
    # the provider's error with "Cannot discard if set to autocommit".
    async def dropped() -> AsyncIterator[bytes]:
        yield b"abc"
        raise ConnectionResetError("provider dropped the connection")

    storage = VideoStorage(str(tmp_path / "videos"))
    with pytest.raises(StorageError, match="provider dropped the connection"):
        await storage.write_stream("day/clip.mp4", dropped())
    assert list((tmp_path / "videos" / "day").iterdir()) == []
