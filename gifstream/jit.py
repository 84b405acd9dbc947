"""Per-pixel loops compiled by numba, loaded only when a loop first runs.

numba (and LLVM, 70 MB of shared library) is imported by the first call of
a registered loop, not by importing the module that defines it: a process
that only reads a GIF never pays for the compiler. Compiled code is cached
on disk beside the module (or in numba's user cache), so later processes
load it in milliseconds.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class CompiledLoops:
    """The loops of one module, compiled together on the first call of any of them.

    Use an instance as a decorator: ``loop = CompiledLoops(globals())`` then
    ``@loop`` on each function. Until the first call each name stands as a
    stub; the first call puts every loop's numba dispatcher under its name in
    ``namespace``, so loops that call one another find dispatchers when numba
    compiles them. A loop may call another module's loop as ``module.name``
    when that module's ``CompiledLoops`` is listed in ``uses``; its cached
    code is then dropped whenever that module's source changes (see
    :func:`forget_if_stale`).
    """

    def __init__(self, namespace: dict[str, Any], uses: tuple[CompiledLoops, ...] = ()) -> None:
        self._namespace = namespace
        self._uses = uses  # other modules' loops these call (as ``module.loop``): made ready first
        self._loops: list[Callable[..., Any]] = []
        self._lock = threading.Lock()
        self._compiled = False

    def __call__(self, function: Callable[..., Any]) -> Any:
        self._loops.append(function)
        namespace = self._namespace

        @functools.wraps(function)
        def first_call(*args: Any) -> Any:
            self.compile()
            return namespace[function.__name__](*args)

        return first_call

    def compile(self) -> None:
        """Replace every stub by its dispatcher (each compiles, or loads from the cache, at its first call)."""
        for used in self._uses:
            used.compile()
        with self._lock:
            if not self._compiled:
                dispatchers = [jit(function) for function in self._loops]
                if self._uses:
                    forget_if_stale(dispatchers, self.used_sources())
                for function, dispatcher in zip(self._loops, dispatchers, strict=True):
                    self._namespace[function.__name__] = dispatcher
                self._compiled = True

    def used_sources(self) -> list[Path]:
        """The source files of the loops these loops call, directly or through others."""
        files = {Path(inspect.getfile(function)) for used in self._uses for function in used._loops}
        for used in self._uses:
            files.update(used.used_sources())
        return sorted(files)


def forget_if_stale(dispatchers: list[Any], sources: list[Path]) -> None:
    """Drop the cached code of ``dispatchers`` when ``sources`` changed since it was cached.

    numba keys a cached loop to its own file only, but a loop that calls
    another module's loop holds a copy of that loop's code: after that other
    file changes (a ``git pull``, an edit), the cache would run the old code.
    A fingerprint of the other files is kept beside numba's cache files.
    """
    fingerprint = hashlib.sha256(b"".join(source.read_bytes() for source in sources)).hexdigest()
    for dispatcher in dispatchers:
        cache = getattr(dispatcher, "_cache", None)
        cache_path = getattr(cache, "cache_path", None)
        if cache is None or cache_path is None:
            continue  # not cached on disk: compiled afresh in every process
        function = dispatcher.py_func
        stamp = Path(cache_path) / f"{function.__module__}.{function.__qualname__}.uses"
        with contextlib.suppress(OSError):
            if stamp.read_text() == fingerprint:
                continue
        try:
            cache.flush()
        except OSError:
            cache.disable()  # cannot forget the old code: compile afresh in this process rather than run it
            continue
        with contextlib.suppress(OSError):
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(fingerprint)


def jit(function: Callable[..., Any]) -> Any:
    """``function`` compiled on first use, without the GIL, and cached on disk where numba can write."""
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:
        # No writable place for the cache (a read-only install and home): compile in each process instead.
        return numba.njit(nogil=True)(function)
