"""gifstream: streaming face enhancement for animated GIFs and video clips."""

__version__ = "0.1.0"
