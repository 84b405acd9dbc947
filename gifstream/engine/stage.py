"""The Stage contract and a base class for stages whose work blocks.

A stage receives batches of frames in index order and returns them (pixels
replaced, ``meta`` added to) in the same order. The runner owns queues,
batching and ordering; a stage only knows how to process a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .frame import Frame, StreamInfo
from .worker import ThreadWorker


@dataclass(slots=True)
class RunContext:
    """What every stage may need at set-up: the device and the stream's shape."""

    device: str = "cpu"  # "cpu" or "cuda[:N]", already resolved from "auto"
    info: StreamInfo | None = None
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Stage(Protocol):
    """One step of a pipeline.

    ``max_batch`` is the most frames ``process`` accepts at once (1 for stages
    that cannot batch). When ``needs_previous`` is true, ``process`` also gets
    the frame just before the batch's first one (None at the start of the
    stream), so consecutive pairs can be formed without the stage keeping
    frames alive itself.
    """

    name: str
    max_batch: int
    needs_previous: bool

    async def setup(self, ctx: RunContext) -> None: ...

    async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]: ...

    async def close(self) -> None: ...


class BlockingStage:
    """Base for stages whose work blocks (numpy, OpenCV, Pillow, torch).

    Subclasses implement :meth:`process_sync`; it runs on a single worker
    thread owned by the stage, so the event loop keeps feeding the other
    stages and the stage's own state (models, CUDA streams, buffers) is only
    ever touched from one thread.
    """

    name: str = "blocking"
    max_batch: int = 1
    needs_previous: bool = False

    def __init__(self) -> None:
        self._worker: ThreadWorker | None = None

    async def setup(self, ctx: RunContext) -> None:
        self._worker = ThreadWorker(f"gifstream-{self.name}")
        await self._run(self.setup_sync, ctx)

    async def process(self, batch: Sequence[Frame], previous: Frame | None) -> list[Frame]:
        result: list[Frame] = await self._run(self.process_sync, list(batch), previous)
        return result

    async def close(self) -> None:
        if self._worker is None:
            return
        try:
            await self._run(self.close_sync)
        finally:
            self._worker.shutdown()
            self._worker = None

    def setup_sync(self, ctx: RunContext) -> None:
        """Load models, pick threads; runs on the stage's worker thread."""

    def process_sync(self, batch: list[Frame], previous: Frame | None) -> list[Frame]:
        raise NotImplementedError

    def close_sync(self) -> None:
        """Release what setup_sync took; runs on the stage's worker thread."""

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._worker is None:
            raise RuntimeError(f"stage {self.name!r} used before setup()")
        return await self._worker.call(fn, *args)
