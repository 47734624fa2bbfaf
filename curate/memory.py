"""Giving freed memory back to the operating system between the big phases of a scan.

CPython and numpy free into the C heap, and glibc keeps freed blocks in its arenas: after a
phase that built and dropped a few hundred MB of temporaries, the process's resident memory
stays at that phase's high-water mark. `trim()` asks glibc to return what it can (a no-op on
other C libraries and platforms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None


def trim() -> None:
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
