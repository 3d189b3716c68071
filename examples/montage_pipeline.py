"""A larger media flow: generate a batch of clips (``generate_videos`` as a subflow), join them into one montage.

The montage is one H.264 MP4 at a common size (the first clip's, unless ``width``/``height`` are
given) and a common frame rate. Clips of another aspect ratio are **letterboxed**: scaled to fit
inside the frame and centred on black bars, never cropped or stretched, so a mixed 16:9 / 9:16
batch still joins. Each clip keeps its own duration: the montage lasts the sum of the clips.

Clips are read from the batch's storage (a local directory or S3) and the montage is written to
a temporary file, then streamed into the same storage under ``montages/<batch id>.mp4``, verified
with PyAV before it appears there. No whole video is held in memory.

Run it on the local renderer (no key, no server to start):

    python examples/montage_pipeline.py "a fox at dawn" "an owl at dusk" "a heron in fog"
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import IO, Annotated

import av
import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import (
    LocalRenderer,
    LocalVideoStorage,
    ProviderBlocks,
    StorageBlocks,
)
from prefect_videogen.errors import VerificationFailed, VideoGenError
from prefect_videogen.flows import generate_videos
from prefect_videogen.flows.params import require_saved_blocks
from prefect_videogen.media import probe_video
from prefect_videogen.storage.base import VideoStorage

CHUNK_BYTES = 1024 * 1024


class MontageResult(BaseModel):
    """The stored montage and what went into it."""

    uri: str = Field(description="Where the montage MP4 is stored.")
    batch_id: str = Field(description="The generate_videos batch whose clips it joins.")
    clips: list[str] = Field(description="URIs of the clips, in montage order.")
    duration_seconds: float = Field(description="Duration read back from the stored montage.")
    width: int
    height: int


def _fit(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` at ``width`` x ``height``: scaled as is when the aspect matches, else letterboxed."""
    if frame.width * height == frame.height * width:
        return frame.reformat(width=width, height=height, format="yuv420p")
    scale = min(width / frame.width, height / frame.height)
    # Even sizes: yuv420p halves the chroma planes.
    fit_w, fit_h = max(2, int(frame.width * scale) // 2 * 2), max(2, int(frame.height * scale) // 2 * 2)
    picture = frame.reformat(width=fit_w, height=fit_h, format="rgb24").to_ndarray()
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - fit_h) // 2, (width - fit_w) // 2
    canvas[top : top + fit_h, left : left + fit_w] = picture
    return av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p")


def _clip_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base


def join_clips(
    sources: Iterable[str | IO[bytes]], target: str | Path, *, width: int, height: int, fps: int = 24
) -> int:
    """Decode each clip and encode its frames into one H.264 stream; returns the frame count.

    Frames are placed by their own timestamps plus the durations of the clips before them, on a
    ``1/fps`` grid (a frame landing on an occupied slot is dropped), so clips of any frame rate
    keep their length.

    Example:
        ```python
        frames = join_clips(["a.mp4", "b.mp4"], "montage.mp4", width=1280, height=720)
        ```
    """
    if width % 2 or height % 2:
        raise ValueError(f"{width}x{height}: H.264 (yuv420p) needs even width and height")
    offset, last_slot = 0.0, -1
    with av.open(str(target), mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "veryfast", "crf": "23"}
        for source in sources:
            with av.open(source, mode="r") as clip:
                video = clip.streams.video[0]
                start = video.start_time * video.time_base if video.start_time is not None else 0
                for frame in clip.decode(video):
                    slot = round((offset + float(frame.pts * frame.time_base - start)) * fps)
                    if slot <= last_slot:
                        continue
                    out = _fit(frame, width, height)
                    out.pts, out.time_base = slot, Fraction(1, fps)
                    output.mux(stream.encode(out))
                    last_slot = slot
                offset += _clip_duration(clip, video)
        output.mux(stream.encode())
    return last_slot + 1


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


@task(task_run_name="join {key}", cache_policy=NO_CACHE)
async def join_and_store(
    storage: VideoStorage, clip_keys: list[str], key: str, width: int | None, height: int | None, fps: int
) -> tuple[str, float, int, int]:
    """Join the stored clips into one MP4 under ``key``; returns (uri, duration, width, height) read back."""
    first = await asyncio.to_thread(_probe_stored, storage, clip_keys[0])
    width, height = width or first.width, height or first.height
    expected = 0.0
    for clip_key in clip_keys:
        expected += (await asyncio.to_thread(_probe_stored, storage, clip_key)).duration_seconds
    with tempfile.TemporaryDirectory(prefix="videogen-montage-") as workdir:
        local = Path(workdir) / "montage.mp4"

        def join() -> int:
            with ExitStack() as stack:
                sources = [stack.enter_context(storage.open_read(k)) for k in clip_keys]
                return join_clips(sources, local, width=width, height=height, fps=fps)

        frames = await asyncio.to_thread(join)

        def verify(fs, staging_path: str) -> None:
            with fs.open(staging_path, "rb") as handle:
                probe = probe_video(handle)
            if (probe.width, probe.height) != (width, height) or abs(probe.duration_seconds - expected) > 1 / fps:
                raise VerificationFailed(
                    f"montage is {probe.width}x{probe.height}, {probe.duration_seconds:.3f} s; "
                    f"expected {width}x{height}, {expected:.3f} s"
                )

        stored = await storage.write_stream(key, _file_chunks(local), verify=verify)
    get_run_logger().info(
        "montage of %d clips: %d frames, %.2f s, %d bytes at %s",
        len(clip_keys),
        frames,
        expected,
        stored.size,
        stored.uri,
    )
    probe = await asyncio.to_thread(_probe_stored, storage, key)
    return stored.uri, probe.duration_seconds, probe.width, probe.height


def _probe_stored(storage: VideoStorage, key: str):
    with storage.open_read(key) as handle:
        return probe_video(handle)


@flow(name="videogen-montage", flow_run_name="montage {prompts.template}")
async def montage_pipeline(
    prompts: PromptSource,
    provider: ProviderBlocks | None = None,
    storage: StorageBlocks | None = None,
    # Bounds in Annotated: Prefect 3.8 ignores them in Field(default=..., ge=...) of a flow parameter.
    width: Annotated[int | None, Field(ge=2, le=7680)] = Field(
        default=None, description="Montage width; empty: the first clip's."
    ),
    height: Annotated[int | None, Field(ge=2, le=7680)] = Field(
        default=None, description="Montage height; empty: the first clip's."
    ),
    fps: Annotated[int, Field(ge=1, le=120)] = Field(default=24, description="Frame rate of the montage."),
    max_cost_usd: Annotated[float | None, Field(ge=0)] = Field(
        default=None, description="Budget of the clips' batch in USD."
    ),
) -> MontageResult:
    """Generate a batch of clips, then join them, in order, into one stored montage.

    Args:
        prompts: the clips, as for ``generate_videos``; the montage follows their order.
        provider: a provider block; the local renderer when empty.
        storage: where clips and montage are stored; ``./videos`` when empty.
        width: montage width; the first clip's when empty.
        height: montage height; the first clip's when empty.
        fps: frame rate of the montage.
        max_cost_usd: budget of the clips' batch.

    Raises:
        VideoGenError: some clips were not stored (failed, rejected, refused); nothing is joined.

    Example:
        ```python
        result = await montage_pipeline(PromptSource(rows=[{"prompt": "a fox"}, {"prompt": "an owl"}]))
        print(result.uri)
        ```
    """
    # Deployed, this flow passes its blocks on to a subflow, which is not a deployment run: check here.
    require_saved_blocks(provider=(provider, ProviderBlocks), storage=(storage, StorageBlocks))
    provider = provider or LocalRenderer()
    storage = storage or LocalVideoStorage()
    batch = await generate_videos(prompts, provider=provider, storage=storage, max_cost_usd=max_cost_usd)
    missing = [f"{i.item_id} ({i.status}: {i.error})" for i in batch.items if i.status != "stored" or not i.video_uri]
    if missing:
        raise VideoGenError(f"batch {batch.batch_id}: no montage, {len(missing)} clip(s) missing: {'; '.join(missing)}")
    video_storage = storage.get_storage()
    clips = [i.video_uri for i in batch.items if i.video_uri]
    uri, duration, out_w, out_h = await join_and_store(
        video_storage, [video_storage.key_of(c) for c in clips], f"montages/{batch.batch_id}.mp4", width, height, fps
    )
    return MontageResult(
        uri=uri, batch_id=batch.batch_id, clips=clips, duration_seconds=duration, width=out_w, height=out_h
    )


if __name__ == "__main__":
    prompts = sys.argv[1:] or ["a red fox in fresh snow", "an owl at dusk", "a heron in morning fog"]
    result = asyncio.run(montage_pipeline(PromptSource(rows=[{"prompt": p} for p in prompts])))
    print(result.model_dump_json(indent=2))
