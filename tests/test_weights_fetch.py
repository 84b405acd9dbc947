"""Downloads from a local HTTP server (127.0.0.1) with Range support, dropped connections and bad files."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gifstream.weights import (
    REGISTRY,
    WeightFile,
    WeightsFetchError,
    WeightsHashError,
    fetch,
    override_registry,
    path_for,
)
from gifstream.weights.cli import add_models_parser, run_models


@dataclass
class Served:
    body: bytes
    mode: str = "good"
    ranges: list[str | None] = field(default_factory=list)  # the Range header of each request, in order


class WeightServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files: dict[str, Served] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves WeightServer.files; honours "Range: bytes=N-" unless its mode says otherwise; can cut the body in half."""

    server: WeightServer

    def do_GET(self) -> None:
        served = self.server.files.get(self.path)
        if served is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        served.ranges.append(asked)
        body, start = served.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", asked or "")
        if match and served.mode == "wrong-range":
            # A broken server: "206 Partial Content" that is really the whole file.
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-{len(body) - 1}/{len(body)}")
        elif match and served.mode != "ignore-range":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        drop = served.mode == "drop-always" or (served.mode == "drop-once" and len(served.ranges) == 1)
        # A dropped connection: half the promised bytes, then the socket closes (HTTP/1.0 closes after each reply).
        self.wfile.write(payload[: len(payload) // 2] if drop else payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[WeightServer]:
    httpd = WeightServer()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def random_bytes(size: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "little")).digest(size)


def serve_entry(
    server: WeightServer, name: str, body: bytes, mode: str = "good", served: bytes | None = None
) -> WeightFile:
    """A copy of registry entry ``name`` whose URL points at the local server and whose hash/size are ``body``'s."""
    entry = dataclasses.replace(
        REGISTRY[name], url=server.url(f"/{name}.pth"), size=len(body), sha256=hashlib.sha256(body).hexdigest()
    )
    server.files[f"/{name}.pth"] = Served(body if served is None else served, mode)
    return entry


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file_downloads_verified_into_its_cache(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(150_000, 1)
    with override_registry({"parsenet": serve_entry(server, "parsenet", body)}):
        path = fetch("parsenet", weights_dir=tmp_path, progress=False)
        assert path == tmp_path / "parsing_parsenet.pth"
        assert path.read_bytes() == body
        assert leftovers(tmp_path) == ["parsing_parsenet.pth"]  # no .part left
        assert path_for("parsenet", weights_dir=tmp_path, verify=True) == path
    assert server.files["/parsenet.pth"].ranges == [None]


def test_torch_entry_lands_in_torch_checkpoints(server: WeightServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    body = random_bytes(5_000, 2)
    with override_registry({"raft_small": serve_entry(server, "raft_small", body)}):
        path = fetch("raft_small", progress=False)
    assert path == tmp_path / "torch-home" / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    assert path.read_bytes() == body


def test_corrupted_file_is_rejected_and_removed(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(80_000, 3)
    corrupted = body[:40_000] + bytes([body[40_000] ^ 0xFF]) + body[40_001:]
    entry = serve_entry(server, "parsenet", body, served=corrupted)
    with override_registry({"parsenet": entry}), pytest.raises(WeightsHashError) as caught:
        fetch("parsenet", weights_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert hashlib.sha256(corrupted).hexdigest() in message and hashlib.sha256(body).hexdigest() in message
    assert "removed" in message and "\n" not in message
    assert leftovers(tmp_path) == []


def test_file_of_the_wrong_size_is_rejected_and_removed(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(30_000, 4)
    for served in (body[:-10], body + b"trailing junk"):
        entry = serve_entry(server, "parsenet", body, served=served)
        wrong_size = f"has {len(served)} bytes, expected {len(body)}"
        with override_registry({"parsenet": entry}), pytest.raises(WeightsHashError, match=wrong_size):
            fetch("parsenet", weights_dir=tmp_path, progress=False, retry_delay=0)
        assert leftovers(tmp_path) == []


def test_connection_dropped_half_way_resumes_with_a_range_request(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(200_000, 5)
    with override_registry({"parsenet": serve_entry(server, "parsenet", body, mode="drop-once")}):
        path = fetch("parsenet", weights_dir=tmp_path, progress=False, retry_delay=0)
    assert path.read_bytes() == body
    assert server.files["/parsenet.pth"].ranges == [None, f"bytes={len(body) // 2}-"]
    assert leftovers(tmp_path) == ["parsing_parsenet.pth"]


def test_server_ignoring_range_restarts_cleanly(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(60_000, 6)
    # An earlier interrupted download whose bytes do not match: appending to it would fail the hash.
    (tmp_path / "parsing_parsenet.pth.part").write_bytes(b"\0" * 1000)
    with override_registry({"parsenet": serve_entry(server, "parsenet", body, mode="ignore-range")}):
        path = fetch("parsenet", weights_dir=tmp_path, progress=False)
    assert server.files["/parsenet.pth"].ranges == ["bytes=1000-"]
    assert path.read_bytes() == body
    assert leftovers(tmp_path) == ["parsing_parsenet.pth"]


def test_partial_content_from_the_wrong_offset_restarts_cleanly(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(30_000, 12)
    (tmp_path / "parsing_parsenet.pth.part").write_bytes(body[:500])
    with override_registry({"parsenet": serve_entry(server, "parsenet", body, mode="wrong-range")}):
        path = fetch("parsenet", weights_dir=tmp_path, progress=False, retry_delay=0)
    assert server.files["/parsenet.pth"].ranges == ["bytes=500-", None]
    assert path.read_bytes() == body
    assert leftovers(tmp_path) == ["parsing_parsenet.pth"]


def test_part_longer_than_the_file_is_discarded(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(10_000, 7)
    (tmp_path / "parsing_parsenet.pth.part").write_bytes(b"\1" * 20_000)
    with override_registry({"parsenet": serve_entry(server, "parsenet", body)}):
        assert fetch("parsenet", weights_dir=tmp_path, progress=False).read_bytes() == body
    assert server.files["/parsenet.pth"].ranges == [None]


def test_repeated_drops_give_up_keeping_the_part_and_a_later_fetch_resumes(
    server: WeightServer, tmp_path: Path
) -> None:
    body = random_bytes(120_000, 8)
    entry = serve_entry(server, "parsenet", body, mode="drop-always")
    part = tmp_path / "parsing_parsenet.pth.part"
    with override_registry({"parsenet": entry}):
        with pytest.raises(WeightsFetchError) as caught:
            fetch("parsenet", weights_dir=tmp_path, progress=False, retries=2, retry_delay=0)
        message = str(caught.value)
        assert isinstance(caught.value, OSError)
        assert "\n" not in message
        assert entry.url in message and str(part) in message and "kept for resume" in message
        assert "after 3 attempts" in message and "`gifstream models fetch parsenet --weights-dir" in message
        kept = part.read_bytes()
        assert 0 < len(kept) < len(body) and body.startswith(kept)
        assert len(server.files["/parsenet.pth"].ranges) == 3

        server.files["/parsenet.pth"].mode = "good"
        assert fetch("parsenet", weights_dir=tmp_path, progress=False).read_bytes() == body
    assert server.files["/parsenet.pth"].ranges[-1] == f"bytes={len(kept)}-"
    assert not part.exists()


def test_refused_connection_gives_one_line_fetch_error(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound but not listening: connecting to it is refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/raft_small.pth"
        entry = dataclasses.replace(REGISTRY["raft_small"], url=url)
        with override_registry({"raft_small": entry}), pytest.raises(WeightsFetchError) as caught:
            fetch("raft_small", weights_dir=tmp_path, progress=False, retry_delay=0)
    message = str(caught.value)
    assert "\n" not in message
    assert url in message and "refused" in message
    assert "gifstream models fetch raft_small" in message
    assert leftovers(tmp_path) == []


def test_http_error_is_reported_without_retrying(server: WeightServer, tmp_path: Path) -> None:
    entry = dataclasses.replace(REGISTRY["parsenet"], url=server.url("/nothing-here.pth"))
    with override_registry({"parsenet": entry}), pytest.raises(WeightsFetchError, match="HTTP 404") as caught:
        fetch("parsenet", weights_dir=tmp_path, progress=False, retry_delay=0)
    assert "attempts" not in str(caught.value)


def test_path_for_fetches_missing_and_replaces_bad_files(server: WeightServer, tmp_path: Path) -> None:
    body = random_bytes(20_000, 9)
    with override_registry({"retinaface_resnet50": serve_entry(server, "retinaface_resnet50", body)}):
        path = path_for("retinaface_resnet50", weights_dir=tmp_path, fetch=True, progress=False)
        assert path.read_bytes() == body
        path.write_bytes(b"\0" * len(body))  # tampered, same size
        assert path_for("retinaface_resnet50", weights_dir=tmp_path, fetch=True) == path  # size-only check passes
        assert path_for("retinaface_resnet50", weights_dir=tmp_path, fetch=True, verify=True, progress=False) == path
        assert path.read_bytes() == body
    assert len(server.files["/retinaface_resnet50.pth"].ranges) == 2


def test_progress_bar_goes_to_stderr_only_when_asked(server: WeightServer, tmp_path: Path, capsys) -> None:
    body = random_bytes(50_000, 10)
    with override_registry({"parsenet": serve_entry(server, "parsenet", body)}):
        fetch("parsenet", weights_dir=tmp_path / "quiet", progress=False)
        quiet = capsys.readouterr()
        fetch("parsenet", weights_dir=tmp_path / "shown", progress=True)
        shown = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""
    assert "parsing_parsenet.pth" in shown.err and shown.out == ""


def models(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gifstream")
    add_models_parser(parser.add_subparsers())
    return parser.parse_args(["models", *argv])


def test_models_fetch_downloads_then_reports_already_cached(server: WeightServer, tmp_path: Path, capsys) -> None:
    body = random_bytes(40_000, 11)
    with override_registry({"realesrgan_x2plus": serve_entry(server, "realesrgan_x2plus", body)}):
        assert run_models(models("fetch", "realesrgan_x2plus", "--weights-dir", str(tmp_path), "-q")) == 0
        first = capsys.readouterr()
        assert run_models(models("fetch", "realesrgan_x2plus", "--weights-dir", str(tmp_path))) == 0
        second = capsys.readouterr()
    target = tmp_path / "RealESRGAN_x2plus.pth"
    assert target.read_bytes() == body
    assert f"realesrgan_x2plus: {target} (downloaded" in first.out and first.err == ""
    assert "already cached" in second.out
    assert len(server.files["/realesrgan_x2plus.pth"].ranges) == 1


def test_models_fetch_failure_is_one_line_on_stderr(tmp_path: Path, capsys) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        entry = dataclasses.replace(REGISTRY["parsenet"], url=f"http://127.0.0.1:{closed.getsockname()[1]}/p.pth")
        with override_registry({"parsenet": entry}):
            code = run_models(models("fetch", "parsenet", "--weights-dir", str(tmp_path)))
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("gifstream: error: cannot download parsing_parsenet.pth from http://127.0.0.1:")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_no_test_here_needs_a_real_url() -> None:
    # Every download above goes to 127.0.0.1; the registry itself must still point at the real hosts.
    assert all(entry.url.startswith("https://") for entry in REGISTRY.values())
    assert os.environ["GIFSTREAM_HOME"]  # set by the shared fixture, so no user cache is touched
