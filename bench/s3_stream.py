"""Benchmark: stream a large synthetic download into S3 and report peak memory growth and throughput.

A loopback HTTP server (uvicorn + starlette) streams ``--size-mib`` MiB; the client reads it with
httpx ``aiter_bytes`` straight into :meth:`VideoStorage.write_stream` on an S3 API served by moto.
moto keeps objects in memory, so it runs in a separate process and its memory is not counted.

Target: peak RSS growth under 150 MB for 1 GiB.

Usage:
    python bench/s3_stream.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from prefect_videogen.storage import VideoStorage

MIB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB of a fixed pattern: cheap to produce, easy to hash


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vm_hwm_kib() -> int:
    """Peak resident set size of this process (Linux: VmHWM in /proc/self/status), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS, so that growth is measured from now.

    Writing 5 to clear_refs does this (Linux >= 4.0); containers may refuse it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def payload_app(size: int) -> Starlette:
    async def video(request: Request) -> StreamingResponse:
        async def body():
            left = size
            while left > 0:
                chunk = BLOCK if left >= len(BLOCK) else BLOCK[:left]
                left -= len(chunk)
                yield chunk

        return StreamingResponse(body(), media_type="video/mp4", headers={"content-length": str(size)})

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/video.mp4", video), Route("/ping", ping)])


def start_payload_server(size: int) -> tuple[uvicorn.Server, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(payload_app(size), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}/video.mp4"


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(endpoint, timeout=1)
            return process, endpoint
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto server did not start")


async def run(size: int, endpoint: str, url: str, part_size: int) -> None:
    storage = VideoStorage(
        "s3://bench/videos",
        storage_options={"endpoint_url": endpoint, "key": "testing", "secret": "testing"},
        part_size=part_size,
    )
    await asyncio.to_thread(storage.fs.mkdir, "bench")
    expected = hashlib.sha256()
    for left in range(size, 0, -len(BLOCK)):
        expected.update(BLOCK[: min(left, len(BLOCK))])

    async with httpx.AsyncClient(timeout=60) as client:  # warm up imports and the s3fs session
        await client.get(url.replace("/video.mp4", "/ping"))
    await asyncio.to_thread(storage.fs.ls, "bench")
    was_reset = reset_hwm()
    rss_before = vm_hwm_kib()
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
        response.raise_for_status()
        stored = await storage.write_stream("bench.mp4", response.aiter_bytes(), verify=None)
    seconds = time.monotonic() - started
    growth_mb = (vm_hwm_kib() - rss_before) * 1024 / 1e6
    size_on_s3 = (await asyncio.to_thread(storage.fs.info, storage.path("bench.mp4")))["size"]

    print(f"payload        {size / MIB:.0f} MiB, parts of {part_size / MIB:.0f} MiB")
    print(f"stored         {stored.uri} ({size_on_s3} bytes on S3), sha256 ok: {stored.sha256 == expected.hexdigest()}")
    print(f"time           {seconds:.1f} s, throughput {size / MIB / seconds:.0f} MiB/s")
    print(f"peak RSS       {vm_hwm_kib() / 1024:.0f} MiB (VmHWM), growth during the upload {growth_mb:.0f} MB")
    if not was_reset:
        print("               (VmHWM could not be reset: growth is measured against the earlier peak)")
    print(f"target         growth < 150 MB: {'PASS' if growth_mb < 150 else 'FAIL'}")
    if stored.size != size or size_on_s3 != size or stored.sha256 != expected.hexdigest():
        raise SystemExit("stored object does not match the payload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="payload size in MiB (default 1024)")
    parser.add_argument("--part-mib", type=int, default=8, help="multipart part size in MiB (default 8)")
    args = parser.parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    moto, endpoint = start_moto()
    payload_server, url = start_payload_server(args.size_mib * MIB)
    try:
        asyncio.run(run(args.size_mib * MIB, endpoint, url, args.part_mib * MIB))
    finally:
        payload_server.should_exit = True
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
