"""Process-wide allocator settings for ``python -m emulator serve`` (issue 9 item 10: memory).

The write path makes many short-lived Python objects on up to 64 request threads, with list buffers larger
than pymalloc's blocks. With glibc's defaults each thread gets its own malloc arena, and the mmap threshold
grows after the first large free, so freed request buffers stay in those heaps: with 64 threads that kept
tens of MiB resident per million rows after the rows themselves were freed.

:func:`configure_process_memory` caps the malloc arenas and fixes the mmap threshold (``mallopt(3)``:
``M_ARENA_MAX``, ``M_MMAP_THRESHOLD``); settings the operator gave in the environment (``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``) win. pyarrow's own pool (mimalloc) is kept: its jemalloc pool handed freed pages
back sooner (about 40-80 MiB less per million rows) but made each GROUP BY over Parquet snapshots fault its
pages in again (bench/ingest.py: p50 115-120 ms against 70-80), and the query times had to stay.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

#: glibc malloc arenas for the whole process (the default is 8 per core)
MALLOC_ARENAS = 2
#: allocations from this size up are mmap'd and returned to the system when freed (glibc's default starts
#: at 128 KiB but grows up to 32 MiB after the first large free, which is what kept request buffers resident)
MMAP_THRESHOLD = 128 * 1024
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


def configure_process_memory() -> list[str]:
    """Apply the settings above, once, before threads start. Returns what was applied (for the log);
    nothing when the C library is not glibc."""
    applied: list[str] = []
    if sys.platform.startswith("linux"):
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            mallopt = None if libc is None else getattr(libc, "mallopt", None)
        except OSError:
            mallopt = None
        if mallopt is not None:
            if "MALLOC_ARENA_MAX" not in os.environ and mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1:
                applied.append(f"malloc arenas {MALLOC_ARENAS}")
            if "MALLOC_MMAP_THRESHOLD_" not in os.environ and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1:
                applied.append(f"mmap threshold {MMAP_THRESHOLD // 1024} KiB")
    return applied
