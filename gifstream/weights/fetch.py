"""Verified, resumable downloads of weight files over HTTP(S), with urllib.

A download streams into ``<file>.part`` beside its destination. An
interrupted download leaves the ``.part`` behind and the next attempt asks
the server for the rest (an HTTP Range request); a server that answers with
the whole file instead restarts it cleanly. Only a file with the registered
size and SHA-256 is renamed into place, so a cache never holds a bad file
under a good name.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from .. import __version__
from ..engine.errors import GifstreamError, OutputError
from .cache import PathLike, cached_path, fetch_command, part_path, sha256_file
from .errors import WeightsFetchError, WeightsHashError
from .registry import WeightFile, resolve_entry

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Dropped(Exception):
    """The connection ended before the body was complete; the next attempt resumes."""


class _RangeMismatch(Exception):
    """The server sent a range other than the one asked for; the next attempt starts over."""


def fetch(
    name_or_entry: str | WeightFile,
    *,
    weights_dir: PathLike | None = None,
    progress: bool | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    retry_delay: float = 1.0,
) -> Path:
    """Download a weights file into its cache folder and return its path.

    ``progress`` shows a tqdm bar on stderr (default: when stderr is a
    terminal). A dropped connection is retried ``retries`` times, resuming,
    ``retry_delay`` seconds apart (growing). Raises WeightsFetchError when the
    network fails (the ``.part`` is kept for the next run) and
    WeightsHashError when the downloaded file is not the registered one (it
    is removed).
    """
    entry = resolve_entry(name_or_entry)
    target = cached_path(entry, weights_dir)
    part = part_path(target)
    _make_folder(target.parent)
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(
        total=entry.size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=entry.filename,
        file=sys.stderr,
        disable=not show,
        leave=False,
    ) as bar:
        _download_with_retries(entry, part, bar, timeout, retries, retry_delay, weights_dir)
    _check_download(entry, part, weights_dir)
    os.replace(part, target)
    return target


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the weights folder {folder}: {err.strerror or err}") from err


def _download_with_retries(
    entry: WeightFile,
    part: Path,
    bar: tqdm,
    timeout: float,
    retries: int,
    retry_delay: float,
    weights_dir: PathLike | None,
) -> None:
    attempt = 1
    while True:
        try:
            _download(entry, part, bar, timeout)
            return
        except GifstreamError:
            raise
        except (OSError, http.client.HTTPException, _Dropped, _RangeMismatch) as err:
            if attempt > retries or not _worth_retrying(err):
                raise WeightsFetchError(_failure_message(entry, part, err, attempt, timeout, weights_dir)) from err
            time.sleep(retry_delay * attempt)
            attempt += 1


def _download(entry: WeightFile, part: Path, bar: tqdm, timeout: float) -> None:
    """One attempt: fetch what ``part`` lacks, appending to it or rewriting it from the start."""
    offset = _resumable_bytes(part, entry.size)
    if offset == entry.size:
        return  # an earlier attempt got every byte; the check after decides whether they are right
    try:
        response = _open(entry.url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not offset:
            raise
        # "Range not satisfiable": the .part does not fit the file the server has now; start over.
        part.unlink()
        offset = 0
        response = _open(entry.url, offset, timeout)
    with response:
        try:
            start = _body_start(response, offset)
        except _RangeMismatch:
            part.unlink(missing_ok=True)  # so the next attempt asks for the whole file
            raise
        bar.reset(total=entry.size)
        bar.update(start)
        received = _copy_body(response, part, start, entry.size - start, bar)
        if start + received > entry.size:
            return  # longer than the registered file: the size check rejects it
        expected = response.headers.get("Content-Length")
        if expected is not None and expected.isdigit() and received < int(expected):
            raise _Dropped(f"the connection closed after {start + received} of {entry.size} bytes")


def _resumable_bytes(part: Path, size: int) -> int:
    """Bytes of an earlier attempt to keep; a .part longer than the file cannot be a prefix of it."""
    if not part.is_file():
        return 0
    have = part.stat().st_size
    if have > size:
        part.unlink()
        return 0
    return have


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"gifstream/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    response: http.client.HTTPResponse = urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=timeout
    )
    return response


def _body_start(response: http.client.HTTPResponse, offset: int) -> int:
    """Where in the file the body starts: ``offset`` for a matching 206, else 0 (the server sent the whole file)."""
    if response.status != 206:
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != offset:
        raise _RangeMismatch(
            f"asked for bytes {offset}- and the server answered {response.headers.get('Content-Range')!r}"
        )
    return offset


def _copy_body(response: http.client.HTTPResponse, part: Path, start: int, wanted: int, bar: tqdm) -> int:
    """Append (or, from 0, write) the body to ``part``; stops past ``wanted``, so a wrong file cannot fill the disk."""
    received = 0
    with _open_part(part, append=start > 0) as out:
        while received <= wanted:
            chunk = response.read(CHUNK)  # network errors propagate to the retry loop
            if not chunk:
                break
            _write(out, part, chunk)
            received += len(chunk)
            bar.update(len(chunk))
        _flush(out, part)
    return received


def _open_part(part: Path, *, append: bool) -> BinaryIO:
    try:
        return part.open("ab" if append else "wb")
    except OSError as err:
        raise OutputError(f"cannot write the download {part}: {err.strerror or err}") from err


def _write(out: BinaryIO, part: Path, chunk: bytes) -> None:
    try:
        out.write(chunk)
    except OSError as err:
        raise OutputError(f"cannot write the download {part}: {err.strerror or err}") from err


def _flush(out: BinaryIO, part: Path) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as err:
        raise OutputError(f"cannot write the download {part}: {err.strerror or err}") from err


def _check_download(entry: WeightFile, part: Path, weights_dir: PathLike | None) -> None:
    """Size, then SHA-256; a mismatching download is removed so the next fetch starts afresh."""
    size = part.stat().st_size
    problem = None
    if size != entry.size:
        problem = f"has {size} bytes, expected {entry.size}"
    else:
        digest = sha256_file(part)
        if digest != entry.sha256:
            problem = f"has SHA-256 {digest}, expected {entry.sha256}"
    if problem is not None:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise WeightsHashError(
            f"the download of {entry.filename} from {entry.url} {problem}; it was removed "
            f"(run `{fetch_command(entry.name, weights_dir)}` to try again)"
        )


def _worth_retrying(err: BaseException) -> bool:
    """Dropped connections, resets, time-outs and server errors may pass; refused, DNS and 4xx will not."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 429)
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    if isinstance(err, socket.gaierror | ConnectionRefusedError):
        return False
    return isinstance(
        err,
        _Dropped | _RangeMismatch | http.client.HTTPException | ConnectionError | TimeoutError | urllib.error.URLError,
    )


def _reason(err: BaseException, timeout: float) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"the server answered HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    if isinstance(err, socket.gaierror):
        return f"cannot resolve the host name ({err.strerror or err})"
    if isinstance(err, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, _Dropped | _RangeMismatch):
        return str(err)
    if isinstance(err, http.client.RemoteDisconnected | ConnectionResetError):
        return "the connection was closed by the server"
    return f"{type(err).__name__}: {err}"


def _failure_message(
    entry: WeightFile, part: Path, err: BaseException, attempts: int, timeout: float, weights_dir: PathLike | None
) -> str:
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    kept = part.stat().st_size if part.is_file() else 0
    if kept:
        after = f"the partial download {part} ({kept} of {entry.size} bytes) was kept for resume"
    else:
        after = "nothing was downloaded yet"
    message = (
        f"cannot download {entry.filename} from {entry.url}: {_reason(err, timeout)}{tries}; {after}; "
        f"run `{fetch_command(entry.name, weights_dir)}` again when the network is back"
    )
    return " ".join(message.split())
