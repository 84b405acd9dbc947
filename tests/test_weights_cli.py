"""`gifstream models list | fetch | verify` without network: table contents, tampered files, usage errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gifstream.weights import REGISTRY, override_registry
from gifstream.weights.cli import add_models_parser, run_models
from gifstream.weights.testing import install_fake

# Name -> SHA-256 as published with each file (see test_weights_registry.EXPECTED for the full rows).
PUBLISHED_SHA256 = {
    "gfpgan_v1.3": "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
    "gfpgan_v1.4": "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    "realesrgan_x2plus": "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
    "retinaface_resnet50": "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
    "parsenet": "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
    "raft_large": "ff5fadd56d26b40647388883af1547351ea17868b765c05b27231e72dd16a322",
    "raft_small": "01064c6dba73b0fc9fc8edf772248560a00a3acfd62ac6677e9eeebad9680e27",
    "alexnet": "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
}


def models(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gifstream")
    add_models_parser(parser.add_subparsers())
    return parser.parse_args(["models", *argv])


def table(out: str) -> dict[str, list[str]]:
    """Rows of a printed table keyed by their first column (cells never contain spaces here)."""
    lines = out.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_list_shows_every_entry_with_its_sha256_and_cache_state(tmp_path: Path, capsys) -> None:
    assert run_models(models("list", "--weights-dir", str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "FILE", "SIZE", "SHA-256", "CACHED", "PATH"]
    rows = table(out)
    assert set(rows) == set(PUBLISHED_SHA256)
    for name, sha256 in PUBLISHED_SHA256.items():
        filename, size_number, unit, digest, cached, path = rows[name][1:]
        assert (filename, digest, cached, path) == (REGISTRY[name].filename, sha256, "no", str(tmp_path / filename))
        assert (size_number, unit) == (f"{REGISTRY[name].size / 1e6:.1f}", "MB")
    assert rows["gfpgan_v1.3"][2:4] == ["348.6", "MB"]  # 348,632,874 bytes


def test_list_marks_cached_files_and_uses_the_default_caches(tmp_path: Path, monkeypatch, capsys) -> None:
    # Private default caches: the session-wide ones would leak this fake into other tests.
    monkeypatch.setenv("GIFSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with override_registry():
        path = install_fake("alexnet", b"fake alexnet", None)
        assert run_models(models("list")) == 0
    rows = table(capsys.readouterr().out)
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert rows["alexnet"][5:] == ["yes", str(path)]
    assert rows["parsenet"][5:] == ["no", str(tmp_path / "home" / "weights" / "parsing_parsenet.pth")]
    assert rows["raft_small"][5] == "no"


def test_verify_passes_good_files_and_fails_on_a_tampered_one(tmp_path: Path, capsys) -> None:
    with override_registry():
        path = install_fake("gfpgan_v1.4", bytes(range(256)) * 4, tmp_path)
        install_fake("raft_small", b"small flow", tmp_path)
        assert run_models(models("verify", "--weights-dir", str(tmp_path))) == 0
        good = capsys.readouterr()
        path.write_bytes(bytes(range(1, 256)) + b"\0" + bytes(range(256)) * 3)  # same size, other bytes
        assert run_models(models("verify", "--weights-dir", str(tmp_path))) == 1
        bad = capsys.readouterr()
    good_rows, bad_rows = table(good.out), table(bad.out)
    assert good_rows["gfpgan_v1.4"][1] == "ok" and good_rows["raft_small"][1] == "ok"
    assert good_rows["parsenet"][1:3] == ["not", "cached"]
    assert good.err == ""
    assert bad_rows["gfpgan_v1.4"][1:3] == ["SHA-256", "MISMATCH"] and bad_rows["raft_small"][1] == "ok"
    assert bad.err.count("\n") == 1
    assert f"`gifstream models fetch gfpgan_v1.4 --weights-dir {tmp_path}`" in bad.err


def test_verify_flags_a_wrong_size_and_a_named_file_that_is_absent(tmp_path: Path, capsys) -> None:
    with override_registry():
        install_fake("parsenet", b"12345", tmp_path).write_bytes(b"1234")
        assert run_models(models("verify", "parsenet", "--weights-dir", str(tmp_path))) == 1
        assert "WRONG SIZE (4 bytes, expected 5)" in capsys.readouterr().out
    assert run_models(models("verify", "raft_large", "--weights-dir", str(tmp_path))) == 1
    assert table(capsys.readouterr().out)["raft_large"][1:3] == ["not", "cached"]
    assert run_models(models("verify", "--weights-dir", str(tmp_path / "empty"))) == 0  # nothing cached, nothing bad


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("fetch", "gfpgan_v9"), "unknown model weights 'gfpgan_v9'; known names: alexnet, gfpgan_v1.3"),
        (("verify", "nope"), "unknown model weights 'nope'"),
        (("fetch",), "give one or more NAMEs or --all"),
        (("fetch", "--all", "parsenet"), "either NAMEs or --all"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: tuple[str, ...], message: str, capsys) -> None:
    assert run_models(models(*argv)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("gifstream: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""


def test_models_without_an_action_prints_usage(capsys) -> None:
    assert run_models(models()) == 2
    assert "choose an action: list, fetch or verify" in capsys.readouterr().err


def test_debug_shows_the_error_itself(tmp_path: Path) -> None:
    from gifstream.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model weights"):
        run_models(models("verify", "nope", "--debug"))


def test_wired_into_the_gifstream_command(tmp_path: Path, capsys) -> None:
    from gifstream.cli import main

    assert main(["models", "list", "--weights-dir", str(tmp_path)]) == 0
    assert set(table(capsys.readouterr().out)) == set(PUBLISHED_SHA256)
    assert main(["models", "verify", "alexnet", "--weights-dir", str(tmp_path)]) == 1
