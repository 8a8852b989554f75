"""Write-ahead log: one file per flush, framed and checksummed, replayed at startup.

Layout: ``<data_dir>/wal/<sequence:020d>.wal``. A file starts with :data:`MAGIC` and holds one frame
(the flush's entries): ``<u32 payload length><u32 zlib.crc32 of payload><u32 rows><u32 zlib.crc32 of
the 12 bytes before><payload>``, big-endian (format 3; formats 1 and 2 have only the first two fields, so
a damaged one cannot tell its row count). A payload is a :mod:`marshal`-encoded list of entries, each either

* a row entry ``(db_id, table_id, column_names, rows)``: rows that share one column list (the columns
  present in the written lines), each a tuple in that order (tags as str, field values, ``time`` as
  int ns); or
* a column entry ``(db_id, table_id, column_names, columns, num_rows)`` (format 2 only): the same rows
  stored column by column, ``columns[i]`` holding the ``num_rows`` values of ``column_names[i]``.

These are exactly the rows the flusher applies, so replay yields identical rows. Only plain
str/int/float/bool/None/list/tuple/dict values are written (marshal's stable format, the same across
CPython versions). Files are written as format 3 (:data:`MAGIC`, ``AICWAL03``); format 2 (column
entries, no row count) and format 1 (:data:`MAGIC_V1`, row entries only) files are still replayed.

Damage (issue 9 item 7). As in the server, a WAL file is first written and fsynced (with its directory)
and only then applied and acknowledged, and one flush at a time: so only the newest files can be damaged
by a crash (cut short, zero-filled, or without a frame), and their rows were never acknowledged as
durable. :meth:`Wal.replay` skips such a **torn tail** (the damaged files after the last intact one)
with a warning that counts its rows, and moves the files aside. A damaged file *followed by an intact
one* held acknowledged rows: replay raises :class:`emulator.errors.DamagedFileError` (file and byte
offset) unless ``repair`` is set, which moves the file aside and logs the rows lost.
"""

from __future__ import annotations

import logging
import marshal
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.catalog import fsync_dir
from emulator.errors import DamagedFileError

log = logging.getLogger(__name__)

MAGIC = b"AICWAL03"
#: the second format (column entries, no row count in the frame header); still read
MAGIC_V2 = b"AICWAL02"
#: the first format (row entries only); still read
MAGIC_V1 = b"AICWAL01"
_MAGICS = (MAGIC, MAGIC_V2, MAGIC_V1)
_HEADER = struct.Struct(">II")
_HEADER3 = struct.Struct(">IIII")
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


@dataclass(frozen=True)
class WalDamage:
    """Where and how a WAL file stops being readable. ``rows``: the rows of the damaged frame when its
    header still tells them (format 3), else None."""

    offset: int
    reason: str
    rows: int | None = None


@dataclass
class WalFileContents:
    """A WAL file's complete frames (``entries``) and, when it is damaged, where (``damage``)."""

    sequence: int
    entries: list[WalEntry]
    damage: WalDamage | None = None

    @property
    def torn(self) -> bool:
        return self.damage is not None


def encode_entries(entries: list[WalEntry]) -> bytes:
    """One format-3 frame holding ``entries`` (see the module docstring)."""
    payload = marshal.dumps(entries, 4)
    rows = sum(entry_num_rows(e) for e in entries)
    head = _HEADER.pack(len(payload), zlib.crc32(payload)) + struct.pack(">I", rows)
    return head + struct.pack(">I", zlib.crc32(head)) + payload


def rows_text(rows: int | None) -> str:
    """``"12 rows"``, or the words for a count the damaged file no longer tells."""
    if rows is None:
        return "an unknown number of rows"
    return f"{rows} row" if rows == 1 else f"{rows} rows"


class SetAside:
    """Moves damaged files out of the way, into ``<data_dir>/damaged/<UTC start time>/<same relative
    path>``, so nothing is deleted and the next start does not trip over them again."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._dir: Path | None = None

    @property
    def directory(self) -> Path:
        if self._dir is None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            base = self.data_dir / "damaged" / stamp
            n = 1
            while base.exists():
                n += 1
                base = self.data_dir / "damaged" / f"{stamp}-{n}"
            self._dir = base
        return self._dir

    def move(self, path: Path) -> Path:
        """Move ``path`` (a file or directory under the data dir) aside; returns where it went."""
        target = self.directory / path.relative_to(self.data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        fsync_dir(target.parent)
        fsync_dir(path.parent)
        return target


class Wal:
    """The WAL directory of one node. ``directory`` None disables it (memory object store)."""

    def __init__(self, directory: Path | None, set_aside: SetAside | None = None):
        self.directory = directory
        self.set_aside = set_aside or (SetAside(directory.parent) if directory is not None else None)
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
        except BaseException:
            # never acknowledged: leave no partial file that a later intact one would make look acknowledged
            os.close(fd)
            fd = -1
            try:
                path.unlink(missing_ok=True)
            except OSError:
                log.warning("could not remove the partial WAL file %s", path)
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        fsync_dir(self.directory)
        return sequence

    def replay(self, after_sequence: int, *, repair: bool = False) -> Iterator[WalFileContents]:
        """Yield the contents of every WAL file with a sequence above ``after_sequence``, in order.

        A damaged file with no intact file after it is part of a torn tail: logged as a warning with its
        rows (never acknowledged as durable), moved aside, and yielded with its complete frames only. A
        damaged file followed by an intact one raises :class:`DamagedFileError`; with ``repair`` it is
        moved aside instead and its rows are logged as lost."""
        sequences = [seq for seq in self.sequences() if seq > after_sequence]
        for i, seq in enumerate(sequences):
            path = self.path_for(seq)
            contents = read_wal_file(path, seq)
            damage = contents.damage
            if damage is not None:
                later = sequences[i + 1:]
                if any(read_wal_file(self.path_for(s), s, decode=False).damage is None for s in later):
                    if not repair:
                        raise DamagedFileError(path, damage.offset, damage.reason, damage.rows)
                    moved = self._move_aside(path)
                    log.error("WAL file %s is damaged at byte %d (%s): moved to %s; lost %s acknowledged by "
                              "the server", path, damage.offset, damage.reason, moved,
                              rows_text(damage.rows))
                else:
                    moved = self._move_aside(path)
                    log.warning("WAL file %s is incomplete at byte %d (%s): a flush cut short by a crash, "
                                "never acknowledged as durable; skipped, moved to %s (%s lost)", path,
                                damage.offset, damage.reason, moved, rows_text(damage.rows))
            yield contents

    def _move_aside(self, path: Path) -> Path:
        assert self.set_aside is not None
        return self.set_aside.move(path)

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


def read_wal_file(path: Path, sequence: int, *, decode: bool = True) -> WalFileContents:
    """Read every complete frame of a WAL file; ``damage`` tells where it stops being readable (an
    empty, short or zero-filled file, a wrong magic, no frame, a frame cut short, a checksum mismatch, a
    payload that does not decode). With ``decode`` False the frames are checked but not decoded."""
    data = path.read_bytes()
    entries: list[WalEntry] = []

    def damaged(offset: int, reason: str, rows: int | None = None) -> WalFileContents:
        return WalFileContents(sequence, entries, WalDamage(offset, reason, rows))

    if not data:
        return damaged(0, "empty file")
    if not data.strip(b"\0"):
        return damaged(0, f"all {len(data)} bytes are zero")
    magic = data[: len(MAGIC)]
    if magic not in _MAGICS:
        if len(data) < len(MAGIC) and any(m.startswith(data) for m in _MAGICS):
            return damaged(len(data), f"file cut short inside its {len(MAGIC)}-byte header")
        return damaged(0, "not a WAL file header")
    header = _HEADER3 if magic == MAGIC else _HEADER
    pos = len(MAGIC)
    if pos == len(data):
        return damaged(pos, "no frame after the header")
    while pos < len(data):
        if pos + header.size > len(data):
            return damaged(pos, f"frame header cut short ({len(data) - pos} of {header.size} bytes)")
        rows: int | None = None
        if header is _HEADER3:
            length, crc, rows, head_crc = header.unpack_from(data, pos)
            if zlib.crc32(data[pos : pos + 12]) != head_crc:
                return damaged(pos, "frame header checksum mismatch")
        else:
            length, crc = header.unpack_from(data, pos)
        start = pos + header.size
        payload = data[start : start + length]
        if len(payload) < length:
            return damaged(pos, f"frame cut short ({len(payload)} of {length} payload bytes)", rows)
        if zlib.crc32(payload) != crc:
            return damaged(pos, "frame checksum mismatch", rows)
        if decode:
            try:
                entries.extend(marshal.loads(payload))
            except (EOFError, ValueError, TypeError):
                return damaged(pos, "frame payload does not decode", rows)
        pos = start + length
    return WalFileContents(sequence, entries)
