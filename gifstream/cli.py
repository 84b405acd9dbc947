"""The ``gifstream`` command line: thin, it turns flags into options and calls the API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import __version__
from .allocator import tune_for_streaming
from .engine import ConfigError, Frame, GifstreamError, StreamInfo
from .options import FLOWS, PRECISIONS, RESTORERS, ProcessOptions, load_config, parse_metrics, parse_size

EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143


class Interrupted(Exception):
    """The run was stopped by a signal; carries the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"interrupted (exit {code})")
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_for_streaming()
    logging.basicConfig(format="gifstream: %(message)s", level=logging.INFO)
    # gifstream's own --max-* limits decide what is too large; Pillow's multi-line
    # warning would only break the one-line error output.
    warnings.filterwarnings("ignore", message=".*decompression bomb.*")
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
        return code
    except Interrupted as stop:
        return stop.code
    except KeyboardInterrupt:
        return EXIT_SIGINT
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_ERROR
    except GifstreamError as err:
        if _caused_by_broken_pipe(err):
            _silence_stdout()  # the reader went away (`… -o - | head`): nothing to report
            return EXIT_ERROR
        if getattr(args, "debug", False):
            raise
        print(f"gifstream: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(err, ConfigError) else EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gifstream", description="Streaming face enhancement for GIFs and videos.")
    parser.add_argument("--version", action="version", version=f"gifstream {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_process(commands)
    _add_info(commands)
    _add_demo(commands)
    _add_models(commands)
    _add_bench(commands)
    return parser


def _add_process(commands: Any) -> None:
    cmd = commands.add_parser("process", help="enhance a GIF, a video or a frame stream")
    cmd.add_argument("input", help="GIF, video file, folder of images, or - for standard input")
    cmd.add_argument("-o", "--output", required=True, help="output file or folder/, or - for standard output")
    add_process_options(cmd)
    cmd.set_defaults(handler=_process_command)


def add_process_options(cmd: argparse.ArgumentParser) -> None:
    """Flags that map onto ProcessOptions; absent flags keep the config file's or the default value."""
    s = argparse.SUPPRESS
    cmd.add_argument("--config", default=None, help="TOML preset: a path or a name from configs/ (flags override it)")
    cmd.add_argument("--format", default=s, help="output format: gif, mp4, webm, mkv, png, raw (default: extension)")
    cmd.add_argument("--overwrite", action="store_true", default=s, help="replace an existing output")
    cmd.add_argument("--restorer", choices=RESTORERS, default=s, help="face restorer (default auto)")
    cmd.add_argument("--scale", type=float, default=s, help="output scale (default 2, or 1 with --restorer none)")
    cmd.add_argument("--flow", choices=FLOWS, default=s, help="optical flow for temporal metrics (default dis)")
    cmd.add_argument(
        "--metrics",
        default=s,
        help="comma list of psnr,ssim,lpips,e_warp,tof,tlp, all, or none (default psnr,ssim,e_warp)",
    )
    cmd.add_argument("--detect-every", type=int, default=s, help="detect faces every N frames (default 1)")
    cmd.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=s,
        help="GFPGAN on a CPU: auto (default: bf16 autocast where the CPU has it natively, else fp32), fp32, or bf16",
    )
    cmd.add_argument(
        "--smooth-landmarks", action="store_true", default=s, help="GFPGAN: smooth face landmarks over time"
    )
    cmd.add_argument("--stabilize", action="store_true", default=s, help="reduce restoration flicker (needs --flow)")
    cmd.add_argument("--stabilize-strength", type=float, default=s, help="0-1, how much to blend (default 0.6)")
    cmd.add_argument("--batch", type=int, default=s, help="frames per batch for batched stages (default 1)")
    cmd.add_argument("--queue-depth", type=int, default=s, help="frames each inter-stage queue holds (default 4)")
    cmd.add_argument("--device", choices=("auto", "cpu", "cuda"), default=s, help="torch device (default auto)")
    cmd.add_argument("--size", type=parse_size, default=s, help="raw rgb24 input frame size WxH")
    cmd.add_argument("--fps", type=float, default=s, help="frame rate of raw input and image folders (default 10)")
    cmd.add_argument("--weights-dir", default=s, help="folder holding model weights (default: the cache)")
    cmd.add_argument("--fetch-weights", action="store_true", default=s, help="download missing weights")
    cmd.add_argument("--report", default=s, help="write a JSON report to this file")
    cmd.add_argument("--csv", default=s, help="stream per-frame metrics to this CSV file")
    cmd.add_argument("--plot", default=s, help="draw per-frame metrics to this PNG file")
    cmd.add_argument("--gif-quality", type=int, default=s, help="GIF quality 1-100 (default 90; 100 = exact palette)")
    cmd.add_argument("--gif-colors", type=int, default=s, help="palette size for GIF output (2-256)")
    cmd.add_argument(
        "--gif-dither", choices=("none", "ordered", "floyd-steinberg"), default=s, help="GIF dithering (default none)"
    )
    cmd.add_argument("--gif-palette", choices=("adaptive", "global"), default=s, help="GIF palette per frame or global")
    cmd.add_argument("--video-codec", default=s, help="video encoder (default libx264; libvpx-vp9 for WebM)")
    cmd.add_argument("--crf", type=int, default=s, help="video quality (lower is better)")
    cmd.add_argument("--no-audio", dest="audio", action="store_false", default=s, help="drop the input's audio")
    for limit in ("max-frame-pixels", "max-frames", "max-input-bytes", "max-total-pixels"):
        cmd.add_argument(f"--{limit}", type=int, default=s, help=f"input limit ({limit.replace('-', ' ')})")
    cmd.add_argument("-q", "--quiet", action="store_true", default=s, help="no progress bar")
    cmd.add_argument("--debug", action="store_true", help="show tracebacks")


_NOT_OPTIONS = {"input", "output", "config", "handler", "debug", "json"}


def options_from_args(args: argparse.Namespace) -> ProcessOptions:
    """Defaults, then the --config preset, then the flags given on the command line."""
    options = ProcessOptions()
    if args.config:
        options = options.merged(load_config(args.config), f"config {args.config}")
    given = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    if "metrics" in given:
        given["metrics"] = parse_metrics(given["metrics"])
    return options.merged(given, "command line")


def _process_command(args: argparse.Namespace) -> int:
    from .api import process_async

    options = options_from_args(args)
    report = run_until_signal(lambda: process_async(args.input, args.output, options, progress=_progress(options)))
    if args.output != "-" and not options.quiet:
        frames = report["frames"]
        print(
            f"gifstream: wrote {args.output}: {frames['count']} frames, {frames['width']}x{frames['height']}, "
            f"{report['throughput']['frames_per_s']} frames/s",
            file=sys.stderr,
        )
    return 0


def _progress(options: ProcessOptions) -> Callable[[StreamInfo], Callable[[Frame], None]] | None:
    if options.quiet or not sys.stderr.isatty():
        return None

    def start(info: StreamInfo) -> Callable[[Frame], None]:
        from tqdm import tqdm

        bar: list[tqdm[Any]] = []

        def advance(frame: Frame) -> None:
            # Made at the first frame, so messages from the stages' set-up come before it.
            if not bar:
                bar.append(tqdm(total=info.frame_count, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False))
            bar[0].update(1)
            if info.frame_count is not None and bar[0].n >= info.frame_count:
                bar[0].close()

        return advance

    return start


def run_until_signal(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine; SIGINT/SIGTERM cancel it (so outputs are cleaned up) and exit 130/143."""

    async def guarded() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []

        def stop(signum: int) -> None:
            received.append(signum)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await make()
        except asyncio.CancelledError:
            if received:
                raise Interrupted(EXIT_SIGTERM if received[0] == signal.SIGTERM else EXIT_SIGINT) from None
            raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    return asyncio.run(guarded())


def _add_info(commands: Any) -> None:
    cmd = commands.add_parser("info", help="describe a GIF or video: size, frames, durations, loop, alpha, audio")
    cmd.add_argument("input")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.add_argument("--size", type=parse_size, default=None, help="raw rgb24 input frame size WxH")
    cmd.add_argument("--fps", type=float, default=10.0)
    cmd.add_argument("--debug", action="store_true", help="show tracebacks")
    cmd.set_defaults(handler=_info_command)


def _info_command(args: argparse.Namespace) -> int:
    from .probe import describe_input

    description = describe_input(args.input, size=args.size, fps=args.fps)
    if args.json:
        print(json.dumps(description, indent=2))
    else:
        for key, value in description.items():
            print(f"{key:>14}: {value}")
    return 0


def _add_demo(commands: Any) -> None:
    cmd = commands.add_parser("demo", help="enhance a built-in sample GIF (a degraded astronaut portrait)")
    cmd.add_argument("-o", "--output", default="gifstream-demo.gif", help="where to write (replaced if present)")
    add_process_options(cmd)
    cmd.set_defaults(handler=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    from .api import process_async
    from .demo import demo_input

    source = demo_input()
    options = options_from_args(args).replace(overwrite=True)
    if options.report is None:
        options = options.replace(report=str(args.output) + ".json")
    print(f"gifstream: demo input {source}", file=sys.stderr)
    run_until_signal(lambda: process_async(str(source), args.output, options, progress=_progress(options)))
    print(f"gifstream: wrote {args.output} and its report {options.report}", file=sys.stderr)
    return 0


def _add_models(commands: Any) -> None:
    try:
        from .weights.cli import add_models_parser, run_models
    except ImportError:  # the weights package is optional at this layer
        return
    add_models_parser(commands)
    for name, sub in commands.choices.items():
        if name == "models":
            sub.set_defaults(handler=run_models)


def _add_bench(commands: Any) -> None:
    from .benchmark import add_bench_parser

    add_bench_parser(commands)


def _caused_by_broken_pipe(err: BaseException | None) -> bool:
    while err is not None:
        if isinstance(err, BrokenPipeError):
            return True
        err = err.__cause__ or err.__context__
    return False


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _silence_stdout() -> None:
    # A closed pipe (`gifstream ... -o - | head`): point stdout at devnull so the
    # interpreter's final flush does not raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def console_main() -> None:
    """The ``gifstream`` executable."""
    code = main()
    if _workers_still_busy():
        # A worker thread is still blocked (say, reading a pipe that sends
        # nothing). Cleanup has already run on the event loop; finalising the
        # interpreter under that thread would abort on the stream's lock, so
        # leave directly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _workers_still_busy() -> bool:
    return any(t.name.startswith("gifstream-") and t.is_alive() for t in threading.enumerate())


if __name__ == "__main__":
    console_main()
