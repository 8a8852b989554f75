"""The Engine facade: catalog + WAL + buffers + snapshots + queries, as the HTTP layer and the
processing engine use them (docs/internals.md).

Write path (reference §6, §6a): validate the db name, parse with :func:`emulator.lineprotocol.parse_columnar`
(a body of one plain shape is checked once and queued as columns; anything else goes line by line),
check every line against the catalog (types, tag/field clashes, limits; later lines of one request see
the columns earlier lines added), commit the schema changes, queue the rows for the next flush. The
flusher thread, every ``wal_flush_interval``, writes all queued rows as one WAL file (fsync), applies
them to the buffers, calls the flush listeners once per database, then releases the waiting writers.
A ``no_sync=True`` write returns as soon as its rows are queued.

The flusher writes Parquet snapshots when the WAL files waiting since the last snapshot call for one (the
server's snapshot tracker: ``wal_snapshot_size`` and ``gen1_duration_ns``, see
:class:`emulator.wal.SnapshotTracker`), when the buffered rows exceed ``snapshot_rows``, and on close; it
then deletes the WAL files they cover except the newest ``snapshotted_wal_files_to_keep``, so memory,
disk and restart time stay bounded even when writes keep overwriting the same rows.
"""

from __future__ import annotations

import logging
import operator
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emulator import lineprotocol
from emulator.catalog import (
    INTERNAL_DB,
    NUM_COLUMNS_PER_TABLE_LIMIT,
    NUM_TABLES_LIMIT,
    TIME_COLUMN,
    Catalog,
    DatabaseDef,
    TableDef,
    invalid_column_type_text,
    too_many_columns_text,
    too_many_dbs_text,
    too_many_tables_text,
    validate_db_name,
)
from emulator.errors import (
    ApiError,
    DamagedFileError,
    DatabaseNotFound,
    json_error,
    text_error,
)
from emulator.lineprotocol import LineError, ParsedLine
from emulator.query import QueryRunner, SqlObjects, SystemTableProvider
from emulator.storage import Storage, arrow_schema
from emulator.systables import CoreSystemTables, QueryLog
from emulator.wal import (
    SetAside,
    SnapshotTracker,
    Wal,
    WalEntry,
    WalPeriod,
    entries_time_range,
    entry_num_rows,
    entry_rows,
    read_wal_file,
    rows_text,
)

log = logging.getLogger(__name__)

FlushListener = Callable[[str, list[dict[str, Any]]], None]
EMPTY_WRITE = "incoming write was empty"


def decode_write_body(body: bytes) -> str:
    """A write body as text; bytes that are not UTF-8 are a 400, never replaced.

    Copies influxdb3_server ``http.rs`` ``write_lp_inner``: ``std::str::from_utf8(&body)`` fails with
    ``Error::NonUtf8Body``, a text 400 ``body content is not valid utf8: <Utf8Error>`` (``/api/v2/write``
    wraps it as ``{"code": "invalid", …}``). Rust's ``Utf8Error`` Display: ``invalid utf-8 sequence of
    {n} bytes from index {i}``, or ``incomplete utf-8 byte sequence from index {i}`` when the body ends
    inside a character. Both decoders take the maximal invalid subpart, so ``n`` is Python's end - start.
    Raises ApiError (400, text).
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            detail = f"incomplete utf-8 byte sequence from index {exc.start}"
        else:
            detail = f"invalid utf-8 sequence of {exc.end - exc.start} bytes from index {exc.start}"
        raise text_error(400, f"body content is not valid utf8: {detail}") from None
FIELD_TYPES = ("int64", "uint64", "float64", "utf8", "bool")
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
#: above this many runs of differently shaped lines in one table, a write is padded into one run
_MAX_RUNS = 8
#: Memory bound on queued rows (issue 9 item 10): rows wait for their flush as Python values (about 500
#: bytes each with 3 tags and 8 fields, against about 90 as Arrow), so with this many queued the flush starts
#: at once instead of at the next tick; without it fast no_sync writers queued a million rows per flush.
FLUSH_EARLY_ROWS = 50_000
#: ... and with this many queued (the flusher cannot keep up) a write, no_sync too, waits until the flusher
#: takes the queue. Set well above what a busy flusher leaves queued: waiting at 2x halved no_sync ingest.
MAX_QUEUED_ROWS = 10 * FLUSH_EARLY_ROWS
#: close() flushes until nothing is queued (listeners may write), at most this many times
_CLOSE_FLUSH_ROUNDS = 16


#: the server's defaults (influxdb3/src/commands/serve.rs): --wal-snapshot-size 600, --gen1-duration 10m
DEFAULT_WAL_SNAPSHOT_SIZE = 600
DEFAULT_GEN1_DURATION_NS = 600 * 1_000_000_000


class EngineClosed(Exception):
    """A write reached an engine that is not open."""


class FlushFailed(Exception):
    """The WAL flush holding a write failed (disk error); the write is not acknowledged."""


@dataclass
class WriteOutcome:
    lines_written: int
    errors: list[LineError] = field(default_factory=list)


class _Batch:
    """The writes queued for one flush. ``taken`` is set when the flusher takes it (its rows stop counting
    against the queue bound), ``done`` when it is durable and applied (or failed: ``error``)."""

    __slots__ = ("entries", "rows", "done", "taken", "error")

    def __init__(self) -> None:
        self.entries: list[WalEntry] = []
        self.rows = 0
        self.done = threading.Event()
        self.taken = threading.Event()
        self.error: BaseException | None = None


class _LineRejected(Exception):
    def __init__(self, message: str):
        self.message = message


class _TableTxn:
    """A table's schema while one write request is validated (committed only at the end)."""

    __slots__ = ("name", "base", "tags", "tagset", "fields", "runs")

    def __init__(self, name: str, base: TableDef | None):
        self.name = name
        self.base = base
        self.tags: list[str] = list(base.tags) if base else []
        self.tagset = set(self.tags)
        self.fields: dict[str, str] = dict(base.fields) if base else {}
        #: accepted rows in request order, as runs of consecutive rows sharing one column list:
        #: (names, rows) or, from the columnar path, (names, columns, num_rows)
        self.runs: list[tuple[Any, ...]] = []

    def add_row(self, names: tuple[str, ...], row: tuple[Any, ...]) -> None:
        runs = self.runs
        if runs and runs[-1][0] is names and len(runs[-1]) == 2:
            runs[-1][1].append(row)
        else:
            runs.append((names, [row]))

    def compact_runs(self) -> list[tuple[Any, ...]]:
        """The runs, merged into one run over the union of columns when there are many small ones
        (lines of alternating shapes), padding absent columns with None."""
        if len(self.runs) <= _MAX_RUNS:
            return self.runs
        union: dict[str, int] = {}
        for run in self.runs:
            for n in run[0]:
                union.setdefault(n, len(union))
        width = len(union)
        out: list[tuple[Any, ...]] = []
        for run in self.runs:
            names = run[0]
            rows = entry_rows((None, None, *run))
            positions = [union[n] for n in names]
            for row in rows:
                padded: list[Any] = [None] * width
                for pos, value in zip(positions, row, strict=True):
                    padded[pos] = value
                out.append(tuple(padded))
        return [(tuple(union), out)]

    @property
    def num_columns(self) -> int:
        return len(self.tags) + len(self.fields)  # ``time`` is not counted (v3 catalog)

    def check_line(self, line: ParsedLine) -> None:
        """Validate one line and add its new columns; on failure nothing of this line stays."""
        added_tags: list[str] = []
        added_fields: list[str] = []
        try:
            for key in line.tags:
                if key in self.tagset:
                    continue
                if key == TIME_COLUMN:
                    raise _LineRejected(f"'{key}' is a reserved column")
                existing = self.fields.get(key)
                if existing is not None:
                    raise _LineRejected(invalid_column_type_text(key, existing, "tag"))
                if self.num_columns >= NUM_COLUMNS_PER_TABLE_LIMIT:
                    raise _LineRejected(too_many_columns_text())
                self.tags.append(key)
                self.tagset.add(key)
                added_tags.append(key)
            fields = self.fields
            for name, (ftype, _value) in line.fields.items():
                existing = fields.get(name)
                if existing == ftype:
                    continue
                if existing is not None:
                    raise _LineRejected(invalid_column_type_text(name, existing, ftype))
                if name in self.tagset:
                    raise _LineRejected(invalid_column_type_text(name, "tag", ftype))
                if name == TIME_COLUMN:
                    raise _LineRejected(f"'{name}' is a reserved column")
                if self.num_columns >= NUM_COLUMNS_PER_TABLE_LIMIT:
                    raise _LineRejected(too_many_columns_text())
                fields[name] = ftype
                added_fields.append(name)
            if isinstance(line.fields, lineprotocol.DuplicateFields):
                # the server checks a repeated field's type against its column first, then rejects the repeat
                for name, (ftype, _value) in line.fields.duplicates():
                    existing = fields[name]
                    if existing != ftype:
                        raise _LineRejected(invalid_column_type_text(name, existing, ftype))
                    raise _LineRejected(f"invalid line protocol - multiple instances of '{name}' field found")
        except _LineRejected:
            for key in added_tags:
                self.tags.remove(key)
                self.tagset.discard(key)
            for name in added_fields:
                del self.fields[name]
            raise



def _table_txn(tables: dict[str, _TableTxn], db: DatabaseDef | None, measurement: str, live_tables: int) -> _TableTxn:
    """The request's transaction for ``measurement``, opened on first use. Raises _LineRejected when the
    table is new and the catalog already holds the table limit: ``live_tables`` (every user database's
    live tables when the request began) plus this request's new ones."""
    tt = tables.get(measurement)
    if tt is None:
        base = None if db is None else db.tables.get(measurement)
        if base is None:
            current = live_tables + sum(1 for t in tables.values() if t.base is None)
            if current >= NUM_TABLES_LIMIT:
                raise _LineRejected(too_many_tables_text(current))
        tt = tables[measurement] = _TableTxn(measurement, base)
    return tt


class _ShapeProbe:
    """A line of a parsed shape as ``_TableTxn.check_line`` reads it (column names and types only)."""

    __slots__ = ("tags", "fields")

    def __init__(self, shape: lineprotocol.ColumnarShape):
        self.tags = dict.fromkeys(shape.tag_keys, "")
        self.fields = {k: (t, None) for k, t in zip(shape.field_keys, shape.field_types, strict=True)}


class _TableGetter:
    """Lazy access to one table's Arrow data for a query (with a cheap schema hint)."""

    __slots__ = ("storage", "db_id", "tdef", "retention_ns", "lock")

    def __init__(self, storage: Storage, db_id: int, tdef: TableDef, retention_ns: int | None, lock: Any):
        self.storage = storage
        self.db_id = db_id
        self.tdef = tdef  # the live definition: read it under ``lock`` (the catalog's), writers extend it
        self.retention_ns = retention_ns
        self.lock = lock

    def schema(self) -> pa.Schema:
        with self.lock:
            return arrow_schema(self.tdef)

    def __call__(self) -> pa.Table:
        table = self.storage.table(self.db_id, self.tdef, self.lock)
        if self.retention_ns is not None and table.num_rows:
            cutoff = time.time_ns() - self.retention_ns
            table = table.filter(pc.greater_equal(table.column(TIME_COLUMN).cast(pa.int64()), cutoff))
        return table


#: the catalog's default wait between a soft delete and the hard delete (influxdb3_catalog
#: ``Catalog::DEFAULT_HARD_DELETE_DURATION``: 72 hours)
DEFAULT_HARD_DELETE_S = 72 * 3600
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))")


def _parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp; ValueError with chrono's ``ParseError`` text."""
    m = _RFC3339.match(text)
    if m is None:
        prefix = re.match(r"[\d\-:.TtZz+ ]*", text)
        if prefix is not None and prefix.end() == len(text):
            raise ValueError("premature end of input")
        raise ValueError("input contains invalid characters")
    if m.end() != len(text):
        raise ValueError("trailing input")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = float(m.group(7) or 0)
    offset = 0
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60 * (-1 if m.group(9) == "-" else 1)
    try:
        dt = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError:
        raise ValueError("input is out of range") from None
    return dt.timestamp() + frac - offset


def resolve_hard_delete(text: str | None, now: float | None = None) -> str | None:
    """The hard-deletion time a soft delete stores, as RFC 3339 (UTC, seconds), or None for ``never``.

    ``text`` is the ``hard_delete_at`` query value: absent or ``default`` = now + 72 h, ``now``, ``never``,
    else an RFC 3339 timestamp, a past one meaning now (influxdb3_server ``http.rs`` ``delete_database`` /
    ``delete_table``; configure.rs ``api_v3_configure_table_delete_with_past_timestamp_becomes_now``).
    Raises ApiError 400 ``Cannot parse the timestamp: <chrono text>`` (plain text) for anything else.
    """
    now = time.time() if now is None else now
    if text is None or text == "default":
        when = now + DEFAULT_HARD_DELETE_S
    elif text == "never":
        return None
    elif text == "now":
        when = now
    else:
        try:
            when = max(_parse_rfc3339(text), now)
        except ValueError as exc:
            raise text_error(400, f"Cannot parse the timestamp: {exc}") from None
    return datetime.fromtimestamp(int(when), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parquet_rows(directory: Path) -> int | None:
    """Rows in the Parquet files under ``directory`` (from their footers); None if some footer is unreadable."""
    total = 0
    for f in directory.rglob("*.parquet") if directory.exists() else ():
        try:
            total += pq.read_metadata(f).num_rows
        except (OSError, pa.ArrowException):
            return None
    return total


def _wal_rows(directory: Path) -> int | None:
    """Rows in the readable frames of the WAL files under ``directory``; None if some file is damaged."""
    total = 0
    for f in sorted(directory.glob("*.wal")) if directory.exists() else ():
        contents = read_wal_file(f, 0)
        if contents.damage is not None:
            return None
        total += sum(entry_num_rows(e) for e in contents.entries)
    return total


def parse_retention(text: str) -> int:
    """A retention period (humantime 2.3 syntax, as the server parses it) in nanoseconds.
    Raises ValueError when the text is not a duration."""
    from emulator.processing.specs import parse_duration

    return parse_duration(text)


class Engine:
    """The embedded InfluxDB 3 Core storage engine (one per server)."""

    def __init__(self, data_dir: Path | None, *, wal_flush_interval: float = 1.0, node_id: str = "emulator",
                 snapshot_rows: int = 1_000_000, wal_snapshot_size: int = DEFAULT_WAL_SNAPSHOT_SIZE,
                 gen1_duration_ns: int = DEFAULT_GEN1_DURATION_NS, snapshotted_wal_files_to_keep: int = 0,
                 repair_damaged_files: bool = False, exec_mem_pool_bytes: int | None = None):
        """``exec_mem_pool_bytes``: the query memory pool and result bound in bytes (the server's
        ``--exec-mem-pool-bytes``; None: its default, 20% of memory; see :class:`emulator.query.QueryRunner`).
        ``wal_snapshot_size`` and ``gen1_duration_ns`` drive the snapshot tracker (the server's
        ``--wal-snapshot-size``, default 600, and ``--gen1-duration``, default 10m);
        ``snapshotted_wal_files_to_keep`` covered WAL files stay on disk after a snapshot (``serve`` passes
        the server's ``--snapshotted-wal-files-to-keep``, default 300; the library default keeps none).

        Damaged files (issue 9 item 7): a catalog, snapshot manifest or WAL file whose acknowledged
        contents cannot be read raises :class:`emulator.errors.DamagedFileError` here or in :meth:`open`;
        with ``repair_damaged_files`` the file is moved to ``<data_dir>/damaged/<time>/`` instead (with
        the files that depend on it) and every row lost is logged with its count."""
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.wal_flush_interval = wal_flush_interval
        self.node_id = node_id
        self.snapshot_rows = snapshot_rows
        self.snapshotted_wal_files_to_keep = snapshotted_wal_files_to_keep
        self.tracker = SnapshotTracker(wal_snapshot_size, gen1_duration_ns)
        self.repair_damaged_files = repair_damaged_files
        self._set_aside = None if self.data_dir is None else SetAside(self.data_dir)
        self.catalog = self._load_catalog()
        self.storage = self._load_storage()
        self.wal = Wal(None)
        self.queries = QueryRunner(exec_mem_pool_bytes)
        self.query_log = QueryLog()
        self.instance_id = str(uuid.uuid4())
        self.started_at_ms = int(time.time() * 1000)
        #: the serve flags shown (secrets masked) in ``_internal``'s ``system.nodes``; set by the server
        self.cli_params: dict[str, str] = {}
        CoreSystemTables(self, parse_retention).register(self.queries.register_system_table)
        self._listeners: list[tuple[FlushListener, Callable[[str], bool] | None]] = []
        self._queue_lock = threading.Lock()
        self._batch = _Batch()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._open = False
        self._closing = False
        self._last_sequence = 0
        #: the highest WAL sequence a snapshot may cover (set when a flushed batch failed to apply)
        self._snapshot_ceiling: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Load the catalog and snapshots, replay the WAL newer than the last snapshot, start flushing."""
        if self._open:
            return
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.wal = Wal(self.data_dir / "wal", self._set_aside)
            # the snapshot may have removed every WAL file: number new ones above what it covers,
            # or replay would skip them as covered
            covered = self.storage.snapshot_sequence
            self.wal.next_sequence = max(self.wal.next_sequence, covered + 1)
            self._last_sequence = max(self._last_sequence, covered)
            self._replay()
        self._stop.clear()
        self._closing = False
        self._open = True
        self._flusher = threading.Thread(target=self._flush_loop, name="wal-flusher", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        """Flush what is queued, snapshot to Parquet, stop the flusher. Idempotent."""
        if not self._open:
            return
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join()
        # The last flushes run on this thread: a listener writing from one must not wait on itself,
        # and its rows (and those of writes that raced this close) are flushed by the next round.
        self._flusher = threading.current_thread()
        for _ in range(_CLOSE_FLUSH_ROUNDS):
            self._flush_once()
            with self._queue_lock:
                if not self._batch.entries:
                    break
        with self._queue_lock:
            self._closing = True  # from here on writes are refused (EngineClosed), never left waiting
            left = self._batch
            self._batch = _Batch()
        left.taken.set()
        if left.entries:
            left.error = EngineClosed("engine closed before the write was flushed")
        left.done.set()
        self._snapshot()
        self._open = False

    def __enter__(self) -> Engine:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load_catalog(self) -> Catalog:
        """The catalog; when it is damaged and repair is on, a new one, with every file that refers to the
        old one's database and table ids (snapshot manifest, Parquet files, WAL) moved aside too."""
        if self.data_dir is None:
            return Catalog(None)
        path = self.data_dir / "catalog.json"
        try:
            return Catalog(path)
        except DamagedFileError as exc:
            if not self.repair_damaged_files:
                raise
            damage = exc
        assert self._set_aside is not None
        parquet_rows = _parquet_rows(self.data_dir / "dbs")
        wal_rows = _wal_rows(self.data_dir / "wal")
        moved = self._set_aside.move(path)
        for name in ("snapshots.json", "dbs", "wal"):
            if (self.data_dir / name).exists():
                self._set_aside.move(self.data_dir / name)
        log.error("%s: moved to %s with snapshots.json, dbs/ and wal/ (they refer to its ids); starting with an "
                  "empty catalog; lost its databases, tables, triggers and tokens, %s in Parquet files and %s "
                  "in the WAL", damage, moved.parent, rows_text(parquet_rows), rows_text(wal_rows))
        return Catalog(path)

    def _load_storage(self) -> Storage:
        """The snapshot manifest and buffers; when the manifest is damaged and repair is on, it and the
        Parquet files it listed are moved aside and the WAL is replayed from its first file."""
        try:
            return Storage(self.data_dir)
        except DamagedFileError as exc:
            if not self.repair_damaged_files or self.data_dir is None:
                raise
            damage = exc
        assert self._set_aside is not None
        parquet_rows = _parquet_rows(self.data_dir / "dbs")
        moved = self._set_aside.move(self.data_dir / "snapshots.json")
        if (self.data_dir / "dbs").exists():
            self._set_aside.move(self.data_dir / "dbs")
        log.error("%s: moved to %s with the Parquet files (dbs/); lost %s in them, except rows that WAL files "
                  "still on disk hold (replayed from the first one)", damage, moved.parent, rows_text(parquet_rows))
        return Storage(self.data_dir)

    def _replay(self) -> None:
        live = self._live_tables()
        replayed = 0
        for contents in self.wal.replay(self.storage.snapshot_sequence, repair=self.repair_damaged_files):
            applied: dict[int, list[WalEntry]] = {}
            for entry in contents.entries:
                if (entry[0], entry[1]) in live:
                    self.storage.apply(*entry)
                    replayed += entry_num_rows(entry)
                    applied.setdefault(entry[0], []).append(entry)
            self._compact_pending(applied)
            self._last_sequence = contents.sequence
            self._track(contents.sequence, contents.entries)
        if replayed:
            log.info("replayed %d rows from the WAL", replayed)

    def _live_tables(self) -> dict[tuple[int, int], TableDef]:
        with self.catalog.lock:
            return {(db.id, t.id): t for db in self.catalog.databases() for t in db.tables.values()}

    # ------------------------------------------------------------------ writes
    def write_lp(self, db: str, body: bytes | str, *, precision: str = "auto", accept_partial: bool = True,
                 no_sync: bool = False, default_time_ns: int | None = None) -> WriteOutcome:
        """Validate and queue a line protocol write (docs/internals.md). See the module docstring."""
        if not self._open:
            raise EngineClosed("engine is not open")
        if not body:
            raise text_error(400, EMPTY_WRITE)
        validate_db_name(db)
        text = decode_write_body(body) if isinstance(body, bytes) else body
        self._refuse_soft_deleted(db)
        now = time.time_ns() if default_time_ns is None else default_time_ns
        with lineprotocol.paused_gc():  # parsed lines hold no cycles (see paused_gc)
            result = lineprotocol.parse_columnar(text, precision=precision, default_time_ns=now)
            fast = None
            if result.shapes and not result.lines and not result.errors:
                fast = self._commit_columnar(db, result.shapes)
            if fast is None:
                # a mixed body or a shape the catalog rejects: the exact path, line by line
                parsed, parse_errors = result.to_lines(), result.errors
        del result
        if fast is None:
            return self._write_lines(db, parsed, parse_errors, accept_partial, no_sync)
        return self._finish_write(fast[0], fast[1], [], no_sync)

    def check_lp(self, db: str, body: str, *, precision: str = "ns", default_time_ns: int | None = None
                 ) -> LineError | None:
        """The error a write of ``body`` to ``db`` with ``accept_partial=false`` would report first (parse or
        schema), or None; nothing is written and the catalog is unchanged (the plugin dry runs' validation,
        influxdb3_processing_engine plugins.rs ``DryRunWriteHandler``). Raises ApiError for a whole-request
        failure (e.g. a soft-deleted database)."""
        validate_db_name(db)
        self._refuse_soft_deleted(db)
        now = time.time_ns() if default_time_ns is None else default_time_ns
        parsed, parse_errors = lineprotocol.parse_lines(body, precision=precision, default_time_ns=now)
        if parse_errors:
            first_bad = parse_errors[0].line_number
            parsed = [p for p in parsed if p.line_number < first_bad]
        _entries, errors, _written = self._validate_and_commit(db, parsed, False, commit=False)
        if errors:
            return errors[0]
        return parse_errors[0] if parse_errors else None

    def _refuse_soft_deleted(self, db: str) -> None:
        """400 when ``db`` names a soft-deleted database and no live one (influxdb3_write validator.rs
        ``WriteValidator::initialize``, write_buffer ``Error::DatabaseDeleted``)."""
        if self.catalog.get_db(db) is None and self.catalog.deleted_db(db) is not None:
            raise json_error(400, f"cannot write to soft-deleted database '{db}' - it is marked for deletion")

    def _write_lines(self, db: str, parsed: list[ParsedLine], parse_errors: list[LineError],
                     accept_partial: bool, no_sync: bool) -> WriteOutcome:
        """The exact path: every line checked on its own (shapes once), errors with their line numbers."""
        with lineprotocol.paused_gc():
            if parse_errors and not accept_partial:
                # schema errors on earlier lines would come first; validate only those lines
                first_bad = parse_errors[0].line_number
                parsed = [p for p in parsed if p.line_number < first_bad]
            entries, errors, written = self._validate_and_commit(
                db, parsed, accept_partial, commit=accept_partial or not parse_errors)
            del parsed
        if not accept_partial:
            if errors:
                return WriteOutcome(0, [errors[0]])
            if parse_errors:
                return WriteOutcome(0, [parse_errors[0]])
        all_errors = sorted([*parse_errors, *errors], key=lambda e: e.line_number) if errors else parse_errors
        return self._finish_write(entries, written, all_errors, no_sync)

    def _finish_write(self, entries: list[WalEntry], written: int, all_errors: list[LineError],
                      no_sync: bool) -> WriteOutcome:
        if not entries:
            return WriteOutcome(0, all_errors)
        batch = self._enqueue(entries, written)
        if batch.rows > MAX_QUEUED_ROWS and threading.current_thread() is not self._flusher:
            batch.taken.wait()
        if not no_sync and threading.current_thread() is not self._flusher:
            batch.done.wait()
            if batch.error is not None:
                raise text_error(500, f"error writing to the WAL: {batch.error}")
        return WriteOutcome(written, all_errors)

    def _validate_and_commit(self, db_name: str, parsed: list[ParsedLine], accept_partial: bool, *,
                             commit: bool = True) -> tuple[list[WalEntry], list[LineError], int]:
        """Check ``parsed`` against the catalog; commit new tables/columns; return the WAL entries, the
        per-line errors and the number of accepted lines. With ``commit`` False only check.

        Lines are grouped by shape (table, tag keys, field keys and types): a shape is checked once per
        request, since the schema only grows and its verdict cannot change within the request.
        """
        errors: list[LineError] = []
        with self.catalog.lock:
            db = self.catalog.get_db(db_name)
            tables: dict[str, _TableTxn] = {}
            live_tables = self.catalog.live_table_count()
            shapes: dict[tuple[Any, ...], tuple[_TableTxn, tuple[str, ...]] | str] = {}
            written = 0
            for line in parsed:
                fv = line.fields.values()
                key = (line.measurement, *line.tags, "", *line.fields, *map(_first, fv))
                if isinstance(line.fields, lineprotocol.DuplicateFields):
                    key += ("", *(f"{k}={t}" for k, (t, _v) in line.fields.items_in_order))
                shape = shapes.get(key)
                if shape is None:
                    try:
                        tt = _table_txn(tables, db, line.measurement, live_tables)
                        tt.check_line(line)
                    except _LineRejected as rej:
                        shape = shapes[key] = rej.message
                    else:
                        shape = shapes[key] = (tt, (*line.tags, *line.fields, TIME_COLUMN))
                if not isinstance(shape, str) and not lineprotocol.I64_MIN <= line.time_ns <= lineprotocol.I64_MAX:
                    out_of_range = lineprotocol.time_out_of_range(line)
                    if out_of_range is not None:
                        errors.append(LineError.for_line(line.line_number, line.raw, out_of_range))
                        if not accept_partial:
                            return [], errors, 0
                        continue
                if isinstance(shape, str):
                    errors.append(LineError.for_line(line.line_number, line.raw, shape))
                    if not accept_partial:
                        return [], errors, 0
                    continue
                shape[0].add_row(shape[1], (*line.tags.values(), *map(_second, fv), line.time_ns))
                written += 1
            if not written or not commit:
                return [], errors, 0
            if db is None:
                db = self._auto_create_db(db_name)
            entries = self._commit_tables(db, tables)
        return entries, errors, written

    def _commit_columnar(self, db_name: str, shapes: list[lineprotocol.ColumnarShape]
                         ) -> tuple[list[WalEntry], int] | None:
        """The fast path for lines parsed by shape: check each shape once against the catalog and queue
        its columns as rows. Returns None, with nothing committed, when some shape is rejected (the
        caller then takes the exact path, which reports each line's error)."""
        with self.catalog.lock:
            db = self.catalog.get_db(db_name)
            tables: dict[str, _TableTxn] = {}
            live_tables = self.catalog.live_table_count()
            written = 0
            for shape in shapes:
                try:
                    tt = _table_txn(tables, db, shape.measurement, live_tables)
                    tt.check_line(_ShapeProbe(shape))
                except _LineRejected:
                    return None
                names = (*shape.tag_keys, *shape.field_keys, TIME_COLUMN)
                tt.runs.append((names, [*shape.tag_columns, *shape.field_columns, shape.times], shape.num_lines))
                written += shape.num_lines
            if not written:
                return None
            if db is None:
                db = self._auto_create_db(db_name)
            entries = self._commit_tables(db, tables)
        return entries, written

    def _auto_create_db(self, name: str) -> DatabaseDef:
        try:
            return self.catalog.create_database(name, exist_ok=True)
        except ApiError as err:
            if err.status == 422:
                raise json_error(422, too_many_dbs_text()) from None
            raise

    def _commit_tables(self, db: DatabaseDef, tables: dict[str, _TableTxn]) -> list[WalEntry]:
        """Apply the request's schema changes to the catalog (saved once) and build the WAL entries."""
        changed = False
        entries: list[WalEntry] = []
        for tt in tables.values():
            if not tt.runs:
                continue
            tdef = db.tables.get(tt.name)
            if tdef is None:
                tdef = self.catalog.new_table(db, tt.name)
                changed = True
            if len(tt.tags) != len(tdef.tags) or len(tt.fields) != len(tdef.fields):
                for key in tt.tags[len(tdef.tags):]:
                    tdef.tags.append(key)
                for name, ftype in tt.fields.items():
                    if name not in tdef.fields:
                        tdef.fields[name] = ftype
                tdef.version += 1
                changed = True
            for run in tt.compact_runs():
                entries.append((db.id, tdef.id, *run))
        if changed:
            self.catalog.save()
        return entries

    def _enqueue(self, entries: list[WalEntry], rows: int = 0) -> _Batch:
        with self._queue_lock:
            if self._closing:
                raise EngineClosed("engine is not open")
            batch = self._batch
            batch.entries.extend(entries)
            batch.rows += rows
        if batch.rows >= FLUSH_EARLY_ROWS:
            self._wake.set()
        return batch

    # ------------------------------------------------------------------ flushing
    def _flush_loop(self) -> None:
        interval = self.wal_flush_interval
        next_tick = time.monotonic() + interval
        while not self._stop.is_set():
            delay = next_tick - time.monotonic()
            if delay > 0 and self._wake.wait(delay):
                self._wake.clear()  # flush_now() or close(): flush at once, keep the tick schedule
                if self._stop.is_set():
                    break
            else:
                next_tick = max(next_tick + interval, time.monotonic())
            try:
                self._flush_once()
                if self.tracker.should_snapshot() or self.storage.buffered_rows > self.snapshot_rows:
                    self._snapshot()
            except Exception:  # keep flushing; the failed batch's writers got the error
                log.exception("WAL flush failed")

    def _flush_once(self) -> None:
        with self._queue_lock:
            batch = self._batch
            self._batch = _Batch()
        batch.taken.set()
        if not batch.entries:
            batch.done.set()
            return
        sequence = 0
        try:
            sequence = self.wal.append(batch.entries)
            self._last_sequence = sequence
            self._track(sequence, batch.entries)
            by_db: dict[int, list[WalEntry]] = {}
            for entry in batch.entries:
                self.storage.apply(*entry)
                by_db.setdefault(entry[0], []).append(entry)
        except BaseException as exc:
            if sequence:
                # Durable in the WAL but not (fully) in memory: no snapshot may cover this file, so the
                # next start replays it instead of losing its rows.
                ceiling = sequence - 1
                self._snapshot_ceiling = ceiling if self._snapshot_ceiling is None else min(self._snapshot_ceiling,
                                                                                            ceiling)
                log.error("WAL file %d could not be applied in memory; it is kept and replayed at the next "
                          "start", sequence)
            batch.error = exc
            batch.done.set()
            raise
        self._notify(by_db)
        batch.done.set()
        batch.entries = []  # the writers only wait for ``done``; the rows now live in the buffers
        self._compact_pending(by_db)

    def _compact_pending(self, by_db: dict[int, list[WalEntry]]) -> None:
        """Convert the rows a flush (or a replayed WAL file) added to Arrow, so the buffers never hold
        more than one flush of Python values (issue 9 item 10)."""
        keys = {(db_id, e[1]) for db_id, entries in by_db.items() for e in entries}
        for db_id, table_id in keys:
            with self.catalog.lock:
                db = self.catalog.db_by_id(db_id)
                tdef = None if db is None else next((t for t in db.tables.values() if t.id == table_id), None)
                if tdef is None:
                    continue
                schema = arrow_schema(tdef)
            self.storage.compact_pending(db_id, table_id, schema)

    def _track(self, sequence: int, entries: list[WalEntry]) -> None:
        """Tell the snapshot tracker about one WAL file (written or replayed)."""
        if not self.wal.enabled:
            return
        span = entries_time_range(entries)
        if span is not None:
            self.tracker.add(WalPeriod(sequence, *span))

    def _notify(self, by_db: dict[int, list[WalEntry]]) -> None:
        if not self._listeners:
            return
        for db_id, entries in by_db.items():
            with self.catalog.lock:
                db = self.catalog.db_by_id(db_id)
                if db is None or db.deleted:
                    continue
                names = {t.id: t.name for t in db.tables.values()}
                db_name = db.name
            listeners = [fn for fn, wants in list(self._listeners) if wants is None or wants(db_name)]
            if not listeners:
                continue  # nobody wants this database's rows: no row dicts are built
            grouped: dict[str, list[dict[str, Any]]] = {}
            for entry in entries:
                name = names.get(entry[1])
                if name is not None:
                    columns = entry[2]
                    grouped.setdefault(name, []).extend(
                        {c: v for c, v in zip(columns, r, strict=True) if v is not None} for r in entry_rows(entry))
            batches = [{"table_name": n, "rows": r} for n, r in grouped.items()]
            for listener in listeners:
                try:
                    listener(db_name, batches)
                except Exception:
                    log.exception("flush listener %r failed", listener)

    def add_flush_listener(self, fn: FlushListener, wants: Callable[[str], bool] | None = None) -> None:
        """Call ``fn(db, table_batches)`` on the flusher thread after each flush, before writers return;
        with ``wants``, only for the databases for which ``wants(db)`` is true at that flush (the row
        dicts are not built for a database no listener wants)."""
        self._listeners.append((fn, wants))

    def flush_now(self) -> None:
        """Wait for the next flush to complete (tests and the harness)."""
        with self._queue_lock:
            batch = self._batch
        if threading.current_thread() is self._flusher or not self._open:
            return
        self._wake.set()
        batch.done.wait()

    def _snapshot(self) -> None:
        if self.data_dir is None:
            return
        covered = self._last_sequence
        if self._snapshot_ceiling is not None:
            covered = min(covered, self._snapshot_ceiling)
        with self.catalog.lock:  # copies: writers extend the live definitions while the snapshot runs
            tables = {key: TableDef(t.id, t.name, list(t.tags), dict(t.fields))
                      for key, t in self._live_tables().items()}
        rows = self.storage.snapshot(tables, covered)
        self.tracker.periods[:] = [p for p in self.tracker.periods if p.sequence > covered]
        removed = self.wal.remove_through(covered, self.snapshotted_wal_files_to_keep)
        if rows or removed:
            log.info("snapshot: %d rows to Parquet, %d WAL files removed", rows, removed)

    # ------------------------------------------------------------------ queries
    def query(self, db: str, sql: str, params: Mapping[str, Any] | None = None, *,
              schema_only: bool = False, query_type: str = "sql", query_text: str | None = None,
              cancelled: Callable[[], bool] | None = None) -> pa.Table:
        """Run SQL against ``db``. Raises DatabaseNotFound or QueryError (DataFusion's text).

        ``schema_only``: plan only and return an empty table with the result's schema. The query is logged in
        ``system.queries`` under ``query_type`` (``sql`` for HTTP; a transport may pass its own, e.g.
        ``flightsql``) with ``query_text`` (default: ``sql``) once it has been planned; a schema-only planning
        is not logged. ``cancelled`` (a plain callable, e.g. a transport's "client gone" check) is polled
        between result batches; once true the query stops with QueryError."""
        getters = self._getters(db)
        if schema_only:
            return self.queries.run(db, getters, sql, params, schema_only=True)
        # logged before planning, so it sees itself as running and a query that fails to plan shows as phase
        # "fail" (influxdb3_query_executor query_database_sql: record_query, then token.fail() on any error)
        with self.logged_query(query_type, sql if query_text is None else query_text):
            return self.queries.run(db, getters, sql, params, cancelled=cancelled)

    def _getters(self, db: str) -> dict[str, _TableGetter]:
        with self.catalog.lock:
            d = self.catalog.get_db(db)
            if d is None:
                raise DatabaseNotFound(db)
            retention = self._retention_ns(d)
            lock = self.catalog.lock
            return {name: _TableGetter(self.storage, d.id, t, retention, lock) for name, t in d.tables.items()}

    def sql_objects(self, db: str) -> SqlObjects:
        """The catalogs, schemas and tables (with Arrow schemas) SQL on ``db`` sees, data unread: what Flight
        SQL's GetCatalogs/GetDbSchemas/GetTables list. Raises DatabaseNotFound."""
        return self.queries.objects(db, self._getters(db))

    def parameter_types(self, db: str, sql: str) -> dict[str, pa.DataType | None] | None:
        """The placeholders of ``sql`` with the types DataFusion infers for them (see
        :meth:`emulator.query.QueryRunner.parameter_types`). Raises DatabaseNotFound."""
        return self.queries.parameter_types(db, self._getters(db), sql)

    @contextmanager
    def logged_query(self, query_type: str, text: str) -> Iterator[None]:
        """Show the work done inside the block in ``system.queries`` as one query (``query_type``, ``text``):
        running while inside, then ``success``, or ``fail`` when the block raises. For a transport's requests
        answered without SQL, e.g. Flight SQL's metadata commands (the server logs every DoGet)."""
        entry = self.query_log.start(query_type, text)
        ok = False
        try:
            yield
            ok = True
        finally:
            self.query_log.finish(entry, success=ok)

    def _retention_ns(self, db: DatabaseDef) -> int | None:
        if not db.retention_period:
            return None
        try:
            return parse_retention(db.retention_period)
        except ValueError:  # validated when stored; a stricter parser later must not break queries
            log.warning("cannot parse stored retention period %r", db.retention_period)
            return None

    def register_system_table(self, name: str, provider: SystemTableProvider) -> None:
        self.queries.register_system_table(name, provider)

    # ------------------------------------------------------------------ databases and tables
    def create_database(self, name: str, retention_period: str | None = None) -> None:
        validate_db_name(name)
        if retention_period is not None:
            self._check_retention(retention_period)
        self.catalog.create_database(name, retention_period)

    def list_databases(self, show_deleted: bool = False) -> list[dict[str, Any]]:
        rows = []
        for d in self.catalog.databases(include_deleted=show_deleted):
            row: dict[str, Any] = {"iox::database": d.name}
            if show_deleted:
                row["deleted"] = d.deleted
            rows.append(row)
        # live databases first, then by name (influxdb3_query_executor ``show_databases``)
        rows.sort(key=lambda r: (bool(r.get("deleted", False)), r["iox::database"]))
        return rows

    def update_database(self, name: str, retention_period: str | None) -> None:
        if retention_period is not None:
            self._check_retention(retention_period)
        self.catalog.set_retention(name, retention_period)

    def set_retention(self, name: str, duration: str) -> None:
        self._check_retention(duration)
        self.catalog.set_retention(name, duration)

    def clear_retention(self, name: str) -> None:
        self.catalog.set_retention(name, None)

    def _check_retention(self, text: str) -> None:
        try:
            parse_retention(text)
        except ValueError as exc:
            raise text_error(400, f"invalid retention period: {exc}") from None

    def delete_database(self, name: str, hard_delete_at: str | None = None) -> None:
        """Soft delete ``name``; ``hard_delete_at`` as :func:`resolve_hard_delete` (400 before any lookup)."""
        when = resolve_hard_delete(hard_delete_at)
        if hard_delete_at not in (None, "default") and self.catalog.get_db(name) is None:
            # re-deleting a soft-deleted database with another time reschedules its hard delete; the same
            # time (or default, which keeps it) is 409 AlreadyDeleted (influxdb3_catalog ops/database.rs)
            if self.catalog.reschedule_deleted_db(name, when):
                return
        db = self.catalog.soft_delete_database(name, when)
        self.storage.drop_database(db.id)

    def create_table(self, db: str, table: str, tags: list[str], fields: list[dict[str, Any]]) -> None:
        validate_db_name(db)
        pairs = []
        for f in fields:
            ftype = f.get("type")
            if ftype not in FIELD_TYPES:
                raise text_error(400, f"invalid field type: {ftype}")
            pairs.append((str(f["name"]), ftype))
        self.catalog.create_table(db, table, list(tags), pairs)

    def delete_table(self, db: str, table: str, hard_delete_at: str | None = None) -> None:
        """Soft delete ``db.table``; ``hard_delete_at`` as :func:`resolve_hard_delete` (400 before any lookup)."""
        hard_delete_at = resolve_hard_delete(hard_delete_at)
        t = self.catalog.soft_delete_table(db, table, hard_delete_at)  # raises the server's errors
        d = self.catalog.get_db(db)
        if d is not None:
            self.storage.drop_table(d.id, t.id)

    # ------------------------------------------------------------------ introspection
    @property
    def internal_db(self) -> str:
        return INTERNAL_DB


__all__ = ["Engine", "EngineClosed", "FlushFailed", "WriteOutcome"]
