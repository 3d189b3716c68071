"""What every provider emulator shares: a loopback server, job clock, counters, faults, real MP4s.

An emulator is an ASGI app (Starlette) over an :class:`EmulatorState`. :class:`EmulatorServer`
runs it with uvicorn on 127.0.0.1 in a background thread, so tests and dry runs talk real HTTP.

Example:
    ```python
    from prefect_videogen.testing import EmulatorServer, OpenAIEmulator

    with EmulatorServer(OpenAIEmulator()) as server:
        print(server.base_url, server.emulator.counters["jobs_created"])
    ```
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import uvicorn
from starlette.responses import Response

from prefect_videogen.media import render_title_card

# Emulated videos are rendered at a low frame rate: duration and size are what clients verify,
# and 6 fps keeps a 1080p 20 s clip quick to render on a 2-core CI machine.
EMULATOR_FPS = 6


@dataclass
class Fault:
    """One injected misbehaviour, taken by the next matching request.

    Attributes:
        status: answer with this HTTP status (and ``body``/``headers``) instead of the real answer.
        body: JSON body of that answer; provider emulators fill a documented default when None.
        headers: extra response headers (``Retry-After``, ``retry-after-ms``...).
        drop_after_bytes: for downloads, close the connection after this many body bytes.
        reject: for job creation, fail the job by content policy at this stage
            ("prompt", "image" or "output").
        fail_on_create: the create response itself already reports the job failed.
        after_create: apply ``status`` only after the job was really created (an ambiguous 5xx).
        payload: for downloads, serve these bytes as ``video/mp4`` instead of the video (for
            example a JSON error body: a paid job whose output is not a video).
        ignore_range: for downloads, answer a ``Range`` request with the whole body (200), as
            servers without range support do.
        answer_delay_seconds: for job creation, create the job, then wait this long before
            answering (a client that times out or dies meanwhile never learns the job id).
    """

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop_after_bytes: int | None = None
    reject: str | None = None
    fail_on_create: bool = False
    after_create: bool = False
    payload: bytes | None = None
    ignore_range: bool = False
    answer_delay_seconds: float = 0.0


class FaultPlan:
    """Faults queued per endpoint ("create", "poll", "list", "download", "upload", "asset"), plus random rates."""

    def __init__(self, seed: int = 0) -> None:
        self._queued: dict[str, deque[Fault]] = {}
        self._rates: dict[str, list[tuple[float, Fault]]] = {}
        self._seed = seed
        # One random stream per endpoint: how many polls or downloads a run makes (timing) must not
        # change which creates draw a fault.
        self._random: dict[str, random.Random] = {}
        self._lock = threading.Lock()

    def add(self, endpoint: str, fault: Fault, *, times: int = 1) -> None:
        with self._lock:
            self._queued.setdefault(endpoint, deque()).extend([fault] * times)

    def rate(self, endpoint: str, probability: float, fault: Fault) -> None:
        """Apply ``fault`` to each ``endpoint`` request with ``probability`` (seeded, repeatable)."""
        with self._lock:
            self._rates.setdefault(endpoint, []).append((probability, fault))

    def take(self, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self._queued.get(endpoint)
            if queue:
                return queue.popleft()
            draw = self._random.setdefault(endpoint, random.Random(f"{self._seed}:{endpoint}")).random
            for probability, fault in self._rates.get(endpoint, []):
                if draw() < probability:
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
            self._rates.clear()


class EmulatorState:
    """Jobs, counters and faults of one emulated provider.

    Args:
        latency_seconds: how long a job takes from creation to success.
        poll_after_ms: the poll hint the emulator sends where its provider sends one; default a
            quarter of the latency, between 10 ms and 500 ms (a 2 s job: 4 polls, not 200).
        clock: seconds, injectable.
    """

    provider = "emulator"

    def __init__(
        self,
        *,
        latency_seconds: float = 0.05,
        poll_after_ms: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        self.latency_seconds = latency_seconds
        self.poll_after_ms = (
            poll_after_ms if poll_after_ms is not None else int(min(500, max(10, latency_seconds * 250)))
        )
        self.clock = clock
        self.faults = FaultPlan(seed)
        self.counters: Counter[str] = Counter()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def elapsed_fraction(self, job: dict[str, Any]) -> float:
        if self.latency_seconds <= 0:
            return 1.0
        return min((self.clock() - job["created"]) / self.latency_seconds, 1.0)

    def in_flight(self) -> tuple[int, int]:
        """Jobs queued or running now, and the most there ever were at once: ``(current, peak)``.

        A job is in flight from its creation until ``latency_seconds`` later, when it ends (a job
        failed on creation counts too: the count never reads lower than the provider's). Computed
        from the jobs' creation times, so no emulator has to report starts and ends; the peak is
        reached at some creation, so one sweep over the sorted creation times finds it.
        """
        with self.lock:
            created = sorted(job["created"] for job in self.jobs.values() if "created" in job)
        now, ends, peak = self.clock(), deque[float](), 0
        for start in created:
            while ends and ends[0] <= start:
                ends.popleft()
            ends.append(start + self.latency_seconds)
            peak = max(peak, len(ends))
        return sum(1 for start in created if start <= now < start + self.latency_seconds), peak

    def reset(self) -> None:
        with self.lock:
            self.counters.clear()
            self.jobs.clear()
        self.faults.clear()

    @property
    def app(self) -> Any:  # an ASGI application
        raise NotImplementedError


@lru_cache(maxsize=32)
def _rendered(width: int, height: int, duration: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="videogen-emulator-") as tmp:
        target = Path(tmp) / "video.mp4"
        render_title_card(
            target,
            prompt=f"emulated {width}x{height} {duration}s",
            width=width,
            height=height,
            duration=duration,
            fps=EMULATOR_FPS,
        )
        return target.read_bytes()


def video_bytes(width: int, height: int, duration: int) -> bytes:
    """A real H.264 MP4 of this size and duration (cached: emulators serve many identical clips)."""
    return _rendered(width, height, duration)


class DroppedDownload:
    """An ASGI response that announces the whole body (Content-Length), sends ``keep`` bytes, then
    fails, so uvicorn aborts the connection: the client sees a download dropped midway."""

    def __init__(
        self,
        data: bytes,
        keep: int,
        *,
        media_type: str = "video/mp4",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.data, self.keep, self.media_type, self.status = data, keep, media_type, status
        self.headers = headers or {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", self.media_type.encode()),
            (b"content-length", str(len(self.data)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in self.headers.items()),
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.data[: self.keep], "more_body": True})
        raise ConnectionAbortedError("emulated connection drop mid-download")


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def video_download(state: EmulatorState, request: Any, data: bytes, fault: Fault | None) -> Any:
    """The ASGI answer to a video download, as a CDN gives it: ``Range`` honoured (206 with
    ``Content-Range``; 416 past the end), an ``ETag``, and the fault's drop or payload applied.

    Counts ``download_bytes``: the body bytes actually served, so tests can prove a resumed
    download fetched the file about once.
    """
    if fault and fault.payload is not None:
        data = fault.payload
    headers = {"accept-ranges": "bytes", "etag": f'"{hashlib.sha256(data).hexdigest()[:32]}"'}
    status, body = 200, data
    match = _RANGE.match(request.headers.get("range", ""))
    if_range = request.headers.get("if-range")
    if match and not (fault and fault.ignore_range) and (if_range is None or if_range == headers["etag"]):
        start = int(match[1])
        end = min(int(match[2]), len(data) - 1) if match[2] else len(data) - 1
        if start >= len(data) or end < start:
            return Response(status_code=416, headers={"content-range": f"bytes */{len(data)}"})
        status, body = 206, data[start : end + 1]
        headers["content-range"] = f"bytes {start}-{end}/{len(data)}"
    if fault and fault.drop_after_bytes is not None:
        state.count("download_bytes", min(fault.drop_after_bytes, len(body)))
        return DroppedDownload(body, fault.drop_after_bytes, status=status, headers=headers)
    state.count("download_bytes", len(body))
    return Response(body, status_code=status, media_type="video/mp4", headers=headers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONTROL_PREFIX = "/_emulator"


def with_control_routes(emulator: EmulatorState) -> Any:
    """Wrap the emulator's app with ``GET /_emulator/state`` and ``POST /_emulator/reset``.

    Lets a test or a user inspect an emulator that runs in another process (counters, charges).
    """
    app = emulator.app

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(CONTROL_PREFIX):
            await app(scope, receive, send)
            return
        if path == f"{CONTROL_PREFIX}/reset" and scope["method"] == "POST":
            emulator.reset()
        body = json.dumps(
            {
                "provider": emulator.provider,
                "counters": dict(emulator.counters),
                "charges": dict(getattr(emulator, "charges", {}) or {}),
                "jobs": len(emulator.jobs),
                "in_flight": dict(zip(("current", "peak"), emulator.in_flight(), strict=True)),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return wrapped


class EmulatorServer:
    """Run an emulator on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, emulator: EmulatorState, *, port: int = 0) -> None:
        self.emulator = emulator
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EmulatorServer:
        config = uvicorn.Config(
            with_control_routes(self.emulator),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"{self.emulator.provider}-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.emulator.provider} emulator did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted (the ``prefect-videogen emulator`` command)."""
        uvicorn.run(
            with_control_routes(self.emulator), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
