"""The emulators' in-flight counter: jobs queued or running now, and the most at once."""

from __future__ import annotations

import httpx

from prefect_videogen.testing import EmulatorServer
from prefect_videogen.testing.apiframe_emulator import EMULATOR_API_KEY, APIFrameEmulator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def create(client: httpx.Client, n: int) -> None:
    body = {"model": "sora-2", "prompt": f"clip {n}", "soraParams": {"duration": 4, "aspect_ratio": "16:9"}}
    client.post("/v2/videos/generate", json=body).raise_for_status()


def test_in_flight_counts_current_and_peak_jobs_over_real_http():
    clock = Clock()
    emulator = APIFrameEmulator(latency_seconds=10, clock=clock)
    with (
        EmulatorServer(emulator) as server,
        httpx.Client(base_url=server.base_url, headers={"X-API-Key": EMULATOR_API_KEY}) as client,
    ):
        for n in range(3):  # three jobs at t = 0, 4, 8: all three in flight at t = 8
            create(client, n)
            clock.now += 4
        clock.now += 3  # t = 15: the first two have ended (at 10 and 14)
        create(client, 3)  # t = 15: with the third, two in flight
        assert emulator.in_flight() == (2, 3)
        state = client.get("/_emulator/state").json()
        assert state["in_flight"] == {"current": 2, "peak": 3}
        clock.now += 100
        assert emulator.in_flight() == (0, 3)
