"""Process-wide allocator settings for ``python -m emulator serve`` (issue 9 item 10: memory).

The buffers hold Arrow data, built and merged in large transient copies (each flush's rows, the first query's
merge of them); the write path makes many short-lived Python objects on up to 64 request threads. With the
defaults both allocators keep what they freed: pyarrow's mimalloc pool holds the merge copies, and glibc
gives each thread its own 64 MiB arena and raises its mmap threshold after the first large free, so freed
request buffers stay in the heap. Measured with ``bench/ingest.py``, that kept about 200 MiB per million rows
resident after the data itself had been freed.

:func:`configure_process_memory` therefore picks pyarrow's jemalloc pool, which hands freed pages back after a
short decay (``pyarrow.jemalloc_set_decay_ms``), and on glibc caps the malloc arenas and fixes the mmap
threshold (``mallopt(3)``: ``M_ARENA_MAX``, ``M_MMAP_THRESHOLD``). Settings the operator gave in the
environment (``ARROW_DEFAULT_MEMORY_POOL``, ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

#: jemalloc returns freed pages after this long (pyarrow's jemalloc_set_decay_ms)
JEMALLOC_DECAY_MS = 1000
#: glibc malloc arenas for the whole process (the default is 8 per core)
MALLOC_ARENAS = 2
#: allocations from this size up are mmap'd and returned to the system when freed (glibc's default starts
#: at 128 KiB but grows up to 32 MiB after the first large free, which is what kept request buffers resident)
MMAP_THRESHOLD = 128 * 1024
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


def configure_process_memory() -> list[str]:
    """Apply the settings above, once, before threads start. Returns what was applied (for the log);
    anything unavailable (no jemalloc in this pyarrow build, not glibc) is skipped."""
    applied: list[str] = []
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa

        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
            pa.jemalloc_set_decay_ms(JEMALLOC_DECAY_MS)
            applied.append(f"arrow pool jemalloc (decay {JEMALLOC_DECAY_MS} ms)")
        except (NotImplementedError, AttributeError, OSError) as exc:
            log.debug("jemalloc pool unavailable: %s", exc)
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
