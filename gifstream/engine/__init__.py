"""gifstream's core: frames, the Stage contract, bounded queues, batching and the runner.

It imports no model, image or container library, so it can run a pipeline of
pure-Python stages and is tested that way.
"""

from .errors import (
    ConfigError,
    GifstreamError,
    InputError,
    LimitExceededError,
    OutputError,
    StageError,
)
from .frame import Frame, StreamInfo
from .io import Sink, Source, iterate_in_thread, run
from .runner import Pipeline, RunnerConfig, RunStats, StageStats
from .stage import BlockingStage, RunContext, Stage
from .worker import ThreadWorker

__all__ = [
    "BlockingStage",
    "ConfigError",
    "Frame",
    "GifstreamError",
    "InputError",
    "LimitExceededError",
    "OutputError",
    "Pipeline",
    "RunContext",
    "RunStats",
    "RunnerConfig",
    "Sink",
    "Source",
    "Stage",
    "StageError",
    "StageStats",
    "StreamInfo",
    "ThreadWorker",
    "iterate_in_thread",
    "run",
]
