"""Write-ahead log: one file per flush, framed and checksummed, replayed at startup.

Layout: ``<data_dir>/wal/<sequence:020d>.wal``. A file starts with :data:`MAGIC` and holds frames of
``<u32 big-endian payload length><u32 zlib.crc32 of payload><payload>``. A payload is a
:mod:`marshal`-encoded list of entries, each either

* a row entry ``(db_id, table_id, column_names, rows)``: rows that share one column list (the columns
  present in the written lines), each a tuple in that order (tags as str, field values, ``time`` as
  int ns); or
* a column entry ``(db_id, table_id, column_names, columns, num_rows)`` (format 2 only): the same rows
  stored column by column, ``columns[i]`` holding the ``num_rows`` values of ``column_names[i]``.

These are exactly the rows the flusher applies, so replay yields identical rows. Only plain
str/int/float/bool/None/list/tuple/dict values are written (marshal's stable format, the same across
CPython versions). Files are written as format 2 (:data:`MAGIC`, ``AICWAL02``); format 1 files
(:data:`MAGIC_V1`, row entries only) are still replayed.

A crash mid-write leaves a torn last frame (short or with a bad checksum): :func:`read_wal_file`
stops at it and reports the file as torn, and startup continues with what was complete. As in the
server, a WAL file is first written and fsynced (with its directory) and only then applied.
"""

from __future__ import annotations

import logging
import marshal
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.catalog import fsync_dir

log = logging.getLogger(__name__)

MAGIC = b"AICWAL02"
#: the first format (row entries only); still read
MAGIC_V1 = b"AICWAL01"
_MAGICS = (MAGIC, MAGIC_V1)
_HEADER = struct.Struct(">II")
_SUFFIX = ".wal"

#: (db_id, table_id, column names, rows); a row is a tuple in column-name order -- or, a column entry,
#: (db_id, table_id, column names, columns, num_rows); see :func:`entry_rows` and :func:`entry_num_rows`
WalEntry = tuple[Any, ...]


def entry_num_rows(entry: WalEntry) -> int:
    """The number of rows of a row or column entry."""
    return entry[4] if len(entry) == 5 else len(entry[3])


def entry_rows(entry: WalEntry) -> Any:
    """The rows of a row or column entry, as tuples in column-name order (an iterable)."""
    return zip(*entry[3], strict=True) if len(entry) == 5 else entry[3]


class WalCorrupt(Exception):
    """A WAL file whose header is not ours (not a torn tail: that is tolerated)."""


@dataclass
class WalFileContents:
    sequence: int
    entries: list[WalEntry]
    torn: bool


def encode_entries(entries: list[WalEntry]) -> bytes:
    payload = marshal.dumps(entries, 4)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


class Wal:
    """The WAL directory of one node. ``directory`` None disables it (memory object store)."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        existing = self.sequences()
        self.next_sequence = (existing[-1] + 1) if existing else 1

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def path_for(self, sequence: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{sequence:020d}{_SUFFIX}"

    def sequences(self) -> list[int]:
        """Sequence numbers of the WAL files on disk, ascending."""
        if self.directory is None:
            return []
        out = []
        for p in self.directory.iterdir():
            if p.suffix == _SUFFIX and p.stem.isdigit():
                out.append(int(p.stem))
        return sorted(out)

    def append(self, entries: list[WalEntry]) -> int:
        """Write one WAL file holding ``entries``, fsync it and the directory; return its sequence."""
        sequence = self.next_sequence
        self.next_sequence += 1
        if self.directory is None:
            return sequence
        path = self.path_for(sequence)
        data = MAGIC + encode_entries(entries)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.directory)
        return sequence

    def replay(self, after_sequence: int) -> Iterator[WalFileContents]:
        """Yield the contents of every WAL file with a sequence above ``after_sequence``, in order."""
        for seq in self.sequences():
            if seq <= after_sequence:
                continue
            contents = read_wal_file(self.path_for(seq), seq)
            if contents.torn:
                log.warning("WAL file %s ends with an incomplete frame; ignoring the tail", seq)
            yield contents

    def remove_through(self, sequence: int, keep: int = 0) -> int:
        """Delete WAL files up to and including ``sequence`` (covered by a snapshot), except the newest
        ``keep`` of them (the server's ``--snapshotted-wal-files-to-keep``). Returns the count removed."""
        covered = [seq for seq in self.sequences() if seq <= sequence]
        removed = 0
        for seq in covered[: max(0, len(covered) - keep)]:
            self.path_for(seq).unlink(missing_ok=True)
            removed += 1
        if removed and self.directory is not None:
            fsync_dir(self.directory)
        return removed


def _rust_floor(value: int, step: int) -> int:
    """``value - value % step`` with Rust's remainder (sign of the dividend): rounds toward zero."""
    rem = value % step if value >= 0 else -((-value) % step)
    return value - rem


@dataclass(frozen=True)
class WalPeriod:
    """One WAL file as the snapshot tracker sees it: its sequence and the min/max ``time`` (ns) it holds."""

    sequence: int
    min_time: int
    max_time: int


class SnapshotTracker:
    """When to snapshot, decided from the WAL files written since the last snapshot, as the server's
    ``SnapshotTracker`` (influxdb3_wal/src/snapshot_tracker.rs) decides it:

    * nothing happens until ``snapshot_size + snapshot_size // 2`` files are waiting (900 at the default
      ``--wal-snapshot-size 600``: at a 1 s flush, about every 15 minutes of steady writes);
    * with ``3 * snapshot_size`` files waiting, snapshot regardless of the data's times (forced);
    * otherwise snapshot only when the oldest waiting file holds data older than the newest file's
      ``max_time`` rounded down to ``gen1_duration_ns`` (``--gen1-duration``), so that data has "aged"
      into a closed gen1 window.

    The server then persists only the rows older than that marker; the emulator's snapshot persists every
    buffered row and covers every waiting file (a simplification: the same files become removable, and
    more, never fewer).
    """

    def __init__(self, snapshot_size: int, gen1_duration_ns: int):
        if gen1_duration_ns <= 0:
            raise ValueError("gen1 duration must be positive")
        self.snapshot_size = snapshot_size
        self.gen1_duration_ns = gen1_duration_ns
        self.periods: list[WalPeriod] = []

    def add(self, period: WalPeriod) -> None:
        """Record a WAL file written (or replayed) since the last snapshot."""
        self.periods.append(period)

    def clear(self) -> None:
        """Forget every waiting file (a snapshot covered them)."""
        self.periods.clear()

    def should_snapshot(self) -> bool:
        """Whether the waiting files call for a snapshot now (see the class docstring)."""
        periods = self.periods
        size = self.snapshot_size
        if not periods or len(periods) < size + size // 2:
            return False
        if len(periods) >= 3 * size:
            return True
        marker = _rust_floor(periods[-1].max_time, self.gen1_duration_ns)
        return periods[0].max_time < marker


def entries_time_range(entries: list[WalEntry]) -> tuple[int, int] | None:
    """(min, max) of the ``time`` values (ns) in WAL entries; None when they hold no rows."""
    lo: int | None = None
    hi: int | None = None
    for entry in entries:
        names = entry[2]
        try:
            pos = list(names).index("time")
        except ValueError:
            continue
        if len(entry) == 5:
            times = entry[3][pos]
        else:
            times = [row[pos] for row in entry[3]]
        if not times:
            continue
        elo, ehi = min(times), max(times)
        lo = elo if lo is None or elo < lo else lo
        hi = ehi if hi is None or ehi > hi else hi
    if lo is None or hi is None:
        return None
    return lo, hi


def read_wal_file(path: Path, sequence: int) -> WalFileContents:
    """Read every complete frame of a WAL file; an incomplete or corrupt tail marks it torn."""
    data = path.read_bytes()
    entries: list[WalEntry] = []
    if len(data) < len(MAGIC):
        return WalFileContents(sequence, entries, torn=True)
    if data[: len(MAGIC)] not in _MAGICS:
        raise WalCorrupt(f"{path} is not a WAL file")
    pos = len(MAGIC)
    torn = False
    while pos < len(data):
        if pos + _HEADER.size > len(data):
            torn = True
            break
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            torn = True
            break
        entries.extend(marshal.loads(payload))
        pos = start + length
    return WalFileContents(sequence, entries, torn)
