"""The README's main command, as a user runs it."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from prefect_videogen.blocks import LocalRenderer
from prefect_videogen.cli import main, print_error
from prefect_videogen.media import probe_video
from prefect_videogen.testing import EmulatorServer, Fault, OpenAIEmulator


def test_cli_generates_in_process(prefect_server, tmp_path, capsys):
    code = main(
        [
            "generate",
            "a red fox running through fresh snow",
            "--provider",
            "local",
            "--duration",
            "2",
            "--aspect",
            "9:16",
            "--out",
            str(tmp_path / "videos"),
        ]
    )
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
    # Aspect ratios are catalog data: the catalog names what this model takes.
    assert "aspect_ratio='4:3' is not allowed for local model 'title-card'; allowed: '16:9', '9:16'" in err
    assert list(tmp_path.iterdir()) == []


class Quickstart:
    """The README command exactly, in a subprocess with no Prefect server configured, in a folder of its own.

    Begun when the test is collected (``begin_early``, tests/conftest.py): its temporary server builds
    its database from nothing (half a minute), beside the tests that run before this one.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="videogen-quickstart-"))
        # A fresh machine: its own PREFECT_HOME and result storage (not the session's cached submits).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_RESULTS_"))}
        env["PREFECT_HOME"] = str(self.folder / "home")
        env["PREFECT_VIDEOGEN_LOCAL_JOBS"] = str(self.folder / "jobs")
        script = os.path.join(os.path.dirname(sys.executable), "prefect-videogen")
        command = [script, "generate", "a red fox running through fresh snow"]
        command += ["--provider", "local", "--duration", "4", "--aspect", "9:16"]
        with open(self.folder / "stdout", "wb") as out, open(self.folder / "stderr", "wb") as err:
            self.process = subprocess.Popen(command, cwd=self.folder, env=env, stdout=out, stderr=err)
        atexit.register(self.stop)  # a session that ends first leaves no process behind

    def result(self, timeout: float) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once it has ended."""
        returncode = self.process.wait(timeout=timeout)
        return returncode, (self.folder / "stdout").read_text(), (self.folder / "stderr").read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def test_console_script_on_an_ephemeral_server(begun):
    """The README command exactly, in a subprocess with no Prefect server configured."""
    quickstart: Quickstart = begun
    returncode, stdout, stderr = quickstart.result(timeout=240)
    assert returncode == 0, stderr[-2000:]
    video = next(line.split(None, 1)[1] for line in stdout.splitlines() if line.startswith("video:"))
    assert video.startswith(str(quickstart.folder / "videos"))
    probe = probe_video(video)
    assert (probe.width, probe.height, probe.duration_seconds) == (720, 1280, 4.0)


test_console_script_on_an_ephemeral_server.begin_early = Quickstart  # type: ignore[attr-defined]


# -- failing cleanly (issue 14) ----------------------------------------------------------------------------


def cli(
    args: list[str],
    cwd,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> tuple[subprocess.CompletedProcess, float]:
    """The CLI in a subprocess on the session's Prefect server; (completed process, seconds it took)."""
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "prefect_videogen.cli", *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return completed, time.monotonic() - started


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "APIFRAME_", "SCENARIO_"))}
    return {**env, "PREFECT_API_URL": str(PREFECT_API_URL.value()), **extra}


def fresh(prompt: str) -> str:
    """A prompt no earlier run made: a cached submit of another test must not answer it."""
    return f"{prompt} {uuid.uuid4().hex[:8]}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_block_name_loads_the_saved_block(prefect_server, tmp_path, capsys):
    name = f"cli-renderer-{uuid.uuid4().hex[:8]}"
    LocalRenderer(jobs_dir=str(tmp_path / "jobs"), queue_delay_seconds=0).save(name)
    code = main(
        [
            "generate",
            fresh("a heron at dawn over a still lake"),
            "--provider",
            "local",
            "--block",
            name,
            "--duration",
            "2",
            "--out",
            str(tmp_path / "videos"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    video = next(line.split(None, 1)[1] for line in captured.out.splitlines() if line.startswith("video:"))
    assert probe_video(video).duration_seconds == 2.0
    assert any((tmp_path / "jobs").iterdir())  # the saved block's jobs folder, not the default one


def test_an_unknown_block_name_is_one_error_line(prefect_server, tmp_path, capsys):
    code = main(["generate", "a fox", "--provider", "openai", "--block", "no-such-block", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("error: block='no-such-block'") and "OpenAICredentials" in line


def test_markup_in_values_is_printed_literally(tmp_path, capsys):
    code = main(["generate", "a fox", "--aspect", "[/x]", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("error: aspect_ratio='[/x]': String should match pattern")


def test_error_text_is_one_plain_line():
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
        print_error(
            "openai job video_1 failed [moderation_blocked]: blocked [/x]\nsecond line \x1b[31mred "
            "Bearer sk-abcdefghijklmnop",
            hint="a [bold]hint[/bold]",
        )
    assert stream.getvalue() == (
        "error: openai job video_1 failed [moderation_blocked]: blocked [/x] second line  [31mred Bearer ***\n"
        "hint: a [bold]hint[/bold]\n"
    )


def test_a_non_image_file_is_one_error_line_without_traceback(prefect_server, tmp_path):
    (tmp_path / "frame.png").write_text("this is not an image\n")
    completed, _ = cli(
        ["generate", fresh("a fox"), "--image", "frame.png", "--duration", "2", "--out", "videos"], tmp_path
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr and "Traceback" not in completed.stdout
    [line] = error_lines(completed.stderr)
    assert "image" in line
    assert len(completed.stderr.splitlines()) <= 2, completed.stderr  # the error line and at most a hint


def test_moderation_code_keeps_its_brackets(prefect_server, tmp_path):
    emulator = OpenAIEmulator(latency_seconds=0.05)
    emulator.faults.add("create", Fault(reject="output"))
    with EmulatorServer(emulator) as server:
        completed, _ = cli(
            [
                "generate",
                fresh("a fox"),
                "--provider",
                "openai",
                "--base-url",
                f"{server.base_url}/v1",
                "--out",
                "videos",
            ],
            tmp_path,
            env=cli_env(OPENAI_API_KEY=emulator.api_key),
        )
    assert completed.returncode == 1
    [line] = error_lines(completed.stderr)
    assert "[moderation_blocked]" in line, completed.stderr
    assert "Traceback" not in completed.stderr


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_one_error_line(prefect_server, tmp_path):
    """With the suite's instant task retries: whatever the HTTP layer raises is printed as one line."""
    port = closed_port()
    completed, _ = cli(
        [
            "generate",
            fresh("a fox"),
            "--provider",
            "openai",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--out",
            "videos",
        ],
        tmp_path,
        env=cli_env(OPENAI_API_KEY="sk-emulator-key"),
    )
    assert completed.returncode == 1
    [line] = error_lines(completed.stderr)
    assert line.startswith("error: openai: ") and "Traceback" not in completed.stderr, completed.stderr


def test_a_refused_connection_fails_within_seconds_naming_the_url(prefect_server, tmp_path):
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    env = cli_env(APIFRAME_API_KEY="afk_emulator_refused_0001")
    env.pop("PREFECT_VIDEOGEN_RETRY_DELAYS", None)  # the user's defaults, not the suite's instant retries
    completed, seconds = cli(
        ["generate", fresh("a fox"), "--provider", "apiframe", "--base-url", url, "--out", "videos"],
        tmp_path,
        env=env,
        timeout=30,
    )
    assert completed.returncode != 0
    [line] = error_lines(completed.stderr)
    assert f"127.0.0.1:{port}" in line and "no job was created" in line, completed.stderr
    assert "idempotency_key" not in completed.stderr and "Traceback" not in completed.stderr
    assert seconds < 15  # a process start and a Prefect flow run; no retry of a refused connection


def test_ctrl_c_exits_quickly_and_names_the_job_to_resume(prefect_server, tmp_path):
    emulator = OpenAIEmulator(latency_seconds=600)
    with EmulatorServer(emulator) as server:
        args = [
            "generate",
            fresh("a fox"),
            "--provider",
            "openai",
            "--base-url",
            f"{server.base_url}/v1",
            "--out",
            "videos",
        ]
        env = cli_env(OPENAI_API_KEY=emulator.api_key)
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect_videogen.cli", *args],
            cwd=tmp_path,
            env={**env, "PYTHONFAULTHANDLER": "1"},  # SIGABRT then prints every thread's stack
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while emulator.counters["polls"] < 1:  # polled: the submit has returned and was reported
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            interrupted = time.monotonic()
            try:
                _, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGABRT)
                _, stderr = process.communicate(timeout=30)
                pytest.fail(f"the CLI was still running 30 s after Ctrl-C; where its threads were:\n{stderr[-8000:]}")
            seconds = time.monotonic() - interrupted
        finally:
            if process.poll() is None:
                process.kill()
        [job_id] = emulator.jobs
        assert process.returncode == 130
        assert seconds < 5
        [line] = error_lines(stderr)
        assert f"openai job {job_id} was submitted" in line
        assert "Traceback" not in stderr and "run the same command again" in stderr

        emulator.latency_seconds = 0.05  # the job finishes now: the rerun the message asks for waits for it
        rerun, _ = cli(args, tmp_path, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert emulator.counters["jobs_created"] == 1 and list(emulator.jobs) == [job_id]
    assert any(line.startswith("video:") for line in rerun.stdout.splitlines())


def test_rerun_says_it_reused_the_earlier_job(prefect_server, tmp_path, capsys):
    argv = ["generate", "a heron in reeds, reused", "--duration", "1", "--out", str(tmp_path / "videos")]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "from an earlier run" not in first
    assert main(argv) == 0
    second = capsys.readouterr().out
    job = next(line for line in second.splitlines() if line.startswith("reused"))
    assert job.startswith("reused local job local_") and job.endswith("from an earlier run (no new charge)")
    assert second.split("video:")[1].splitlines()[0] == first.split("video:")[1].splitlines()[0]


def test_batch_command_runs_a_csv_with_a_summary(prefect_server, tmp_path, capsys):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("subject,when\na fox [bold]x[/bold],dawn\nan owl,dusk\n")
    out = str(tmp_path / "videos")
    argv = [
        "batch",
        str(prompts),
        "--template",
        "{subject} at {when}",
        "--duration",
        "1",
        "--out",
        out,
        "--name",
        "cli",
    ]
    assert main([*argv, "--preview"]) == 0
    preview = capsys.readouterr().out
    assert "preview cli: 2 preview" in preview and not (tmp_path / "videos" / "manifests").exists()
    assert main(argv) == 0
    ran = capsys.readouterr().out
    assert "batch cli: 2 stored; estimated $0.00, charged $0.00" in ran
    assert "a fox [bold]x[/bold] at dawn" in ran  # user text printed literally, not as markup
    videos = [line.split()[-1] for line in ran.splitlines() if line.startswith("stored")]
    assert len(videos) == 2 and all(probe_video(v).duration_seconds == 1.0 for v in videos)
    assert main(argv) == 0
    assert capsys.readouterr().out.count("from an earlier run (no new charge)") == 2


def test_batch_command_refuses_a_bad_row_before_any_run(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a fox"}\n{"prompt": "an owl", "duration": 0}\n')
    assert main(["batch", str(prompts), "--out", str(tmp_path / "videos")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "row 2" in err and "duration" in err
    assert not (tmp_path / "videos").exists()


def test_costs_of_a_missing_folder_is_an_error(tmp_path, capsys):
    assert main(["costs", "--out", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "no such directory" in err
