"""``gifstream models list | fetch | verify``: the weights cache from the command line.

``add_models_parser`` adds the ``models`` command to the main parser's
subparsers; ``run_models`` runs it and returns the exit code (0 ok, 1 a
download or verification failed, 2 a usage error). Errors are one line on
stderr, never a traceback (unless --debug).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.errors import ConfigError, GifstreamError
from .cache import WeightStatus, fetch_command, status_of, weights_status
from .fetch import fetch
from .registry import REGISTRY, get_entry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_models_parser(subparsers: Any) -> None:
    """Add ``models`` with its actions ``list``, ``fetch`` and ``verify`` to an argparse subparsers object."""
    models = subparsers.add_parser("models", help="list, download and verify model weights")
    models.set_defaults(handler=run_models, models_usage=models.format_usage())
    actions = models.add_subparsers(title="actions", dest="models_action", metavar="ACTION")

    listing = actions.add_parser("list", help="every known weights file, its SHA-256 and whether it is cached")
    _add_common(listing)

    fetching = actions.add_parser("fetch", help="download weights files (resumes, verifies SHA-256)")
    fetching.add_argument("names", nargs="*", metavar="NAME", help="registry names (see `gifstream models list`)")
    fetching.add_argument("--all", action="store_true", help="fetch every known file")
    fetching.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_common(fetching)

    verifying = actions.add_parser("verify", help="hash cached weights files; exit 1 on a mismatch")
    verifying.add_argument("names", nargs="*", metavar="NAME", help="registry names (default: every cached file)")
    _add_common(verifying)


def _add_common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--weights-dir", default=None, help="folder holding model weights (default: the caches)")
    cmd.add_argument("--debug", action="store_true", help="show tracebacks")


def run_models(args: argparse.Namespace) -> int:
    """Run the ``models`` action in ``args``; returns the exit code."""
    action = _ACTIONS.get(getattr(args, "models_action", None) or "")
    if action is None:
        usage = getattr(args, "models_usage", "usage: gifstream models {list,fetch,verify} ...\n")
        print(f"{usage.rstrip()}\ngifstream models: error: choose an action: list, fetch or verify", file=sys.stderr)
        return EXIT_USAGE
    try:
        return action(args)
    except GifstreamError as err:
        if getattr(args, "debug", False):
            raise
        _print_error(err)
        return EXIT_USAGE if isinstance(err, ConfigError) else EXIT_FAILED


def _list(args: argparse.Namespace) -> int:
    rows = [
        (s.entry.name, s.entry.filename, _megabytes(s.entry.size), s.entry.sha256, s.state, str(s.path))
        for s in weights_status(args.weights_dir)
    ]
    _print_table(("NAME", "FILE", "SIZE", "SHA-256", "CACHED", "PATH"), rows)
    return EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    names = _fetch_names(args)
    progress = False if args.quiet else None
    failures = 0
    for name in names:
        status = status_of(name, args.weights_dir, check_hash=True)
        if status.present and status.ok:
            print(f"{name}: {status.path} (already cached, SHA-256 verified)")
            continue
        try:
            path = fetch(name, weights_dir=args.weights_dir, progress=progress)
        except (GifstreamError, OSError) as err:
            if args.debug:
                raise
            _print_error(err)
            failures += 1
            continue
        print(f"{name}: {path} (downloaded, SHA-256 verified)")
    return EXIT_FAILED if failures else EXIT_OK


def _fetch_names(args: argparse.Namespace) -> list[str]:
    if args.all and args.names:
        raise ConfigError("models fetch: give either NAMEs or --all, not both")
    if not args.all and not args.names:
        raise ConfigError(f"models fetch: give one or more NAMEs or --all; known names: {', '.join(REGISTRY)}")
    names = list(REGISTRY) if args.all else list(dict.fromkeys(args.names))
    for name in names:
        get_entry(name)  # every name is checked before anything is downloaded
    return names


def _verify(args: argparse.Namespace) -> int:
    explicit = bool(args.names)
    names = list(dict.fromkeys(args.names)) if explicit else list(REGISTRY)
    for name in names:
        get_entry(name)
    failed: list[str] = []
    rows = []
    for status in (status_of(name, args.weights_dir, check_hash=True) for name in names):
        verdict = _verdict(status)
        # Without NAMEs only cached files are checked; a file asked for by name must be there.
        if verdict != "ok" and (status.present or explicit):
            failed.append(status.entry.name)
        rows.append((status.entry.name, verdict, str(status.path)))
    _print_table(("NAME", "RESULT", "PATH"), rows)
    if failed:
        commands = "; ".join(f"`{fetch_command(name, args.weights_dir)}`" for name in failed)
        print(
            f"gifstream: error: {len(failed)} weights file(s) failed verification; re-fetch: {commands}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _verdict(status: WeightStatus) -> str:
    if not status.present:
        return "not cached"
    if status.size != status.entry.size:
        return f"WRONG SIZE ({status.size} bytes, expected {status.entry.size})"
    return "ok" if status.hash_ok else "SHA-256 MISMATCH"


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _print_error(err: BaseException) -> None:
    print(f"gifstream: error: {' '.join(str(err).split())}", file=sys.stderr)


_ACTIONS: dict[str, Callable[[argparse.Namespace], int]] = {"list": _list, "fetch": _fetch, "verify": _verify}
