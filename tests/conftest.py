"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_testdata() -> Path | None:
    """../shared/testdata beside the checkout (or $GIFSTREAM_SHARED/testdata), if present."""
    root = Path(os.environ.get("GIFSTREAM_SHARED", REPO.parent / "shared"))
    data = root / "testdata"
    return data if data.is_dir() else None


SHARED_TESTDATA = _shared_testdata()


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    """Real files written by other projects; the test skips (visibly) when they are absent."""
    if SHARED_TESTDATA is None:
        pytest.skip("../shared/testdata is absent (it is not part of a user's clone)")
    return SHARED_TESTDATA


@pytest.fixture(autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test empty caches of its own, so no test reads a user's cache or another test's files."""
    home = tmp_path_factory.mktemp("gifstream-home")
    monkeypatch.setenv("GIFSTREAM_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
