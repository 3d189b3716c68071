"""The worker policy: local paths, URLs the worker fetches, inputs checked by content.

Policies are built explicitly here (never from the suite-wide environment), so each test says what
the worker allows. Every connection goes to a loopback server started by the test; addresses
elsewhere are refused BEFORE any connection: a stub resolver answers for names, and a transport
that records every request proves none was sent.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from prefect_videogen.batch.expansion import MAX_ITEMS, PromptSource, expand
from prefect_videogen.blocks import LocalRenderer, LocalVideoStorage
from prefect_videogen.errors import InvalidBatch, InvalidVideoRequest, PolicyViolation
from prefect_videogen.models import VideoRequest
from prefect_videogen.policy import (
    WorkerPolicy,
    address_refusal,
    check_directory,
    check_image_bytes,
    check_local_image,
    check_request_inputs,
    check_url,
    fetch_url,
    open_local_file,
)

GIB = 1024**3
MIB = 1024**2


# --- helpers -------------------------------------------------------------------------------------


def png(path: Path, width: int = 64, height: int = 32, fmt: str = "PNG") -> Path:
    Image.new("RGB", (width, height), (200, 40, 40)).save(path, format=fmt)
    return path


def sparse(path: Path, size: int = 2 * GIB, head: bytes = b"") -> Path:
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)  # sparse: no disk used, but a whole read would allocate every byte
    return path


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


@contextmanager
def bounded(max_seconds: float = 1.0, max_growth_bytes: int = 50 * MIB) -> Iterator[None]:
    """Assert the block's peak memory growth and wall time stay under the bounds.

    Peak RSS: /proc/self/clear_refs resets the high-water mark (VmHWM) to the current RSS, so the
    mark after the block is the block's own peak. tracemalloc's peak covers Python allocations too.
    """
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = _rss_kib("VmRSS")
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - started
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peak_growth = (_rss_kib("VmHWM") - rss_before) * 1024
        assert elapsed < max_seconds, f"took {elapsed:.2f} s"
        assert traced_peak < max_growth_bytes, f"python allocations peaked at {traced_peak} bytes"
        assert peak_growth < max_growth_bytes, f"RSS grew by {peak_growth} bytes at its peak"


def test_the_memory_bound_can_fail(tmp_path):
    """The bound is real: reading a 2 GB sparse file whole breaks it (we read 200 MB to keep it quick)."""
    big = sparse(tmp_path / "big.bin", 200 * MIB)
    with pytest.raises(AssertionError, match="peaked|grew"):
        with bounded(max_seconds=30):
            big.read_bytes()


class Recorder(httpx.MockTransport):
    """A transport that records each request and answers 200: proves whether anything was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        super().__init__(lambda request: self.requests.append(request) or httpx.Response(200, content=b"x"))


def stub_resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError("unknown host")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# --- settings ------------------------------------------------------------------------------------


def test_defaults_are_safe(monkeypatch):
    for name in list(os.environ):
        if name.startswith("PREFECT_VIDEOGEN_") and name not in (
            "PREFECT_VIDEOGEN_LOCAL_JOBS",
            "PREFECT_VIDEOGEN_RETRY_DELAYS",
        ):
            monkeypatch.delenv(name)
    policy = WorkerPolicy()
    assert policy.allowed_roots == [os.getcwd()]
    assert (policy.allow_url_rows_files, policy.allow_private_urls, policy.allowed_url_hosts) == (False, False, [])
    assert policy.max_image_side == 8192 and policy.max_image_bytes == 25 * MIB


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_VIDEOGEN_ALLOWED_ROOTS", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    monkeypatch.setenv("PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS", "Files.Internal, 127.0.0.1")
    monkeypatch.setenv("PREFECT_VIDEOGEN_ALLOW_URL_ROWS_FILES", "true")
    monkeypatch.setenv("PREFECT_VIDEOGEN_MAX_ROWS_FILE_BYTES", "1000")
    policy = WorkerPolicy()
    assert policy.allowed_roots == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert policy.allowed_url_hosts == ["files.internal", "127.0.0.1"]
    assert policy.allow_url_rows_files and policy.max_rows_file_bytes == 1000
    monkeypatch.setenv("PREFECT_VIDEOGEN_ALLOWED_ROOTS", f'["{tmp_path}"]')
    assert WorkerPolicy().allowed_roots == [str(tmp_path)]


# --- local paths ---------------------------------------------------------------------------------


def test_a_file_outside_the_roots_is_refused_naming_the_setting(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir(), outside.mkdir()
    secret = outside / "payroll.csv"
    secret.write_text("name,salary\nalice,100\n")
    policy = WorkerPolicy(allowed_roots=[str(inside)])
    with pytest.raises(PolicyViolation) as caught:
        with open_local_file("rows_file", str(secret), policy, max_bytes=MIB, setting="X"):
            pass
    message = str(caught.value)
    assert "rows_file=" in message and "outside the allowed roots" in message
    assert "PREFECT_VIDEOGEN_ALLOWED_ROOTS" in message and str(inside) in message
    assert "salary" not in message and "alice" not in message


def test_a_symlink_is_followed_before_the_roots_are_checked(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir(), outside.mkdir()
    (inside / "frame.png").symlink_to(png(outside / "real.png"))
    policy = WorkerPolicy(allowed_roots=[str(inside)])
    with pytest.raises(PolicyViolation, match="outside the allowed roots"):
        check_local_image("image", str(inside / "frame.png"), policy)
    # The same image is fine where the worker allows its real location.
    assert (
        check_local_image("image", str(inside / "frame.png"), WorkerPolicy(allowed_roots=[str(tmp_path)])).format
        == "PNG"
    )


def test_innocent_png_pointing_at_a_dotenv_is_refused_by_content(tmp_path):
    env = tmp_path / ".env"
    env.write_text("OPENAI_API_KEY=sk-live-abcdefghijklmnop\nAWS_SECRET=verysecret\n")
    (tmp_path / "innocent.png").symlink_to(env)
    with pytest.raises(InvalidVideoRequest) as caught:
        check_local_image("image", str(tmp_path / "innocent.png"), WorkerPolicy(allowed_roots=[str(tmp_path)]))
    assert "an image file (JPEG, PNG or WebP)" in str(caught.value)
    assert "OPENAI_API_KEY" not in str(caught.value) and "verysecret" not in str(caught.value)


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)  # nobody writes: opening it for reading would block forever
    with pytest.raises(PolicyViolation, match="not a regular file"):
        with open_local_file(
            "rows_file", str(fifo), WorkerPolicy(allowed_roots=[str(tmp_path)]), max_bytes=MIB, setting="X"
        ):
            pass


@pytest.mark.timeout(10)
def test_dev_zero_is_refused_as_a_device_and_as_outside_the_roots(tmp_path):
    with pytest.raises(PolicyViolation, match="outside the allowed roots"):
        with open_local_file(
            "rows_file", "/dev/zero", WorkerPolicy(allowed_roots=[str(tmp_path)]), max_bytes=MIB, setting="X"
        ):
            pass
    # Even a worker that allowed /dev would not read a device.
    with pytest.raises(PolicyViolation, match="not a regular file"):
        with open_local_file(
            "rows_file", "/dev/zero", WorkerPolicy(allowed_roots=["/dev"]), max_bytes=MIB, setting="X"
        ):
            pass


def test_a_directory_and_a_missing_file_are_refused(tmp_path):
    policy = WorkerPolicy(allowed_roots=[str(tmp_path)])
    with pytest.raises(PolicyViolation, match="not a regular file"):
        check_local_image("image", str(tmp_path), policy)
    with pytest.raises(InvalidVideoRequest, match="existing local image file"):
        check_local_image("image", str(tmp_path / "nope.png"), policy)


def test_a_2gb_non_image_is_refused_from_stat_fast_and_small(tmp_path):
    big = sparse(tmp_path / "huge.png")
    with bounded():
        with pytest.raises(PolicyViolation) as caught:
            check_local_image("image", str(big), WorkerPolicy(allowed_roots=[str(tmp_path)]), read=True)
    assert f"{2 * GIB} bytes" in str(caught.value) and "PREFECT_VIDEOGEN_MAX_IMAGE_BYTES" in str(caught.value)


def test_a_2gb_non_image_under_a_raised_cap_is_refused_by_its_magic_bytes(tmp_path):
    """Even where the worker allows huge images, a non-image is refused from its first bytes."""
    big = sparse(tmp_path / "huge.png")
    policy = WorkerPolicy(allowed_roots=[str(tmp_path)], max_image_bytes=4 * GIB)
    with bounded():
        with pytest.raises(InvalidVideoRequest, match="JPEG, PNG or WebP"):
            check_local_image("image", str(big), policy, read=True)


def test_a_2gb_file_with_a_png_signature_is_refused_by_its_header(tmp_path):
    big = sparse(tmp_path / "huge.png", head=b"\x89PNG\r\n\x1a\n" + b"\x00" * 24)
    policy = WorkerPolicy(allowed_roots=[str(tmp_path)], max_image_bytes=4 * GIB)
    with bounded():
        with pytest.raises(InvalidVideoRequest, match="JPEG, PNG or WebP"):
            check_local_image("image", str(big), policy)


def test_a_2gb_rows_file_is_refused_from_stat(tmp_path):
    big = sparse(tmp_path / "rows.csv")
    with bounded():
        with pytest.raises(PolicyViolation, match="PREFECT_VIDEOGEN_MAX_ROWS_FILE_BYTES"):
            expand(PromptSource(rows_file=str(big)), policy=WorkerPolicy(allowed_roots=[str(tmp_path)]))


# --- images by content ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_images_pass_with_their_format_and_size(tmp_path, fmt, mime):
    path = png(tmp_path / f"frame.{fmt.lower()}", 80, 45, fmt)
    checked = check_local_image("image", str(path), WorkerPolicy(allowed_roots=[str(tmp_path)]), read=True)
    assert (checked.format, checked.mime, checked.width, checked.height) == (fmt, mime, 80, 45)
    assert checked.data == path.read_bytes()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused(tmp_path, fmt):
    path = png(tmp_path / "frame.png", fmt=fmt)
    with pytest.raises(InvalidVideoRequest, match="JPEG, PNG or WebP"):
        check_local_image("image", str(path), WorkerPolicy(allowed_roots=[str(tmp_path)]))


def test_image_sides_are_capped_from_the_header(tmp_path):
    path = png(tmp_path / "wide.png", 9000, 4)  # a few KB on disk, 9000 pixels wide
    with pytest.raises(PolicyViolation, match=r"9000x4.*8192x8192 \(PREFECT_VIDEOGEN_MAX_IMAGE_SIDE\)"):
        check_local_image("image", str(path), WorkerPolicy(allowed_roots=[str(tmp_path)]))


def test_a_truncated_png_is_refused(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(png(tmp_path / "ok.png").read_bytes()[:12])
    with pytest.raises(InvalidVideoRequest, match="JPEG, PNG or WebP"):
        check_local_image("image", str(path), WorkerPolicy(allowed_roots=[str(tmp_path)]))


def test_fetched_bytes_are_checked_the_same_way(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format="WEBP")
    assert check_image_bytes("image", "http://x/frame.webp", buffer.getvalue()).format == "WEBP"
    with pytest.raises(InvalidVideoRequest, match="JPEG, PNG or WebP"):
        check_image_bytes("image", "http://x/frame.png", b"<html>internal admin page</html>")


def test_the_pre_flight_check_reads_only_the_header(tmp_path):
    path = png(tmp_path / "frame.png", 1280, 720)
    check_request_inputs(
        VideoRequest(prompt="a fox", image=str(path)), WorkerPolicy(allowed_roots=[str(tmp_path)]), provider="openai"
    )
    with pytest.raises(PolicyViolation, match="outside the allowed roots"):
        check_request_inputs(
            VideoRequest(prompt="a fox", image=str(path)),
            WorkerPolicy(allowed_roots=[str(tmp_path / "elsewhere")]),
            provider="apiframe",
        )


# --- directories a run names ---------------------------------------------------------------------


def test_storage_base_path_must_be_local(tmp_path):
    for url in ("s3://another-bucket/x", "memory://videos", "gcs://bucket/x"):
        with pytest.raises(ValueError, match="not a local directory"):
            LocalVideoStorage(base_path=url)
    LocalVideoStorage(base_path=f"file://{tmp_path}/videos")  # file:// is a local path


def test_storage_and_jobs_dir_outside_the_roots_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_VIDEOGEN_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    target = tmp_path / "elsewhere"
    with pytest.raises(PolicyViolation, match="storage.base_path=.*outside the allowed roots"):
        LocalVideoStorage(base_path=str(target)).get_storage()
    with pytest.raises(PolicyViolation, match="provider.jobs_dir=.*outside the allowed roots"):
        LocalRenderer(jobs_dir=str(target)).get_client()
    assert not target.exists()
    assert LocalVideoStorage(base_path=str(tmp_path / "allowed" / "videos")).get_storage()
    assert check_directory(
        "x", str(tmp_path / "allowed" / "new"), WorkerPolicy(allowed_roots=[str(tmp_path / "allowed")])
    )


# --- the URL guard: decisions, no connection -------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("172.16.5.4", "private"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT: not private, not global
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped IPv6 is judged as the IPv4 address
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_address_decisions(address, refusal):
    assert address_refusal(address) == refusal


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/internal.csv",
        "https://192.168.1.1/x.png",
        "http://[::1]:8080/x",
        "http://0.0.0.0:80/",
    ],
)
def test_forbidden_addresses_are_refused_before_any_connection(url):
    recorder = Recorder()
    with pytest.raises(PolicyViolation, match="address"):
        fetch_url("image", url, WorkerPolicy(), max_bytes=MIB, setting="X", transport=recorder)
    assert recorder.requests == []


def test_names_are_resolved_and_every_address_checked(tmp_path):
    resolver = stub_resolver(
        {
            "metadata.internal": ["169.254.169.254"],
            "mixed.example": ["8.8.8.8", "10.0.0.7"],
            "public.example": ["8.8.8.8"],
        }
    )
    recorder = Recorder()
    for url in ("http://metadata.internal/", "https://mixed.example/frame.png"):
        with pytest.raises(PolicyViolation, match="resolves to a (link-local|private) address"):
            fetch_url("image", url, WorkerPolicy(), max_bytes=MIB, setting="X", resolver=resolver, transport=recorder)
    # A public name passes the decision (no connection is made by the check) unless the worker allows
    # only listed hosts.
    assert check_url("image", "https://public.example/f.png", WorkerPolicy(), resolver=resolver) == ["8.8.8.8"]
    for url in ("https://public.example/f.png", "http://8.8.8.8/f.png"):
        with pytest.raises(PolicyViolation, match="not among the worker's allowed URL hosts"):
            fetch_url(
                "image",
                url,
                WorkerPolicy(allow_public_urls=False),
                max_bytes=MIB,
                setting="X",
                resolver=resolver,
                transport=recorder,
            )
    assert recorder.requests == []
    assert resolver.calls == ["metadata.internal", "mixed.example", "public.example", "public.example"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/", "http://user:pw@host/x"]
)
def test_only_plain_http_urls_are_fetched(url):
    recorder = Recorder()
    with pytest.raises(PolicyViolation):
        fetch_url("image", url, WorkerPolicy(), max_bytes=MIB, setting="X", transport=recorder)
    assert recorder.requests == []


# --- the URL guard against a real loopback server --------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.seen.append((self.path, self.headers.get("Host", "")))  # type: ignore[attr-defined]
        routes = {
            "/ok": (200, {}, b"id,prompt\n1,a fox\n"),
            "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
            "/to-name": (302, {"Location": "http://internal.example/payroll.csv"}, b""),
            "/to-ok": (302, {"Location": "/ok"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/secret-error": (500, {}, b"INTERNAL-SECRET-TOKEN stack trace"),
            "/big": (200, {}, b"x" * 5000),
        }
        status, headers, body = routes.get(self.path, (200 if self.path == "/chunked" else 404, {}, b"nope"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def loopback():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _base(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


LOOPBACK_ALLOWED = WorkerPolicy(allowed_url_hosts=["127.0.0.1"], max_redirects=3)


def test_loopback_is_refused_unless_the_worker_allows_it(loopback):
    with pytest.raises(PolicyViolation, match="loopback"):
        fetch_url("rows_file", _base(loopback) + "/ok", WorkerPolicy(), max_bytes=MIB, setting="X")
    assert loopback.seen == []
    assert fetch_url("rows_file", _base(loopback) + "/ok", LOOPBACK_ALLOWED, max_bytes=MIB, setting="X").startswith(
        b"id,"
    )


def test_a_redirect_to_a_forbidden_address_is_refused_before_it_is_followed(loopback):
    resolver = stub_resolver({"internal.example": ["10.1.2.3"]})
    for path in ("/to-metadata", "/to-name"):
        with pytest.raises(PolicyViolation, match="(link-local|private) address"):
            fetch_url(
                "rows_file", _base(loopback) + path, LOOPBACK_ALLOWED, max_bytes=MIB, setting="X", resolver=resolver
            )
    assert [path for path, _ in loopback.seen] == ["/to-metadata", "/to-name"]  # nothing else was contacted
    assert fetch_url("rows_file", _base(loopback) + "/to-ok", LOOPBACK_ALLOWED, max_bytes=MIB, setting="X").startswith(
        b"id,"
    )
    with pytest.raises(PolicyViolation, match="more than 3 redirects"):
        fetch_url("rows_file", _base(loopback) + "/loop", LOOPBACK_ALLOWED, max_bytes=MIB, setting="X")


def test_the_connection_goes_to_the_checked_address(loopback):
    """A name is resolved once, checked, and the connection made to that address with the name as Host."""
    port = loopback.server_address[1]
    resolver = stub_resolver({"files.test": ["127.0.0.1"]})  # no real DNS knows files.test
    policy = WorkerPolicy(allowed_url_hosts=["files.test"])
    body = fetch_url("rows_file", f"http://files.test:{port}/ok", policy, max_bytes=MIB, setting="X", resolver=resolver)
    assert body.startswith(b"id,") and loopback.seen == [("/ok", f"files.test:{port}")]
    assert resolver.calls == ["files.test"]


def test_error_bodies_are_never_echoed_and_sizes_are_capped(loopback):
    with pytest.raises(InvalidVideoRequest) as caught:
        fetch_url("image", _base(loopback) + "/secret-error", LOOPBACK_ALLOWED, max_bytes=MIB, setting="X")
    assert "HTTP 500" in str(caught.value) and "INTERNAL-SECRET-TOKEN" not in str(caught.value)
    with pytest.raises(PolicyViolation, match="the answer has 5000 bytes"):
        fetch_url("rows_file", _base(loopback) + "/big", LOOPBACK_ALLOWED, max_bytes=1000, setting="X")
    with pytest.raises(PolicyViolation, match="larger than the limit"):  # no Content-Length: a bounded read
        fetch_url("rows_file", _base(loopback) + "/chunked", LOOPBACK_ALLOWED, max_bytes=10_000, setting="X")


# --- rows files, grids and templates ----------------------------------------------------------------


def test_rows_file_urls_are_off_by_default_and_work_when_allowed(loopback, tmp_path):
    url = _base(loopback) + "/ok"
    with pytest.raises(PolicyViolation, match="PREFECT_VIDEOGEN_ALLOW_URL_ROWS_FILES"):
        expand(PromptSource(rows_file=url), policy=WorkerPolicy())
    assert loopback.seen == []
    policy = WorkerPolicy(allow_url_rows_files=True, allowed_url_hosts=["127.0.0.1"])
    (item,) = expand(PromptSource(rows_file=url), policy=policy)
    assert item.request.prompt == "a fox" and item.item_id == "1"


@pytest.mark.parametrize(
    "url", ["s3://private-bucket/payroll.csv", "memory://rows.csv", "gs://b/rows.csv", "ftp://host/rows.csv"]
)
def test_other_rows_file_protocols_are_refused(url):
    with pytest.raises(PolicyViolation, match="protocol is not read for a run"):
        expand(PromptSource(rows_file=url), policy=WorkerPolicy(allow_url_rows_files=True))


def test_rows_file_lines_never_reach_the_error(tmp_path):
    secret = tmp_path / "notes.csv"
    secret.write_text("DATABASE_PASSWORD=hunter2,other\nx,y\n")
    with pytest.raises(InvalidBatch) as caught:
        expand(
            PromptSource(template="{zzz}", rows_file=str(secret)), policy=WorkerPolicy(allowed_roots=[str(tmp_path)])
        )
    message = str(caught.value)
    assert "row 1 (rows_file row 1)" in message and "zzz missing" in message
    assert "hunter2" not in message and "DATABASE_PASSWORD" not in message and "other" not in message


def test_rows_file_row_count_is_capped(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt\n" + "".join(f"p{i}\n" for i in range(MAX_ITEMS + 1)))
    with pytest.raises(InvalidBatch, match=f"more than {MAX_ITEMS} rows"):
        expand(PromptSource(rows_file=str(rows)), policy=WorkerPolicy(allowed_roots=[str(tmp_path)]))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("wide.csv", ",".join(f"c{i}" for i in range(300)) + "\n" + "x," * 299 + "x\n"),
        ("wide.jsonl", json.dumps({f"c{i}": "x" for i in range(300)}) + "\n"),
    ],
)
def test_rows_file_columns_are_capped(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(InvalidBatch, match="more than 200 columns"):
        expand(PromptSource(rows_file=str(tmp_path / name)), policy=WorkerPolicy(allowed_roots=[str(tmp_path)]))


def test_csv_values_still_parse_as_numbers(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,duration\na fox,8\n")
    (item,) = expand(PromptSource(rows_file=str(rows)), policy=WorkerPolicy(allowed_roots=[str(tmp_path)]))
    assert item.request.duration == 8


def test_a_huge_grid_is_refused_before_expansion():
    grid = {f"v{i}": [str(n) for n in range(10)] for i in range(8)}  # 10^8 combinations
    with bounded():
        with pytest.raises(InvalidBatch, match=r"more than 10000 items \(1 row\(s\) x grid 10 x 10 x 10"):
            expand(PromptSource(template=" ".join(f"{{v{i}}}" for i in range(8)), grid=grid))


def test_rows_times_grid_is_capped():
    source = PromptSource(
        template="{p} {q}", rows=[{"p": str(i)} for i in range(200)], grid={"q": [str(n) for n in range(60)]}
    )
    with pytest.raises(InvalidBatch, match=r"200 row\(s\) x grid 60"):
        expand(source)


@pytest.mark.parametrize(
    ("template", "what"),
    [
        ("{p:>3000000000}", "a format spec"),
        ("{p!r}", "a conversion"),
        ("{p.__class__}", "attribute or index access"),
        ("{p[0]}", "attribute or index access"),
        ("{}", "a positional placeholder"),
        ("{0}", "attribute or index access"),
    ],
)
def test_templates_take_plain_placeholders_only(template, what):
    with bounded():
        with pytest.raises(InvalidBatch) as caught:
            expand(PromptSource(template=template, rows=[{"p": "a fox"}]))
    assert "template field" in str(caught.value) and what in str(caught.value)


def test_booleans_are_not_numbers():
    with pytest.raises(ValueError, match="duration=True is a boolean"):
        VideoRequest(prompt="a fox", duration=True)
    with pytest.raises(ValueError, match="duration=False is a boolean"):
        PromptSource(defaults={"duration": False})
    with pytest.raises(InvalidBatch, match="boolean"):
        expand(PromptSource(rows=[{"prompt": "a fox", "duration": True}]))
    assert VideoRequest(prompt="a fox", duration="8").duration == 8


@pytest.mark.parametrize("prompt", ["\u200b", "\u200c\u200d", "\u2060\ufeff ", " \n\t ", "\u2028"])
def test_prompts_without_a_visible_character_are_refused(prompt):
    with pytest.raises(ValueError, match="blank"):
        VideoRequest(prompt=prompt)


@pytest.mark.parametrize("prompt", ["fox\x00", "fox\x1b[31m", "fox\x7f", "fox\x85", "\x9bfox"])
def test_control_characters_are_refused(prompt):
    with pytest.raises(ValueError, match="control characters"):
        VideoRequest(prompt=prompt)


def test_newlines_tabs_and_unicode_text_are_fine():
    assert VideoRequest(prompt="a fox\n\tin snow, 雪の中の狐 🦊").prompt


def test_policy_violations_survive_pickling():
    """Prefect pickles task failures: the typed error and its message must come back intact."""
    import pickle

    error = PolicyViolation("rows_file", "/dev/zero", "it is not a regular file", "a regular file")
    back = pickle.loads(pickle.dumps(error))
    assert isinstance(back, PolicyViolation) and isinstance(back, InvalidVideoRequest)
    assert (
        str(back)
        == str(error)
        == ("rows_file='/dev/zero' is refused by the worker policy: it is not a regular file; allowed: a regular file")
    )
    assert (back.field, back.rule) == ("rows_file", "it is not a regular file")


def _tls_files(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (its own CA) and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize(("served_name", "works"), [("files.test", True), ("other.test", False)])
def test_https_to_the_pinned_address_still_verifies_the_host_name(tmp_path, served_name, works):
    """The connection goes to the checked IP, yet TLS checks the certificate against the URL's name."""
    import ssl

    cert, key = _tls_files(tmp_path, served_name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client_context = ssl.create_default_context(cafile=str(cert))  # trusts only the test's certificate
        url = f"https://files.test:{server.server_address[1]}/ok"
        resolver = stub_resolver({"files.test": ["127.0.0.1"]})

        def fetch() -> bytes:
            return fetch_url(
                "rows_file",
                url,
                WorkerPolicy(allowed_url_hosts=["files.test"]),
                max_bytes=MIB,
                setting="X",
                resolver=resolver,
                transport=httpx.HTTPTransport(verify=client_context),
            )

        if works:
            assert fetch().startswith(b"id,") and server.seen == [("/ok", f"files.test:{server.server_address[1]}")]
        else:
            with pytest.raises(InvalidVideoRequest, match="the fetch failed"):
                fetch()
    finally:
        server.shutdown()
        server.server_close()
