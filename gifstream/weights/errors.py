"""Errors about model weight files; each message is one line that says what to do."""

from __future__ import annotations

from ..engine.errors import GifstreamError, InputError


class WeightsMissingError(InputError):
    """A weights file is not in the cache and fetching was not allowed."""


class WeightsHashError(GifstreamError, ValueError):
    """A weights file has the wrong size or SHA-256 (a bad download or a tampered cache)."""


class WeightsFetchError(GifstreamError, OSError):
    """A weights file could not be downloaded (no route, DNS, refused, dropped connection, HTTP error)."""
