"""The C allocator's settings for a stream of frame-sized temporaries.

Each frame makes and drops many arrays of a frame's size or more (resized
copies, float planes, warped images, model activations). glibc serves blocks
that large with fresh pages from the system and returns them when they are
freed, so every frame pays the page faults (and the zeroing) again: at
480x270 the metrics alone fault in about 35 MB a frame, a third of their CPU
time. Asking glibc to keep freed memory for reuse removes nearly all of it;
the memory a run holds still does not grow with its length, because every
frame needs the same blocks again.

Stages run on threads of their own, and glibc gives each thread an arena of
its own made of 64 MiB heaps. A block larger than that (a 512x512 face's
128-channel activation in GFPGAN is 128 MiB; so is a float 4K frame) cannot
live in such a heap, so glibc maps it fresh and unmaps it on free whatever
the thresholds say: GFPGAN and ParseNet on a worker thread faulted in about
4 GB a face. One arena for every thread keeps those blocks too.

The setting is process-wide, so the library never changes it by itself:
``gifstream`` the command applies it at start (set ``GIFSTREAM_SYSTEM_MALLOC=1``
to leave the allocator as it is), and a service embedding gifstream may call
:func:`keep_freed_memory` once at start-up.
"""

from __future__ import annotations

import ctypes
import os

SYSTEM_MALLOC_ENV = "GIFSTREAM_SYSTEM_MALLOC"
# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Blocks below this come from the reusable heap instead of fresh mappings (a 4K RGB float32 frame is 95 MB).
MMAP_THRESHOLD = 256 * 2**20
# Free memory at the top of the heap kept for reuse instead of being returned to the system.
TRIM_THRESHOLD = 1024 * 2**20


def keep_freed_memory(one_arena: bool = True) -> bool:
    """Ask glibc to keep freed memory for reuse; False where the C library is not glibc (nothing changed).

    ``one_arena``: every thread allocates from the main heap (see the module's
    docstring); it only affects threads that have not allocated yet, so call
    this before starting any. False keeps glibc's arena per thread (to measure
    the difference).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = [(_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    if one_arena:
        settings.append((_M_ARENA_MAX, 1))
    return all(mallopt(parameter, value) for parameter, value in settings)


def tune_for_streaming() -> bool:
    """What the ``gifstream`` command does at start: :func:`keep_freed_memory` unless the environment opts out."""
    if os.environ.get(SYSTEM_MALLOC_ENV, "").strip() not in ("", "0"):
        return False
    return keep_freed_memory()
