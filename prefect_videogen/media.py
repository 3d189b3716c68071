"""Real video I/O with PyAV: render the local provider's title cards, probe stored files (``probe_video``) and
judge them against the request (``judge``)."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Tolerances of what a stored video is compared with: providers round durations to whole frames and
# encoders pad dimensions to macroblocks (1080 -> 1088), so exact equality would flag good videos.
DURATION_TOLERANCE_SECONDS = 0.5
SIZE_TOLERANCE_FRACTION = 0.02
# A paid video is refused only when it cannot be what was asked for: its duration is off by more
# than max(1 s, 25 % of the requested duration). A different frame size is the provider's choice
# (APIFrame sora-2-pro "high" is 1792x1024 where the catalog guesses 1920x1080): kept and flagged.
REFUSE_DURATION_MIN_SECONDS = 1.0
REFUSE_DURATION_FRACTION = 0.25


@dataclass(frozen=True)
class VideoProbe:
    """What a video file really is, read back with PyAV."""

    duration_seconds: float
    width: int
    height: int
    codec: str
    frames: int


def _first_frame(container: Any, stream: Any) -> av.VideoFrame:
    """The first decoded frame of ``stream``, on one decoder thread: FFmpeg's default frame threading
    starts a thread per core and decodes ahead, work thrown away when only the first frame is wanted.

    Raises:
        StopIteration: the stream has no decodable frame.
    """
    stream.codec_context.thread_count = 1
    return next(container.decode(stream))


def probe_video(source: str | Path | IO[bytes]) -> VideoProbe:
    """Open ``source`` (a path or a seekable binary file) with PyAV and read its first video stream.

    Raises:
        ValueError: the bytes are not a decodable video (for example a JSON error body saved as .mp4).
    """
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                raise ValueError("duration unknown")
            # Decode the first frame: a header alone does not prove the stream is decodable.
            _first_frame(container, stream)
            return VideoProbe(
                duration_seconds=duration,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                codec=stream.codec_context.name,
                frames=stream.frames,
            )
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise ValueError(f"not a decodable video: {exc}") from exc


@dataclass(frozen=True)
class Verdict:
    """What to do with a decodable video: refuse it (``refusal``) or keep it with ``warnings``."""

    refusal: str | None
    warnings: list[str]


def judge(probe: VideoProbe, *, duration: float, width: int, height: int) -> Verdict:
    """Compare ``probe`` with what was asked for.

    Rules: a duration off by more than ``max(REFUSE_DURATION_MIN_SECONDS, REFUSE_DURATION_FRACTION
    * duration)`` refuses the video; a smaller duration difference beyond
    ``DURATION_TOLERANCE_SECONDS``, and any width or height beyond ``SIZE_TOLERANCE_FRACTION``, are
    warnings: the video is paid for and usable, so it is kept and its real size recorded.
    """
    warnings = []
    off = abs(probe.duration_seconds - duration)
    refuse_beyond = max(REFUSE_DURATION_MIN_SECONDS, REFUSE_DURATION_FRACTION * duration)
    if off > refuse_beyond:
        return Verdict(
            f"duration {probe.duration_seconds:.2f} s, expected {duration} s (refused beyond ± {refuse_beyond:.2f} s)",
            [],
        )
    if off > DURATION_TOLERANCE_SECONDS:
        warnings.append(
            f"duration {probe.duration_seconds:.2f} s, expected {duration} s ± {DURATION_TOLERANCE_SECONDS} s"
        )
    if any(
        abs(got - want) > want * SIZE_TOLERANCE_FRACTION for got, want in ((probe.width, width), (probe.height, height))
    ):
        warnings.append(f"size {probe.width}x{probe.height}, expected {width}x{height} ± {SIZE_TOLERANCE_FRACTION:.0%}")
    return Verdict(None, warnings)


def mismatch(probe: VideoProbe, *, duration: float, width: int, height: int) -> str | None:
    """Describe every way ``probe`` differs from what was asked for beyond the stated tolerances (strict)."""
    verdict = judge(probe, duration=duration, width=width, height=height)
    return "; ".join([*([verdict.refusal] if verdict.refusal else []), *verdict.warnings]) or None


def _background(width: int, height: int, image: str | None) -> np.ndarray:
    if image:
        with Image.open(image) as img:
            return np.asarray(img.convert("RGB").resize((width, height)), dtype=np.uint8).copy()
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    base = np.stack([30 + 40 * ys + 0 * xs, 40 + 60 * xs * ys, 90 + 80 * ys + 0 * xs], axis=-1)
    return base.astype(np.uint8)


def _text_mask(prompt: str, width: int, height: int) -> np.ndarray:
    """Flat pixel indices covered by the wrapped prompt text, rendered once with Pillow."""
    font_size = max(16, min(width, height) // 14)
    font = ImageFont.load_default(size=font_size)
    chars_per_line = max(8, int(width * 0.85 / (font_size * 0.55)))
    lines = textwrap.wrap(prompt, chars_per_line)[: max(1, int(height * 0.7 / (font_size * 1.3)))]
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    text = "\n".join(lines)
    box = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    origin = ((width - (box[2] - box[0])) // 2, (height - (box[3] - box[1])) // 2)
    draw.multiline_text(origin, text, font=font, fill=255, align="center")
    return np.flatnonzero(np.asarray(canvas) > 127)


def render_title_card(
    target: str | Path,
    *,
    prompt: str,
    width: int,
    height: int,
    duration: int,
    fps: int = 24,
    image: str | None = None,
) -> None:
    """Write an H.264 MP4 of ``duration * fps`` frames: the prompt over a moving light band.

    Each frame is built from arrays prepared once (background, text pixels), so rendering costs
    about one array copy per frame; the encoder's ``ultrafast`` preset keeps 1080p quick.
    """
    background = _background(width, height, image)
    text_pixels = _text_mask(prompt, width, height)
    band = max(4, width // 12)
    bar_height = max(4, height // 90)
    frames = duration * fps
    with av.open(str(target), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for index in range(frames):
            frame = background.copy()
            x = int((index / max(frames - 1, 1)) * (width + band)) - band
            lo, hi = max(x, 0), min(x + band, width)
            if hi > lo:
                frame[:, lo:hi] = np.minimum(frame[:, lo:hi].astype(np.uint16) + 60, 255).astype(np.uint8)
            frame.reshape(-1, 3)[text_pixels] = 245
            frame[height - bar_height :, : int(width * (index + 1) / frames)] = (230, 120, 40)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def first_frame_image(source: str | Path | IO[bytes], *, image_format: str = "JPEG", max_size: int = 640) -> bytes:
    """Encode the first decodable frame of ``source`` as an image (a thumbnail), at most ``max_size`` pixels wide or high.

    Example:
        ```python
        jpeg = first_frame_image("clip.mp4")
        ```

    Raises:
        ValueError: the bytes are not a decodable video.
    """
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            image = _first_frame(container, container.streams.video[0]).to_image()
    except (av.error.FFmpegError, StopIteration, ValueError) as exc:
        raise ValueError(f"not a decodable video: {exc}") from exc
    image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=image_format)
    return buffer.getvalue()
