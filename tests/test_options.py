"""Options: defaults, TOML presets, precedence of flags, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gifstream.cli import build_parser, options_from_args
from gifstream.engine import ConfigError
from gifstream.options import METRICS, ProcessOptions, load_config, parse_metrics, parse_size


def parse(*argv: str) -> ProcessOptions:
    return options_from_args(build_parser().parse_args(["process", "in.gif", "-o", "out.gif", *argv]))


def test_defaults_restore_at_twice_the_size_with_dis_flow_and_basic_metrics() -> None:
    options = parse()
    assert (options.restorer, options.output_scale, options.flow) == ("auto", 2.0, "dis")
    assert options.metrics == ("psnr", "ssim", "e_warp")


def test_no_restorer_means_no_resize_unless_a_scale_is_given() -> None:
    assert parse("--restorer", "none").output_scale == 1.0
    assert parse("--restorer", "none", "--scale", "1.5").output_scale == 1.5


def test_a_preset_sets_options_and_flags_override_it(tmp_path: Path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text('[process]\nrestorer = "classic"\nmetrics = ["psnr"]\nqueue-depth = 9\n')
    options = parse("--config", str(preset), "--metrics", "ssim,tof")
    assert (options.restorer, options.queue_depth, options.metrics) == ("classic", 9, ("ssim", "tof"))


@pytest.mark.parametrize("name", ["offline", "quality", "passthrough"])
def test_every_shipped_preset_loads(name: str) -> None:
    options = ProcessOptions().merged(load_config(name), name)
    assert options.restorer in {"classic", "gfpgan", "none"}


def test_unknown_keys_and_bad_values_are_refused_with_the_option_named(tmp_path: Path) -> None:
    preset = tmp_path / "bad.toml"
    preset.write_text("[process]\nrestorrer = 'classic'\n")
    with pytest.raises(ConfigError, match=r"unknown option.*restorrer"):
        parse("--config", str(preset))
    with pytest.raises(ConfigError, match="--metrics must be one of"):
        parse("--metrics", "psnr,sharpness")
    with pytest.raises(ConfigError, match="--queue-depth must be >= 1"):
        parse("--queue-depth", "0")
    with pytest.raises(ConfigError, match="not found"):
        load_config("no-such-preset")
    (tmp_path / "broken.toml").write_text("restorer = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(tmp_path / "broken.toml"))


def test_metric_lists_and_sizes_parse() -> None:
    assert parse_metrics("none") == () and parse_metrics("all") == METRICS
    assert parse_metrics(" psnr , ssim ") == ("psnr", "ssim")
    assert parse_size("64x48") == (64, 48)
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_size("64by48")
