"""The README's main command, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from prefect_videogen.cli import main
from prefect_videogen.media import probe_video


def test_cli_generates_in_process(prefect_server, tmp_path, capsys):
    code = main(["generate", "a red fox running through fresh snow", "--provider", "local", "--duration", "2",
                 "--aspect", "9:16", "--out", str(tmp_path / "videos")])
    out = capsys.readouterr().out
    assert code == 0
    video = next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith("video:"))
    sidecar = next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith("sidecar:"))
    probe = probe_video(video)
    assert (probe.width, probe.height, probe.duration_seconds) == (720, 1280, 2.0)
    assert os.path.isfile(sidecar)


def test_cli_bad_input_exits_2_naming_the_field(tmp_path, capsys):
    code = main(["generate", "a fox", "--aspect", "4:3", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "aspect_ratio='4:3'" in err and "'16:9' or '9:16'" in err
    assert list(tmp_path.iterdir()) == []


def test_console_script_on_an_ephemeral_server(tmp_path):
    """The README command exactly, in a subprocess with no Prefect server configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    env["PREFECT_VIDEOGEN_LOCAL_JOBS"] = str(tmp_path / "jobs")
    script = os.path.join(os.path.dirname(sys.executable), "prefect-videogen")
    completed = subprocess.run(
        [script, "generate", "a red fox running through fresh snow", "--provider", "local", "--duration", "4",
         "--aspect", "9:16"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    video = next(line.split(None, 1)[1] for line in completed.stdout.splitlines() if line.startswith("video:"))
    assert video.startswith(str(tmp_path / "videos"))
    probe = probe_video(video)
    assert (probe.width, probe.height, probe.duration_seconds) == (720, 1280, 4.0)
