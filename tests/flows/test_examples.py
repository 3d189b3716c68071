"""examples/montage_pipeline.py: clips from a generate_videos subflow joined into one stored, letterboxed montage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

from prefect_videogen.batch.expansion import PromptSource
from prefect_videogen.blocks import (
    APIFrameCredentials,
    LocalRenderer,
    LocalVideoStorage,
)
from prefect_videogen.errors import VideoGenError
from prefect_videogen.media import probe_video
from prefect_videogen.testing.apiframe_emulator import (
    EMULATOR_API_KEY,
    APIFrameEmulator,
)
from prefect_videogen.testing.server import EmulatorServer, Fault

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


montage = load_example("montage_pipeline")


def frame_at(path: str, seconds: float) -> np.ndarray:
    """The RGB frame shown at ``seconds``."""
    with av.open(path) as container:
        for frame in container.decode(video=0):
            if frame.time + 1e-6 >= seconds:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {seconds} s")


async def test_montage_of_three_clips_with_a_letterboxed_portrait_one(prefect_server, tmp_path):
    prompts = PromptSource(
        template="{subject} ({run})",
        rows=[
            {"subject": "a fox at dawn", "duration": 1},
            {"subject": "an owl at dusk", "duration": 2},
            {"subject": "a heron in fog", "duration": 1, "aspect_ratio": "9:16"},
        ],
        grid={"run": [tmp_path.name]},
        defaults={"aspect_ratio": "16:9"},
    )
    state = await montage.montage_pipeline(
        prompts,
        provider=LocalRenderer(queue_delay_seconds=0, jobs_dir=str(tmp_path / "jobs")),
        storage=LocalVideoStorage(base_path=str(tmp_path / "videos")),
        return_state=True,
    )
    result = await state.aresult()

    clips = [probe_video(c) for c in result.clips]
    assert [(c.width, c.height, c.duration_seconds) for c in clips] == [
        (1280, 720, 1.0),
        (1280, 720, 2.0),
        (720, 1280, 1.0),
    ]
    probe = probe_video(result.uri)
    assert result.uri == str(tmp_path / "videos" / "montages" / f"{result.batch_id}.mp4")
    assert (probe.width, probe.height, probe.codec) == (1280, 720, "h264")
    assert probe.duration_seconds == pytest.approx(sum(c.duration_seconds for c in clips), abs=1e-6)
    assert probe.frames == 4 * 24
    assert (result.width, result.height, result.duration_seconds) == (1280, 720, probe.duration_seconds)

    landscape, portrait = frame_at(result.uri, 0.5), frame_at(result.uri, 3.5)
    # The portrait clip is 405x720 in the middle, black bars either side; landscape clips fill the frame.
    assert portrait[:, :400].max() < 20 and portrait[:, -400:].max() < 20
    assert portrait[:, 500:780].mean() > 40
    assert landscape[:, :400].mean() > 40 and landscape[:, -400:].mean() > 40
    assert not list((tmp_path / "videos" / "montages").glob(".*"))  # no staging file left behind

    # generate_videos ran as a subflow of the montage run.
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    assert [(c.flow_id is not None, c.state_name) for c in children] == [(True, "Completed")]


async def test_no_montage_when_a_clip_is_missing(prefect_server, tmp_path):
    prompts = PromptSource(rows=[{"prompt": f"a fox ({tmp_path.name})"}, {"prompt": f"an owl ({tmp_path.name})"}])
    with EmulatorServer(APIFrameEmulator(latency_seconds=0.05)) as apiframe:
        apiframe.emulator.faults.add("create", Fault(reject="prompt"))  # one of the two jobs is rejected
        block = APIFrameCredentials(api_key=EMULATOR_API_KEY, base_url=apiframe.base_url, poll_interval_seconds=0.01)
        with pytest.raises(VideoGenError, match=r"1 clip\(s\) missing: item-\w+ \(rejected: .*content policy"):
            await montage.montage_pipeline(
                prompts, provider=block, storage=LocalVideoStorage(base_path=str(tmp_path / "videos"))
            )
        assert apiframe.emulator.counters["jobs_created"] == 2
    assert len(list((tmp_path / "videos").rglob("*.mp4"))) == 1  # the other clip is stored, for a rerun
    assert not (tmp_path / "videos" / "montages").exists()


def test_join_clips_refuses_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        montage.join_clips([], tmp_path / "x.mp4", width=1279, height=720)


def test_montage_parameters_are_bounded():
    with pytest.raises(Exception, match="fps"):
        montage.montage_pipeline.validate_parameters({"prompts": {"rows": [{"prompt": "a fox"}]}, "fps": 0})
    with pytest.raises(Exception, match="width"):
        montage.montage_pipeline.validate_parameters({"prompts": {"rows": [{"prompt": "a fox"}]}, "width": 1})
