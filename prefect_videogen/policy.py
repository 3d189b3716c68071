"""The worker's policy: what a run's parameters may make the worker read, fetch or write.

Deployment parameters are untrusted: anyone who may start a run chooses them, and the run executes
on a worker that holds provider keys, credentials, files and a network position. So the worker,
not the run, decides:

- local paths a run names (``rows_file``, ``image``, a local storage ``base_path``, a renderer's
  ``jobs_dir``) must resolve, symlinks followed, under ``allowed_roots``; files must be regular
  files (no FIFO, device or directory), their size read from ``stat`` and capped before any read;
- URLs the worker fetches itself (a ``rows_file`` URL, a Scenario image URL) are http(s) only,
  rows-file URLs are off by default, and every hop's resolved address must be public unless the
  worker allows more (``allowed_url_hosts``, ``allow_private_urls``); URLs a provider fetches
  itself (OpenAI ``image_url``, APIFrame ``start_image``) are passed through unfetched;
- inputs are checked by content, cheaply, before any full read, upload or paid call: images by
  magic bytes and a header decode (JPEG, PNG, WebP; bytes and sides capped).

Refusals are :class:`~prefect_videogen.errors.PolicyViolation` errors naming the parameter, the
rule and the setting that changes it; they never contain file contents or answer bodies.

Example:
    ```python
    from prefect_videogen.policy import WorkerPolicy, check_request_inputs

    policy = WorkerPolicy()  # from PREFECT_VIDEOGEN_* environment variables, else the safe defaults
    policy = WorkerPolicy(allowed_roots=["/srv/videogen"], allow_url_rows_files=True)
    check_request_inputs(VideoRequest(prompt="a fox", image="frames/fox.png"), policy, provider="scenario")
    ```
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from PIL import Image, UnidentifiedImageError
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prefect_videogen.errors import InvalidVideoRequest, PolicyViolation

if TYPE_CHECKING:
    from prefect_videogen.models import VideoRequest

_MIB = 1024 * 1024

#: Resolves ``(host, port)`` to IP address strings; injectable so tests never use DNS.
Resolver = Callable[[str, int], list[str]]

#: Providers whose client fetches an image URL on the worker (and uploads the bytes); the others
#: hand the URL to the provider, which fetches it from its own network.
WORKER_FETCHED_IMAGE_PROVIDERS = frozenset({"scenario", "gemini"})

IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_NOT_AN_IMAGE = "an image file (JPEG, PNG or WebP), judged by its content"


def _split_list(value: Any, separator: str) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(separator) if part.strip()]
    return value


class WorkerPolicy(BaseSettings):
    """What runs may make this worker touch. Read from ``PREFECT_VIDEOGEN_*`` environment variables.

    Example:
        ```bash
        export PREFECT_VIDEOGEN_ALLOWED_ROOTS=/srv/videogen/inputs:/srv/videogen/videos
        export PREFECT_VIDEOGEN_ALLOW_URL_ROWS_FILES=true
        ```
    """

    model_config = SettingsConfigDict(env_prefix="PREFECT_VIDEOGEN_", extra="ignore", frozen=True)

    allowed_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [os.getcwd()],
        description="Directories that local paths named by a run must resolve under (symlinks followed); "
        "the worker's working directory by default. Environment: separated by the OS path separator (:).",
    )
    max_rows_file_bytes: int = Field(
        default=10 * _MIB, gt=0, description="Largest rows file read, from stat or Content-Length, before reading."
    )
    max_image_bytes: int = Field(default=25 * _MIB, gt=0, description="Largest image file read or fetched.")
    max_image_side: int = Field(default=8192, gt=0, description="Largest image width or height (read from its header).")
    allow_url_rows_files: bool = Field(default=False, description="Let runs give rows_file as an http(s) URL.")
    allow_public_urls: bool = Field(
        default=True, description="Let the worker fetch from public addresses; False: only allowed_url_hosts."
    )
    allow_private_urls: bool = Field(
        default=False,
        description="Let the worker fetch from loopback, private, link-local and reserved addresses (any host).",
    )
    allowed_url_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names or IP addresses the worker may fetch from whatever they resolve to "
        "(an internal file server). Environment: comma-separated.",
    )
    max_redirects: int = Field(default=5, ge=0, description="Redirects followed per fetch, each checked again.")
    url_timeout_seconds: float = Field(default=15.0, gt=0, description="Timeout of each fetch step.")

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _roots_list(cls, value: Any) -> Any:
        return _split_list(value, os.pathsep)

    @field_validator("allowed_url_hosts", mode="before")
    @classmethod
    def _hosts_list(cls, value: Any) -> Any:
        hosts = _split_list(value, ",")
        return [str(h).strip().lower().strip("[]") for h in hosts] if isinstance(hosts, list) else hosts

    def roots(self, extra: tuple[str | os.PathLike[str], ...] = ()) -> list[Path]:
        """The allowed roots, resolved (symlinks followed), plus ``extra`` (e.g. the storage's base path)."""
        return [Path(root).expanduser().resolve() for root in (*self.allowed_roots, *extra)]

    def roots_text(self, extra: tuple[str | os.PathLike[str], ...] = ()) -> str:
        shown = ", ".join(str(root) for root in self.roots(extra))
        return f"paths under {shown} (set PREFECT_VIDEOGEN_ALLOWED_ROOTS on the worker to change)"


def current(policy: WorkerPolicy | None) -> WorkerPolicy:
    """``policy``, else the worker's policy from its environment (read at each use: cheap)."""
    return policy if policy is not None else WorkerPolicy()


def _size_text(size: int) -> str:
    return f"{size // _MIB} MB" if size % _MIB == 0 else f"{size} bytes"


# --- local paths ---------------------------------------------------------------------------------


def has_scheme(value: str) -> bool:
    scheme = urlsplit(value).scheme
    # A one-letter "scheme" is a Windows drive (C:\...), not a protocol.
    return "://" in value or (len(scheme) > 1 and value.startswith(scheme + ":"))


def _local_text(param: str, value: str) -> str:
    """The local path in ``value``: plain, or a ``file://`` URL; any other protocol is refused."""
    if "\x00" in value:
        raise PolicyViolation(param, value, "a NUL character in a path", "a plain local path")
    if has_scheme(value):
        parts = urlsplit(value)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise PolicyViolation(
                param,
                value,
                f"the {parts.scheme!r} protocol is not read through a path",
                "a local path (other protocols only through their own block, e.g. S3VideoStorage)",
            )
        return parts.path
    return value


def _under_roots(param: str, value: str, resolved: Path, policy: WorkerPolicy, extra_roots: tuple) -> None:
    if not any(resolved.is_relative_to(root) for root in policy.roots(extra_roots)):
        # The resolved path is not shown: a symlink's target is the worker's business.
        raise PolicyViolation(
            param, value, "it resolves outside the allowed roots (symlinks followed)", policy.roots_text(extra_roots)
        )


def check_directory(param: str, value: str, policy: WorkerPolicy | None = None) -> Path:
    """Check a directory a run names (a storage ``base_path``, a ``jobs_dir``); it may not exist yet.

    Raises:
        PolicyViolation: a protocol other than file://, outside the allowed roots, or not a directory.
    """
    policy = current(policy)
    path = Path(_local_text(param, value)).expanduser().resolve()  # existing symlinks followed
    _under_roots(param, value, path, policy, ())
    if path.exists() and not path.is_dir():
        raise PolicyViolation(param, value, "it is not a directory", "a directory (or a path to create one)")
    return path


@contextmanager
def open_local_file(
    param: str,
    value: str,
    policy: WorkerPolicy | None = None,
    *,
    max_bytes: int,
    setting: str,
    missing: str = "an existing local file",
    extra_roots: tuple[str | os.PathLike[str], ...] = (),
) -> Iterator[tuple[BinaryIO, int]]:
    """Open a regular file a run names, after the policy checks; yields ``(file, size)``.

    The order matters: resolve (symlinks followed) and check the roots, ``stat`` the target and
    refuse anything but a regular file or a file over ``max_bytes`` BEFORE opening, so a FIFO never
    blocks and a huge file is never read. Opened with O_NONBLOCK and checked again with ``fstat``
    (same file, still regular), so a swap between the checks is refused too.
    """
    policy = current(policy)
    text = _local_text(param, value)
    try:
        resolved = Path(text).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a dangling or looping symlink, a component not a directory
        raise InvalidVideoRequest(param, value, missing) from None
    _under_roots(param, value, resolved, policy, extra_roots)
    try:
        before = os.stat(resolved)
    except OSError:
        raise InvalidVideoRequest(param, value, missing) from None
    if not stat.S_ISREG(before.st_mode):
        raise PolicyViolation(
            param, value, "it is not a regular file (a directory, FIFO, socket or device)", "a regular file"
        )
    if before.st_size > max_bytes:
        raise PolicyViolation(
            param,
            value,
            f"the file has {before.st_size} bytes",
            f"a file of at most {_size_text(max_bytes)} ({setting})",
        )
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:  # unreadable, or replaced by a symlink since it was resolved
        raise InvalidVideoRequest(param, value, f"a file the worker can read ({type(exc).__name__})") from None
    handle = os.fdopen(fd, "rb")
    try:
        after = os.fstat(fd)
        if (
            (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino)
            or not stat.S_ISREG(after.st_mode)
            or after.st_size > max_bytes
        ):
            raise PolicyViolation(param, value, "the file changed while it was checked", "a regular file")
        yield handle, after.st_size
    finally:
        handle.close()


def read_limited(handle: BinaryIO, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` + 1 bytes (the extra byte tells a file that grew)."""
    return handle.read(max_bytes + 1)


# --- images ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed the content check (its bytes when they were read)."""

    name: str
    format: str
    mime: str
    width: int
    height: int
    size: int
    data: bytes | None = None


def _magic_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _image_header(param: str, value: str, handle: BinaryIO, policy: WorkerPolicy) -> tuple[str, int, int]:
    """Magic bytes, then a header-only decode with Pillow (``Image.open`` reads no pixel data)."""
    kind = _magic_format(handle.read(16))
    handle.seek(0)
    if kind is None:
        raise InvalidVideoRequest(param, value, _NOT_AN_IMAGE)
    try:
        with Image.open(handle, formats=[kind]) as image:
            kind, (width, height) = image.format or kind, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidVideoRequest(param, value, _NOT_AN_IMAGE) from None
    side = policy.max_image_side
    if width > side or height > side or width < 1 or height < 1:
        raise PolicyViolation(
            param,
            value,
            f"the image is {width}x{height}",
            f"images of at most {side}x{side} (PREFECT_VIDEOGEN_MAX_IMAGE_SIDE)",
        )
    handle.seek(0)
    return kind, width, height


def check_local_image(
    param: str,
    value: str,
    policy: WorkerPolicy | None = None,
    *,
    read: bool = False,
    max_bytes: int | None = None,
    limit_text: str | None = None,
    extra_roots: tuple[str | os.PathLike[str], ...] = (),
) -> CheckedImage:
    """Check a local image by policy and content; with ``read``, return its bytes from the same open file.

    Args:
        max_bytes: a provider's own, smaller limit (the policy's ``max_image_bytes`` always applies).
        limit_text: how to name that limit in the error, e.g. "25 MB (APIFrame uploads)".
    """
    policy = current(policy)
    limit = min(policy.max_image_bytes, max_bytes or policy.max_image_bytes)
    setting = limit_text if limit_text and limit < policy.max_image_bytes else "PREFECT_VIDEOGEN_MAX_IMAGE_BYTES"
    with open_local_file(
        param,
        value,
        policy,
        max_bytes=limit,
        setting=setting,
        missing="an existing local image file or an http(s) URL",
        extra_roots=extra_roots,
    ) as (handle, size):
        kind, width, height = _image_header(param, value, handle, policy)
        data = None
        if read:
            data = read_limited(handle, limit)
            if len(data) > limit:
                raise PolicyViolation(
                    param,
                    value,
                    "the file grew while it was read",
                    f"a file of at most {_size_text(limit)} ({setting})",
                )
    return CheckedImage(Path(value).name or "image", kind, IMAGE_FORMATS[kind], width, height, size, data)


def check_image_bytes(param: str, value: str, data: bytes, policy: WorkerPolicy | None = None) -> CheckedImage:
    """Check fetched image bytes the same way as a local image."""
    import io

    kind, width, height = _image_header(param, value, io.BytesIO(data), current(policy))
    name = Path(urlsplit(value).path).name or "image"
    return CheckedImage(name, kind, IMAGE_FORMATS[kind], width, height, len(data), data)


# --- URLs the worker fetches -----------------------------------------------------------------------


def system_resolver(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def address_refusal(address: str) -> str | None:
    """Why ``address`` is not a public address ("loopback", "private"...), or None when it is public."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for name, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return name
    return None if ip.is_global else "reserved"


def check_url(
    param: str, url: str, policy: WorkerPolicy | None = None, *, resolver: Resolver | None = None
) -> list[str]:
    """Decide whether the worker may fetch ``url``; return the checked addresses to connect to.

    Every address the host resolves to is checked (a name with one public and one private address
    is refused), so whichever the connection uses is allowed. No connection is made here.

    Raises:
        PolicyViolation: not http(s), credentials in the URL, or an address the policy does not allow.
    """
    policy = current(policy)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise PolicyViolation(param, url, "the worker fetches http(s) URLs only", "an http(s) URL")
    if parts.username or parts.password:
        raise PolicyViolation(param, url, "credentials in the URL", "an http(s) URL without user:password@")
    host = parts.hostname.lower()
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise PolicyViolation(param, url, "the port is not a number", "an http(s) URL") from None
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = (resolver or system_resolver)(host, port)
        except OSError:
            raise InvalidVideoRequest(param, url, "an http(s) URL whose host name resolves") from None
    if not addresses:
        raise InvalidVideoRequest(param, url, "an http(s) URL whose host name resolves")
    if host in policy.allowed_url_hosts:
        return addresses
    how = "PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS or PREFECT_VIDEOGEN_ALLOW_PRIVATE_URLS on the worker"
    for address in addresses:
        refusal = address_refusal(address)
        if refusal and not policy.allow_private_urls:
            raise PolicyViolation(
                param,
                url,
                f"{host} resolves to a {refusal} address ({address})",
                f"public addresses, or hosts the worker allows ({how})",
            )
        if refusal is None and not policy.allow_public_urls:
            raise PolicyViolation(
                param,
                url,
                f"{host} is not among the worker's allowed URL hosts",
                f"hosts in PREFECT_VIDEOGEN_ALLOWED_URL_HOSTS ({policy.allowed_url_hosts})",
            )
    return addresses


def fetch_url(
    param: str,
    url: str,
    policy: WorkerPolicy | None = None,
    *,
    max_bytes: int,
    setting: str,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """GET ``url`` for the worker, at most ``max_bytes``, checking the destination of every hop.

    Redirects are followed by hand (at most ``max_redirects``), each new URL checked like the first.
    The connection goes to the address that was checked (the URL's host is replaced by it, with the
    original Host header and TLS server name), so a DNS answer that changes between the check and
    the connection cannot redirect it. No proxy from the environment is used, for the same reason.
    Answer bodies are never put in errors: they come from hosts that are not the provider's API.
    """
    policy = current(policy)
    with httpx.Client(
        follow_redirects=False, trust_env=False, timeout=policy.url_timeout_seconds, transport=transport
    ) as client:
        current_url = url
        for _ in range(policy.max_redirects + 1):
            address = check_url(param, current_url, policy, resolver=resolver)[0]
            parts = urlsplit(current_url)
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            pinned_host = f"[{address}]" if ":" in address else address
            pinned = urlunsplit((parts.scheme, f"{pinned_host}:{port}", parts.path or "/", parts.query, ""))
            extensions = {"sni_hostname": parts.hostname} if parts.scheme.lower() == "https" else {}
            try:
                with client.stream("GET", pinned, headers={"Host": parts.netloc}, extensions=extensions) as answer:
                    if answer.is_redirect and "location" in answer.headers:
                        current_url = urljoin(current_url, answer.headers["location"])
                        continue
                    if answer.status_code != 200:
                        raise InvalidVideoRequest(
                            param,
                            url,
                            f"a URL that answers with the file; it answered HTTP "
                            f"{answer.status_code} (the answer is not shown)",
                        )
                    length = answer.headers.get("content-length", "")
                    if length.isdigit() and int(length) > max_bytes:
                        raise PolicyViolation(
                            param, url, f"the answer has {length} bytes", f"at most {_size_text(max_bytes)} ({setting})"
                        )
                    data = bytearray()
                    for chunk in answer.iter_bytes():
                        data.extend(chunk)
                        if len(data) > max_bytes:
                            raise PolicyViolation(
                                param,
                                url,
                                "the answer is larger than the limit",
                                f"at most {_size_text(max_bytes)} ({setting})",
                            )
                    return bytes(data)
            except httpx.HTTPError as exc:
                raise InvalidVideoRequest(
                    param, url, f"a reachable http(s) URL; the fetch failed ({type(exc).__name__})"
                ) from None
        raise PolicyViolation(
            param, url, f"more than {policy.max_redirects} redirects", "PREFECT_VIDEOGEN_MAX_REDIRECTS redirects"
        )


# --- the pre-flight check of a request ------------------------------------------------------------


def check_request_inputs(
    request: VideoRequest,
    policy: WorkerPolicy | None = None,
    *,
    provider: str | None = None,
    resolver: Resolver | None = None,
) -> None:
    """Check what ``request`` makes the worker touch, before any quote, approval, upload or paid call.

    Every image of the request (``image``, ``end_image``, each of ``reference_images``) is checked
    alike: a local image passes the path policy and the content check (header only, nothing read
    whole); an image URL must be http(s), and where the worker fetches it itself (Scenario) it is
    fetched under the URL rules and checked by content too. URLs other providers fetch themselves
    are passed through unfetched.
    """
    images = [("image", request.image), ("end_image", request.end_image)]
    images += [(f"reference_images[{n}]", image) for n, image in enumerate(request.reference_images)]
    for field, image in images:
        if image is not None:
            _check_input_image(field, image, current(policy), provider=provider, resolver=resolver)


def _check_input_image(
    field: str, image: str, policy: WorkerPolicy, *, provider: str | None, resolver: Resolver | None
) -> None:
    if has_scheme(image):
        if provider == "local":
            raise InvalidVideoRequest(field, image, "a local file path (the local provider has no network)")
        if urlsplit(image).scheme.lower() not in ("http", "https"):
            raise InvalidVideoRequest(field, image, "a local file path or an http(s) URL")
        if provider in WORKER_FETCHED_IMAGE_PROVIDERS:
            # Fetched (guarded, capped) and checked by content now, so a redirect to a forbidden
            # address or a non-image is refused before the quote; the submit fetches it again.
            data = fetch_url(
                field,
                image,
                policy,
                max_bytes=policy.max_image_bytes,
                setting="PREFECT_VIDEOGEN_MAX_IMAGE_BYTES",
                resolver=resolver,
            )
            check_image_bytes(field, image, data, policy)
        return
    check_local_image(field, image, policy)
