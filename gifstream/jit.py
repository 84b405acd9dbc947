"""Per-pixel loops compiled by numba, loaded only when a loop first runs.

numba (and LLVM, 70 MB of shared library) is imported by the first call of
a registered loop, not by importing the module that defines it: a process
that only reads a GIF never pays for the compiler. Compiled code is cached
on disk beside the module (or in numba's user cache), so later processes
load it in milliseconds.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class CompiledLoops:
    """The loops of one module, compiled together on the first call of any of them.

    Use an instance as a decorator: ``loop = CompiledLoops(globals())`` then
    ``@loop`` on each function. Until the first call each name stands as a
    stub; the first call puts every loop's numba dispatcher under its name in
    ``namespace``, so loops that call one another find dispatchers when numba
    compiles them. A loop may call another module's loop as ``module.name``
    when that module's ``CompiledLoops`` is listed in ``uses``.
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
                for function in self._loops:
                    self._namespace[function.__name__] = jit(function)
                self._compiled = True


def jit(function: Callable[..., Any]) -> Any:
    """``function`` compiled on first use, without the GIL, and cached on disk where numba can write."""
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:
        # No writable place for the cache (a read-only install and home): compile in each process instead.
        return numba.njit(nogil=True)(function)
