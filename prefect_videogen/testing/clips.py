"""The MP4s the per-model emulators serve: the right size and duration, at the least CPU.

A 3840x2160 10 s title card at the emulators' usual 6 fps costs about 7.5 s of CPU; clients only
verify size and duration (read back with PyAV), so the models other than the Sora seeds get a still
clip: one flat frame repeated at 1 fps, which H.264 encodes as one keyframe plus skipped blocks
(4k 10 s: about 0.6 s of CPU, once per size and duration thanks to the cache).
"""

from __future__ import annotations

import io
from fractions import Fraction
from functools import lru_cache
from typing import Literal

import av

from prefect_videogen.testing.server import video_bytes

STILL_FPS = 1
_GREY = 0x60


@lru_cache(maxsize=64)
def still_clip(width: int, height: int, duration: int) -> bytes:
    """A real H.264 MP4 of ``width`` x ``height`` lasting exactly ``duration`` seconds (cached)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=STILL_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, STILL_FPS)
        stream.options = {"preset": "ultrafast", "crf": "40"}
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            memoryview(plane)[:] = bytes([_GREY]) * plane.buffer_size
        for index in range(duration * STILL_FPS):
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def clip_bytes(render: Literal["still", "title_card"], width: int, height: int, duration: int) -> bytes:
    """The clip a job serves: the shared moving title card (the Sora seeds, as before) or a still clip."""
    if render == "title_card":
        return video_bytes(width, height, duration)
    return still_clip(width, height, duration)
