"""Fuzz the GIF reader with mutated real GIFs: every input must decode, or fail with a clean InputError.

Seeds are the small GIFs of ../shared/testdata/gif-conformance (other projects' decoder
tests). Each case is one seeded mutation of one seed — bit flips, byte insertion and
deletion, truncation, block splicing between files, header field edits (screen and frame
sizes, LZW code size, colour-table sizes, delays, loop counts, sub-block lengths) and block
repetition — fed to GifSource (open, every frame, every delay) in a worker process. A case
that takes longer than --timeout seconds is a hang: its worker is killed and replaced.

Outcomes:
  ok     decoded, and every frame matches Pillow's own reading of the same bytes (GifSource
         promises Pillow's compositing): count, delays, pixels and alpha, and the header walk
         that checks the limits saw the same frames and delays
  clean  InputError with a one-line message
  limit  LimitExceededError naming the option (--max-...) that refused the input
  wrong  decoded but different from Pillow's reading, or a malformed frame, or refused only by
         Pillow's own decompression-bomb check (a limit that was passed by, not enforced)
  crash  any other exception, or the worker process dying
  hang   no answer within --timeout seconds
Decoding is capped with Limits so that no case can spend much memory or time legitimately;
workers also run under an address-space limit, so an allocation a limit should have
prevented shows up as a crash (MemoryError) instead of swapping.

    ./run bench fuzz_gif.py --cases 10000 --seed 1
    ./run bench fuzz_gif.py --seed 1 --replay 1234      # one case in this process, with its traceback
    ./run bench fuzz_gif.py --seed 1 --save 1234 x.gif  # write one case's bytes to a file
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import resource
import selectors
import shlex
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gifstream.engine import Frame, InputError, LimitExceededError, StreamInfo
from gifstream.io.gif import GifSource
from gifstream.io.limits import Limits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = Path(os.environ.get("GIFSTREAM_SHARED", REPO.parent / "shared")) / "testdata" / "gif-conformance"
OUTCOMES = ("ok", "clean", "limit", "wrong", "crash", "hang")

# --------------------------------------------------------------------------- seeds and GIF structure


@dataclass(frozen=True, slots=True)
class Seed:
    name: str
    data: bytes


def load_seeds(folder: Path, max_bytes: int = 48 * 1024) -> list[Seed]:
    """Every GIF under ``folder`` of at most ``max_bytes``, in a fixed order (so a seed number means one case)."""
    paths = sorted(p for p in folder.rglob("*.gif") if p.is_file() and 0 < p.stat().st_size <= max_bytes)
    if not paths:
        raise SystemExit(f"fuzz_gif: no GIF of at most {max_bytes} bytes under {folder}")
    return [Seed(str(p.relative_to(folder)), p.read_bytes()) for p in paths]


@dataclass(frozen=True, slots=True)
class Block:
    start: int
    end: int
    kind: str  # "header", "image", "extension", "trailer"


@dataclass(frozen=True, slots=True)
class Field:
    offset: int
    size: int  # bytes, little-endian
    name: str


def _sub_blocks_end(data: bytes, position: int, lengths: list[int] | None = None) -> int:
    """Offset just past the sub-block chain starting at ``position`` (tolerates a cut-short chain)."""
    while position < len(data):
        length = data[position]
        if lengths is not None:
            lengths.append(position)
        position += 1 + length
        if length == 0:
            break
    return min(position, len(data))


def walk(data: bytes) -> tuple[list[Block], list[Field]]:
    """The blocks of a GIF and the header fields a decoder trusts, as far as the structure can be followed."""
    if len(data) < 13:
        return [], []
    fields = [Field(6, 2, "screen width"), Field(8, 2, "screen height"), Field(10, 1, "screen flags")]
    fields += [Field(11, 1, "background index"), Field(12, 1, "aspect ratio")]
    position = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    blocks = [Block(0, min(position, len(data)), "header")]
    while position < len(data):
        start, introducer = position, data[position]
        if introducer == 0x3B:
            blocks.append(Block(start, start + 1, "trailer"))
            break
        lengths: list[int] = []
        if introducer == 0x21 and position + 1 < len(data):
            label = data[position + 1]
            if label == 0xF9:
                fields += [
                    Field(start + 3, 1, "GCE flags"),
                    Field(start + 4, 2, "delay"),
                    Field(start + 6, 1, "GCE transparent index"),
                ]
            if label == 0xFF and data[start + 3 : start + 14] == b"NETSCAPE2.0":
                fields.append(Field(start + 16, 2, "loop count"))
            position = _sub_blocks_end(data, position + 2, lengths)
            kind = "extension"
        elif introducer == 0x2C and position + 10 <= len(data):
            names = ("frame left", "frame top", "frame width", "frame height")
            fields += [Field(start + 1 + 2 * i, 2, name) for i, name in enumerate(names)]
            flags = data[start + 9]
            fields.append(Field(start + 9, 1, "frame flags"))
            position = start + 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            fields.append(Field(position, 1, "LZW minimum code size"))
            position = _sub_blocks_end(data, position + 1, lengths)
            kind = "image"
        else:
            break  # not a block a decoder knows: the rest is junk
        fields += [Field(offset, 1, "sub-block length") for offset in lengths[:3]]
        blocks.append(Block(start, min(position, len(data)), kind))
    return blocks, [f for f in fields if f.offset + f.size <= len(data)]


# --------------------------------------------------------------------------- mutations

Mutator = Callable[[random.Random, bytes, Sequence[Seed]], bytes]
_INTERESTING = (0, 1, 2, 7, 8, 9, 11, 12, 13, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)


def _position(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def flip_bits(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    out = bytearray(data)
    for _ in range(min(len(out), 1 + int(rng.expovariate(0.5)))):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def insert_bytes(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    at = _position(rng, data)
    if data and rng.random() < 0.5:  # a copy of nearby bytes looks more like real structure than noise
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.randint(1, 64)]
    else:
        chunk = rng.randbytes(rng.randint(1, 16))
    return data[:at] + chunk + data[at:]


def delete_bytes(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    at = _position(rng, data)
    return data[:at] + data[at + rng.randint(1, 32) :]


def truncate(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    return data[: _position(rng, data)]


def _other_block(rng: random.Random, seeds: Sequence[Seed]) -> bytes:
    donor = rng.choice(seeds).data
    blocks = [b for b in walk(donor)[0] if b.kind in ("image", "extension")]
    if not blocks:
        return rng.randbytes(8)
    block = rng.choice(blocks)
    return donor[block.start : block.end]


def splice_block(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    """Replace one block with a block of another file, or insert one at a block boundary."""
    blocks = [b for b in walk(data)[0] if b.kind != "header"]
    donor = _other_block(rng, seeds)
    if blocks and rng.random() < 0.5:
        block = rng.choice(blocks)
        return data[: block.start] + donor + data[block.end :]
    boundaries = [b.start for b in blocks] or [len(data)]
    at = rng.choice(boundaries)
    return data[:at] + donor + data[at:]


def cross_over(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    """This file up to one of its block boundaries, then another file from one of its own."""
    donor = rng.choice(seeds).data
    mine = [b.start for b in walk(data)[0][1:]] + [len(data)]
    theirs = [b.start for b in walk(donor)[0][1:]] + [len(donor)]
    return data[: rng.choice(mine)] + donor[rng.choice(theirs) :]


def repeat_block(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    blocks = [b for b in walk(data)[0] if b.kind in ("image", "extension")]
    if not blocks:
        return flip_bits(rng, data, seeds)
    block = rng.choice(blocks)
    copies = rng.choice((2, 3, 10, 100, 400))
    return data[: block.end] + data[block.start : block.end] * (copies - 1) + data[block.end :]


def edit_field(rng: random.Random, data: bytes, seeds: Sequence[Seed]) -> bytes:
    fields = walk(data)[1]
    if not fields:
        return flip_bits(rng, data, seeds)
    target = rng.choice(fields)
    old = int.from_bytes(data[target.offset : target.offset + target.size], "little")
    choice = rng.random()
    if choice < 0.5:
        value = rng.choice(_INTERESTING)
    elif choice < 0.75:
        value = old + rng.choice((-2, -1, 1, 2))
    else:
        value = rng.getrandbits(8 * target.size)
    value %= 1 << (8 * target.size)
    return data[: target.offset] + value.to_bytes(target.size, "little") + data[target.offset + target.size :]


MUTATORS: dict[str, Mutator] = {
    "flip_bits": flip_bits,
    "insert_bytes": insert_bytes,
    "delete_bytes": delete_bytes,
    "truncate": truncate,
    "splice_block": splice_block,
    "cross_over": cross_over,
    "repeat_block": repeat_block,
    "edit_field": edit_field,
}
# Field edits and splices reach the decoder's trust in the header; plain byte noise mostly fails early.
_WEIGHTS = {"flip_bits": 3, "insert_bytes": 1, "delete_bytes": 1, "truncate": 2, "splice_block": 2}
_WEIGHTS |= {"cross_over": 1, "repeat_block": 1, "edit_field": 4}


@dataclass(frozen=True, slots=True)
class Case:
    index: int
    seed_name: str
    mutations: tuple[str, ...]
    data: bytes


def make_case(seeds: Sequence[Seed], seed: int, index: int) -> Case:
    """Case ``index`` of run ``seed``: the same bytes every time, on any machine."""
    rng = random.Random(f"gifstream-fuzz:{seed}:{index}")
    base = rng.choice(seeds)
    data = base.data
    names = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=1 + min(3, int(rng.expovariate(1.2))))
    for name in names:
        data = MUTATORS[name](rng, data, seeds)
    return Case(index, base.name, tuple(names), data)


# --------------------------------------------------------------------------- running one case


def fuzz_limits() -> Limits:
    """Limits small enough that no case may spend much time or memory, large enough for every seed."""
    return Limits(max_frame_pixels=2_000_000, max_frames=2_000, max_total_pixels=10_000_000)


@dataclass(slots=True)
class Result:
    outcome: str
    detail: str = ""
    frames: int = 0
    seconds: float = 0.0


def _frame_problem(frame: Frame, position: int, info: StreamInfo) -> str | None:
    """What is wrong with a decoded frame, if anything (shape, type, layout, index, timing)."""
    pixels, alpha = frame.pixels, frame.alpha
    size = (info.height, info.width)
    if frame.index != position:
        return f"frame {position} has index {frame.index}"
    if pixels.dtype != np.uint8 or pixels.shape != (*size, 3) or not pixels.flags.c_contiguous:
        return f"frame {position} pixels {pixels.dtype} {pixels.shape} for a {size} screen"
    if info.has_alpha != (alpha is not None):
        return f"frame {position} alpha is {type(alpha).__name__} though has_alpha={info.has_alpha}"
    if alpha is not None and (alpha.dtype != np.uint8 or alpha.shape != size):
        return f"frame {position} alpha {alpha.dtype} {alpha.shape} for a {size} screen"
    duration = frame.duration_ms
    if duration is None or not math.isfinite(duration) or duration < 0:
        return f"frame {position} duration {duration}"
    return None


def _pillow_frames(data: bytes, width: int, height: int) -> Iterator[tuple[np.ndarray, float]]:
    """Each frame as Pillow itself composites it (RGBA, cropped to the screen), with its delay: the oracle."""
    with Image.open(io.BytesIO(data), formats=["GIF"]) as image:
        for index in range(1_000_000):
            try:
                image.seek(index)
            except EOFError:
                return
            yield np.asarray(image.convert("RGBA"))[:height, :width], float(image.info.get("duration", 0))


def _differs(frame: Frame, reference: tuple[np.ndarray, float], walked_ms: float | None, index: int) -> str | None:
    """How a decoded frame differs from Pillow's own rendering and the header walk's delay, if it does."""
    rgba, duration = reference
    if frame.duration_ms != duration or walked_ms != duration:
        return f"frame {index} lasts {frame.duration_ms} ms, header walk {walked_ms}, Pillow {duration}"
    if not np.array_equal(frame.pixels, rgba[..., :3]):
        return f"frame {index} pixels differ from Pillow's"
    alpha = frame.alpha if frame.alpha is not None else np.full(rgba.shape[:2], 255, np.uint8)
    if not np.array_equal(alpha, rgba[..., 3]):
        return f"frame {index} alpha differs from Pillow's"
    return None


def _check_frames(source: GifSource, info: StreamInfo, data: bytes, check: bool) -> tuple[int, str | None]:
    """Decode every frame, each checked for form and (with ``check``) against Pillow, one at a time."""
    frames = source.frames()
    walked = iter(source.durations_ms())
    reference = _pillow_frames(data, info.width, info.height) if check else None
    count = 0
    for position, frame in enumerate(frames):
        problem = _frame_problem(frame, position, info)
        if problem is None and reference is not None:
            expected = next(reference, None)
            if expected is None:
                return count, f"frame {position} decoded, which Pillow does not have"
            problem = _differs(frame, expected, next(walked, None), position)
        if problem is not None:
            return count, problem
        count += 1
    if count != info.frame_count:
        return count, f"{count} frames decoded, {info.frame_count} announced"
    if reference is not None and next(reference, None) is not None:
        return count, f"{count} frames decoded; Pillow has more"
    if check and next(walked, None) is not None:
        return count, f"{count} frames decoded; the header walk has more delays"
    return count, None


def run_case(data: bytes, limits: Limits | None = None, check: bool = True) -> Result:
    """Open ``data`` with GifSource, decode every frame and read every delay; classify what happened.

    With ``check``, a decoded input is also compared, frame by frame, with Pillow's own
    reading of it (frame count, delays, pixels and alpha), which GifSource promises to match.
    """
    started = time.perf_counter()
    source = GifSource(io.BytesIO(data), limits=limits or fuzz_limits())
    try:
        info = source.open()
        count, problem = _check_frames(source, info, data, check)
        result = Result("ok", frames=count) if problem is None else Result("wrong", problem, count)
    except LimitExceededError as exc:
        message = str(exc)
        if "\n" in message:
            result = Result("crash", f"multi-line: {exc!r}")
        elif "--max-" not in message:
            # Pillow's own decompression-bomb check fired: the limits were passed by, not enforced.
            result = Result("wrong", f"a limit no option names: {message}")
        else:
            result = Result("limit", message)
    except InputError as exc:
        message = str(exc)
        result = (
            Result("clean", message) if message and "\n" not in message else Result("crash", f"bad message {exc!r}")
        )
    except Exception as exc:  # what the fuzzer is here to find
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result = Result("crash", f"{type(exc).__name__}: {exc} [{Path(where.filename).name}:{where.lineno}]")
    finally:
        source.close()
    result.seconds = time.perf_counter() - started
    return result


def _peak_rss_kb() -> int:
    """This process's own peak RSS in KiB.

    Linux's ru_maxrss survives fork and exec, so a worker started from a big
    parent (a test run that loaded torch) would report the parent's peak;
    VmHWM belongs to the worker's own address space.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker_main(seeds_dir: Path, max_seed_bytes: int, seed: int, memory_mb: int, delay_s: float = 0.0) -> None:
    """Answer case numbers read from stdin with one JSON line each, until stdin closes.

    ``delay_s`` stalls every case that long first: a stand-in hang, to test the watchdog.
    """
    seeds = load_seeds(seeds_dir, max_seed_bytes)
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")  # a warning is not an outcome; the limits decide
    print(json.dumps({"ready": True, "rss_kb": _peak_rss_kb()}), flush=True)
    limits = fuzz_limits()
    for line in sys.stdin:
        index = int(line)
        time.sleep(delay_s)
        case = make_case(seeds, seed, index)
        result = run_case(case.data, limits)
        reply = {"index": index, "outcome": result.outcome, "detail": result.detail[:300], "frames": result.frames}
        reply |= {"seconds": round(result.seconds, 4), "rss_kb": _peak_rss_kb()}
        print(json.dumps(reply), flush=True)


# --------------------------------------------------------------------------- running many cases


@dataclass(slots=True)
class Summary:
    cases: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    by_mutation: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (case, outcome, what happened)
    seconds: float = 0.0
    peak_rss_kb: int = 0
    baseline_rss_kb: int = 0
    slowest: tuple[float, int] = (0.0, -1)

    def add(self, case: Case, outcome: str, detail: str = "", seconds: float = 0.0) -> None:
        self.cases += 1
        self.counts[outcome] += 1
        for name in set(case.mutations):
            self.by_mutation.setdefault(name, Counter())[outcome] += 1
        if outcome in ("wrong", "crash", "hang"):
            where = f"seed {case.seed_name}, {'+'.join(case.mutations)}"
            self.failures.append((case.index, outcome, f"{detail} ({where})" if detail else where))
        self.slowest = max(self.slowest, (seconds, case.index))


class _Worker:
    """One worker process, answering one case at a time."""

    def __init__(self, command: list[str]) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.case: Case | None = None
        self.deadline = math.inf

    def send(self, case: Case, timeout: float) -> None:
        self.case, self.deadline = case, time.monotonic() + timeout
        self.stdin.write(f"{case.index}\n")
        self.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.stdin, self.stdout):
            stream.close()


def fuzz(
    cases: int,
    seed: int,
    *,
    workers: int = 2,
    timeout: float = 5.0,
    seeds_dir: Path = DEFAULT_SEEDS,
    max_seed_bytes: int = 48 * 1024,
    memory_mb: int = 1024,
    progress: Callable[[Summary], None] | None = None,
    worker_delay_s: float = 0.0,
) -> Summary:
    """Run cases 0..cases-1 of run ``seed`` on ``workers`` processes and count their outcomes."""
    seeds = load_seeds(seeds_dir, max_seed_bytes)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--seed", str(seed)]
    command += ["--seeds-dir", str(seeds_dir), "--max-seed-bytes", str(max_seed_bytes), "--memory-mb", str(memory_mb)]
    command += ["--worker-delay", str(worker_delay_s)]
    summary = Summary()
    started = time.perf_counter()
    pending: Iterator[int] = iter(range(cases))
    selector = selectors.DefaultSelector()
    pool: list[_Worker] = []

    def start_worker() -> None:
        worker = _Worker(command)
        ready = json.loads(worker.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise SystemExit("fuzz_gif: a worker failed to start")
        summary.baseline_rss_kb = max(summary.baseline_rss_kb, ready["rss_kb"])
        pool.append(worker)
        selector.register(worker.stdout, selectors.EVENT_READ, worker)
        feed(worker)

    def feed(worker: _Worker) -> None:
        index = next(pending, None)
        if index is None:
            worker.case, worker.deadline = None, math.inf
            return
        worker.send(make_case(seeds, seed, index), timeout)

    def retire(worker: _Worker) -> None:
        selector.unregister(worker.stdout)
        pool.remove(worker)
        worker.stop()

    try:
        for _ in range(max(1, min(workers, cases))):
            start_worker()
        while any(w.case is not None for w in pool):
            now = time.monotonic()
            wait = max(0.0, min(w.deadline for w in pool) - now)
            for key, _ in selector.select(timeout=wait):
                worker = key.data
                line = worker.stdout.readline()
                case = worker.case
                assert case is not None
                if not line:  # the worker died (a crash of the interpreter itself)
                    code = worker.process.wait()
                    summary.add(case, "crash", f"worker died with exit code {code}")
                    retire(worker)
                    start_worker()
                    continue
                reply = json.loads(line)
                summary.peak_rss_kb = max(summary.peak_rss_kb, reply["rss_kb"])
                summary.add(case, reply["outcome"], reply["detail"], reply["seconds"])
                feed(worker)
            for worker in [w for w in pool if time.monotonic() > w.deadline]:
                assert worker.case is not None  # an idle worker's deadline is infinite
                summary.add(worker.case, "hang", seconds=timeout)
                retire(worker)
                start_worker()
            if progress is not None:
                progress(summary)
    finally:
        for worker in list(pool):
            retire(worker)
        selector.close()
    summary.seconds = time.perf_counter() - started
    return summary


# --------------------------------------------------------------------------- command line


def format_summary(summary: Summary, command: str) -> str:
    counts = summary.counts
    rate = summary.cases / max(summary.seconds, 1e-9)
    lines = [
        f"command: {command}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        "| cases | ok | clean InputError | LimitExceededError | wrong | crashes | hangs | time s | cases/s"
        " | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {summary.cases} | {counts['ok']} | {counts['clean']} | {counts['limit']} | {counts['wrong']} "
        f"| {counts['crash']} | {counts['hang']} | {summary.seconds:.1f} | {rate:.1f} "
        f"| {summary.peak_rss_kb / 1024:.1f} (idle worker {summary.baseline_rss_kb / 1024:.1f}) |",
        "",
        "| mutation | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---:|" * len(OUTCOMES),
    ]
    for name in MUTATORS:
        row = summary.by_mutation.get(name, Counter())
        lines.append(f"| {name} | " + " | ".join(str(row[o]) for o in OUTCOMES) + " |")
    lines += ["", f"slowest case: {summary.slowest[1]} ({summary.slowest[0]:.2f} s)"]
    lines += [f"{outcome}: case {index}: {detail}" for index, outcome, detail in summary.failures[:50]]
    return "\n".join(lines)


def _replay(seeds_dir: Path, max_seed_bytes: int, seed: int, index: int) -> None:
    case = make_case(load_seeds(seeds_dir, max_seed_bytes), seed, index)
    print(f"case {index}: seed {case.seed_name}, {'+'.join(case.mutations)}, {len(case.data)} bytes")
    source = GifSource(io.BytesIO(case.data), limits=fuzz_limits())
    try:
        info = source.open()
        print(info)
        count = sum(1 for _ in source.frames())
        print(f"{count} frames; delays {list(source.durations_ms())[:20]}")
    finally:
        source.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds after which a case counts as a hang")
    parser.add_argument("--seeds-dir", type=Path, default=DEFAULT_SEEDS)
    parser.add_argument("--max-seed-bytes", type=int, default=48 * 1024)
    parser.add_argument("--memory-mb", type=int, default=1024, help="address-space limit of each worker (0: none)")
    parser.add_argument("--replay", type=int, metavar="CASE", help="run one case here and show its traceback")
    parser.add_argument("--save", nargs=2, metavar=("CASE", "FILE"), help="write one case's bytes to FILE")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.seeds_dir, args.max_seed_bytes, args.seed, args.memory_mb, args.worker_delay)
        return 0
    if args.replay is not None:
        _replay(args.seeds_dir, args.max_seed_bytes, args.seed, args.replay)
        return 0
    if args.save:
        case = make_case(load_seeds(args.seeds_dir, args.max_seed_bytes), args.seed, int(args.save[0]))
        Path(args.save[1]).write_bytes(case.data)
        return 0
    last_report = [time.monotonic()]

    def progress(summary: Summary) -> None:
        if time.monotonic() - last_report[0] > 10:
            last_report[0] = time.monotonic()
            counts = ", ".join(f"{o} {summary.counts[o]}" for o in OUTCOMES)
            print(f"{summary.cases}/{args.cases}: {counts}", file=sys.stderr, flush=True)

    summary = fuzz(
        args.cases,
        args.seed,
        workers=args.workers,
        timeout=args.timeout,
        seeds_dir=args.seeds_dir,
        max_seed_bytes=args.max_seed_bytes,
        memory_mb=args.memory_mb,
        progress=progress,
    )
    command = shlex.join(["python", "bench/fuzz_gif.py", *(argv if argv is not None else sys.argv[1:])])
    print(format_summary(summary, command))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
