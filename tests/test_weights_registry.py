"""The weights registry, the cache-folder rules, path_for without network, and the fake-weights helper."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import pytest

from gifstream.engine.errors import ConfigError, InputError
from gifstream.weights import (
    REGISTRY,
    WeightFile,
    WeightsHashError,
    WeightsMissingError,
    cached_path,
    gifstream_cache_dir,
    override_registry,
    path_for,
    torch_checkpoints_dir,
    verify,
    weights_status,
)
from gifstream.weights.testing import install_fake

# The published files (release assets of GFPGAN, Real-ESRGAN and facexlib; torchvision's checkpoints).
EXPECTED = {
    "gfpgan_v1.3": (
        "GFPGANv1.3.pth",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
        348632874,
        "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
        "gifstream",
    ),
    "gfpgan_v1.4": (
        "GFPGANv1.4.pth",
        "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
        348632874,
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
        "gifstream",
    ),
    "realesrgan_x2plus": (
        "RealESRGAN_x2plus.pth",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
        67061725,
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        "gifstream",
    ),
    "retinaface_resnet50": (
        "detection_Resnet50_Final.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
        109497761,
        "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        "gifstream",
    ),
    "parsenet": (
        "parsing_parsenet.pth",
        "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
        85331193,
        "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
        "gifstream",
    ),
    "raft_large": (
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        21106607,
        "ff5fadd56d26b40647388883af1547351ea17868b765c05b27231e72dd16a322",
        "torch",
    ),
    "raft_small": (
        "raft_small_C_T_V2-01064c6d.pth",
        "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
        4006189,
        "01064c6dba73b0fc9fc8edf772248560a00a3acfd62ac6677e9eeebad9680e27",
        "torch",
    ),
    "alexnet": (
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        244408911,
        "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        "torch",
    ),
}


def test_registry_holds_exactly_the_published_files() -> None:
    assert set(REGISTRY) == set(EXPECTED)
    for name, (filename, url, size, sha256, location) in EXPECTED.items():
        entry = REGISTRY[name]
        assert (entry.name, entry.filename, entry.url, entry.size, entry.sha256, entry.location) == (
            name,
            filename,
            url,
            size,
            sha256,
            location,
        )
        assert entry.description


def test_torch_checkpoint_names_carry_their_hash_prefix() -> None:
    # torchvision names its checkpoints <stem>-<first 8 hex digits of the SHA-256>.pth and checks that prefix.
    for entry in REGISTRY.values():
        if entry.location == "torch":
            assert entry.filename.removesuffix(".pth").rsplit("-", 1)[1] == entry.sha256[:8]


def test_weight_file_is_frozen_and_validated() -> None:
    entry = REGISTRY["parsenet"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.size = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="sha256"):
        dataclasses.replace(entry, sha256="abc")
    with pytest.raises(ConfigError, match="location"):
        dataclasses.replace(entry, location="elsewhere")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="filename"):
        dataclasses.replace(entry, filename="../escape.pth")


def test_cache_folders_follow_weights_dir_first(tmp_path: Path) -> None:
    assert gifstream_cache_dir(tmp_path) == tmp_path
    assert torch_checkpoints_dir(str(tmp_path)) == tmp_path
    assert cached_path("gfpgan_v1.4", tmp_path) == tmp_path / "GFPGANv1.4.pth"
    assert cached_path("alexnet", tmp_path) == tmp_path / "alexnet-owt-7be5be79.pth"


def test_gifstream_cache_dir_uses_gifstream_home_then_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIFSTREAM_HOME", str(tmp_path / "home"))
    assert gifstream_cache_dir() == tmp_path / "home" / "weights"
    assert cached_path("parsenet") == tmp_path / "home" / "weights" / "parsing_parsenet.pth"
    monkeypatch.delenv("GIFSTREAM_HOME")
    if sys.platform.startswith("linux"):
        # On Linux the user cache folder is $XDG_CACHE_HOME/<app> (XDG base directory specification).
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert gifstream_cache_dir() == tmp_path / "xdg" / "gifstream" / "weights"
    else:
        import platformdirs

        assert gifstream_cache_dir() == platformdirs.user_cache_path("gifstream", appauthor=False) / "weights"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TORCH_HOME": "th", "XDG_CACHE_HOME": "xdg"}, "th/hub/checkpoints"),
        ({"XDG_CACHE_HOME": "xdg"}, "xdg/torch/hub/checkpoints"),
        ({}, "home/.cache/torch/hub/checkpoints"),
    ],
)
def test_torch_checkpoints_dir_follows_torch_hub_rules(
    env: dict[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, str(tmp_path / value))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delitem(sys.modules, "torch.hub", raising=False)  # the rules without torch loaded
    assert torch_checkpoints_dir() == tmp_path / expected
    assert cached_path("raft_small") == tmp_path / expected / "raft_small_C_T_V2-01064c6d.pth"


def test_torch_checkpoints_dir_matches_torch_hub_get_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch_hub = pytest.importorskip("torch.hub")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for env in ({"TORCH_HOME": "th"}, {"XDG_CACHE_HOME": "xdg"}, {}):
        for variable in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(variable, raising=False)
        for variable, value in env.items():
            monkeypatch.setenv(variable, str(tmp_path / value))
        expected = Path(torch_hub.get_dir()) / "checkpoints"
        with monkeypatch.context() as without_torch:
            without_torch.delitem(sys.modules, "torch.hub")
            assert torch_checkpoints_dir() == expected, env
        assert torch_checkpoints_dir() == expected, env


def test_path_for_missing_file_names_file_url_path_and_command(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError) as caught:
        path_for("raft_small")
    message = str(caught.value)
    assert isinstance(caught.value, InputError)
    assert "\n" not in message
    expected_path = torch_checkpoints_dir() / "raft_small_C_T_V2-01064c6d.pth"
    for part in ("raft_small_C_T_V2-01064c6d.pth", EXPECTED["raft_small"][1], str(expected_path)):
        assert part in message
    assert "`gifstream models fetch raft_small`" in message

    with pytest.raises(WeightsMissingError) as caught:
        path_for("gfpgan_v1.4", weights_dir=tmp_path)
    assert str(tmp_path / "GFPGANv1.4.pth") in str(caught.value)
    assert f"`gifstream models fetch gfpgan_v1.4 --weights-dir {tmp_path}`" in str(caught.value)


def test_unknown_name_is_a_config_error_listing_known_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown model weights 'gfpgan_v9'.*alexnet.*gfpgan_v1\.4.*raft_small"):
        path_for("gfpgan_v9")


def test_path_for_checks_size_always_and_hash_when_asked(tmp_path: Path) -> None:
    payload = b"weights" * 100
    entry = dataclasses.replace(REGISTRY["parsenet"], size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    with override_registry({"parsenet": entry}):
        target = tmp_path / "parsing_parsenet.pth"
        target.write_bytes(payload[:-1])
        wrong_size = r"has 699 bytes, parsing_parsenet.pth has 700.*models fetch parsenet"
        with pytest.raises(WeightsHashError, match=wrong_size):
            path_for("parsenet", weights_dir=tmp_path)

        tampered = b"X" + payload[1:]
        target.write_bytes(tampered)
        assert path_for("parsenet", weights_dir=tmp_path) == target  # same size: only the hash tells
        with pytest.raises(WeightsHashError, match=hashlib.sha256(tampered).hexdigest()):
            path_for("parsenet", weights_dir=tmp_path, verify=True)
        assert verify("parsenet", tmp_path) is False

        target.write_bytes(payload)
        assert path_for("parsenet", weights_dir=tmp_path, verify=True) == target
        assert verify("parsenet", tmp_path) is True


def test_weights_status_reports_missing_partial_and_cached(tmp_path: Path) -> None:
    payload = bytes(range(200))
    entry = dataclasses.replace(REGISTRY["raft_small"], size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    with override_registry({"raft_small": entry}):
        states = {s.entry.name: s for s in weights_status(tmp_path)}
        assert set(states) == set(REGISTRY)
        assert states["raft_small"].state == "no" and not states["raft_small"].present

        (tmp_path / "raft_small_C_T_V2-01064c6d.pth.part").write_bytes(payload[:50])
        assert weights_status(tmp_path, names=["raft_small"])[0].state == "partial 25%"

        (tmp_path / "raft_small_C_T_V2-01064c6d.pth").write_bytes(payload)
        [status] = weights_status(tmp_path, names=["raft_small"], check_hash=True)
        assert (status.state, status.ok, status.path) == ("verified", True, tmp_path / entry.filename)


def test_override_registry_restores_the_registry_even_after_an_error() -> None:
    original = REGISTRY["alexnet"]
    fake = dataclasses.replace(original, size=3, sha256="0" * 64)
    extra = WeightFile("tiny", "tiny.pth", "http://127.0.0.1:9/tiny.pth", "1" * 64, 1, "a test file")
    with pytest.raises(RuntimeError), override_registry({"alexnet": fake, "tiny": extra}):
        assert REGISTRY["alexnet"].size == 3 and REGISTRY["tiny"] is extra
        raise RuntimeError("boom")
    assert REGISTRY["alexnet"] is original and "tiny" not in REGISTRY
    with pytest.raises(ConfigError, match="differs"), override_registry({"other": extra}):
        pass


def test_install_fake_bytes_go_through_path_for(tmp_path: Path) -> None:
    original = REGISTRY["gfpgan_v1.4"]
    with override_registry():
        path = install_fake("gfpgan_v1.4", b"not really a GAN", tmp_path)
        assert path == tmp_path / "GFPGANv1.4.pth"
        assert path_for("gfpgan_v1.4", weights_dir=tmp_path, verify=True) == path
        assert REGISTRY["gfpgan_v1.4"].sha256 == hashlib.sha256(b"not really a GAN").hexdigest()
        assert REGISTRY["gfpgan_v1.4"].url == original.url
    assert REGISTRY["gfpgan_v1.4"] is original
    with pytest.raises(WeightsHashError):  # the real entry's size no longer matches the fake file
        path_for("gfpgan_v1.4", weights_dir=tmp_path)


def test_install_fake_outside_an_override_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="override_registry"):
        install_fake("parsenet", b"x", tmp_path)
    assert not (tmp_path / "parsing_parsenet.pth").exists()


def test_install_fake_state_dict_loads_back_with_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    # A private default cache: the session-wide one would leak this fake into other tests.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = {"conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "conv.bias": torch.ones(2)}
    with override_registry():
        path = install_fake("raft_small", state, None)  # the default cache: $TORCH_HOME/hub/checkpoints here
        assert path == tmp_path / "torch" / "hub" / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
        loaded = torch.load(path_for("raft_small", verify=True), map_location="cpu", weights_only=True)
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor)
