"""The embedded renderer makes real MP4s of the requested duration and size, behind the provider interface."""

from __future__ import annotations

import pytest
from PIL import Image

from prefect_videogen.catalog import load_catalog
from prefect_videogen.errors import InvalidVideoRequest, JobTimedOut
from prefect_videogen.media import probe_video
from prefect_videogen.models import JobStatus, VideoRequest
from prefect_videogen.pipeline import generate
from prefect_videogen.providers import LocalProvider, PollSchedule, wait_for_job
from prefect_videogen.storage import VideoStorage

from fakes import FakeClock


@pytest.mark.parametrize(
    ("aspect", "resolution", "duration", "size"),
    [("9:16", "standard", 4, (720, 1280)), ("16:9", "standard", 2, (1280, 720)), ("16:9", "high", 1, (1920, 1080))],
)
async def test_rendered_video_matches_request(tmp_path, aspect, resolution, duration, size):
    request = VideoRequest(
        prompt="a red fox running through fresh snow", duration=duration, aspect_ratio=aspect, resolution=resolution
    )
    result = await generate(
        LocalProvider(queue_delay_seconds=0, jobs_dir=tmp_path / "jobs"),
        request,
        VideoStorage(str(tmp_path / "videos")),
    )
    probe = probe_video(result.video_uri)
    assert probe.codec == "h264"
    assert (probe.width, probe.height) == size
    assert probe.duration_seconds == pytest.approx(duration, abs=0.01)
    assert probe.frames == duration * 24
    assert (result.width, result.height, result.bytes) == (
        *size,
        (tmp_path / "videos").joinpath(result.video_uri.split("/videos/")[1]).stat().st_size,
    )


async def test_job_moves_through_queue_on_an_injected_clock(tmp_path):
    clock = FakeClock(1_000.0)
    provider = LocalProvider(queue_delay_seconds=10, jobs_dir=tmp_path, clock=clock)
    plan = load_catalog().plan("local", VideoRequest(prompt="a fox"))
    job = await provider.submit(plan)
    assert job.status is JobStatus.QUEUED
    clock.now += 6
    running = await provider.get_job(job)
    assert running.status is JobStatus.RUNNING
    done = await wait_for_job(provider, running, clock=clock, sleep=clock.sleep)
    assert done.status is JobStatus.SUCCEEDED
    # The server hint (time left) is followed, so the job is seen done at once, without busy polling.
    assert sum(clock.slept) == pytest.approx(4, abs=0.01)
    assert len(clock.slept) == 1


async def test_another_process_can_resume_a_job(tmp_path):
    clock = FakeClock(1_000.0)
    first = LocalProvider(queue_delay_seconds=5, jobs_dir=tmp_path, clock=clock)
    job = await first.submit(load_catalog().plan("local", VideoRequest(prompt="a fox")))
    clock.now += 5
    again = LocalProvider(jobs_dir=tmp_path, clock=clock)  # a fresh client, as after a restart
    assert (await again.get_job(job)).status is JobStatus.SUCCEEDED


async def test_idempotency_key_replays_the_same_job(tmp_path):
    provider = LocalProvider(jobs_dir=tmp_path)
    plan = load_catalog().plan("local", VideoRequest(prompt="a fox"))
    first = await provider.submit(plan, idempotency_key="abc")
    second = await provider.submit(plan, idempotency_key="abc")
    assert first.job_id == second.job_id
    assert len(list(tmp_path.glob("*.json"))) == 1


async def test_wait_gives_up_at_the_deadline_keeping_the_job_id(tmp_path):
    clock = FakeClock(1_000.0)
    provider = LocalProvider(queue_delay_seconds=100, jobs_dir=tmp_path, clock=clock)
    job = await provider.submit(load_catalog().plan("local", VideoRequest(prompt="a fox")))
    with pytest.raises(JobTimedOut) as caught:
        await wait_for_job(provider, job, timeout=30, clock=clock, sleep=clock.sleep, schedule=PollSchedule(maximum=5))
    assert caught.value.job_id == job.job_id
    assert clock.now - 1_000.0 == pytest.approx(30)


async def test_image_to_video_uses_the_image(tmp_path):
    image = tmp_path / "first.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
    request = VideoRequest(prompt="a fox", duration=1, image=str(image))
    result = await generate(
        LocalProvider(queue_delay_seconds=0, jobs_dir=tmp_path / "jobs"),
        request,
        VideoStorage(str(tmp_path / "videos")),
    )
    import av

    with av.open(result.video_uri) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    red, green = frame[5, 5, 0], frame[5, 5, 1]
    assert red > 150 and green < 80  # the image is the background, not the default gradient


@pytest.mark.parametrize("image", ["https://example.com/a.png", "/no/such/file.png"])
async def test_bad_image_is_refused_before_anything_runs(tmp_path, image):
    provider = LocalProvider(jobs_dir=tmp_path)
    with pytest.raises(InvalidVideoRequest, match="image="):
        await provider.submit(load_catalog().plan("local", VideoRequest(prompt="a fox", image=image)))
    assert list(tmp_path.iterdir()) == []
