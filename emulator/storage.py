"""Per-table Arrow buffers with InfluxDB 3 deduplication, and Parquet snapshots.

Arrow types (reference §7): tags ``Dictionary(Int32, Utf8)``; fields ``int64``, ``uint64``, ``float64``,
``utf8`` (string), ``bool``; ``time`` ``Timestamp(ns)`` without a time zone. Columns are kept in
alphabetical order, which is what makes ``SELECT *`` alphabetical as on the server.

Deduplication (reference §7a): rows with the same table, tag set and time are one row; a later write
replaces the fields it carries and fields only in the earlier row stay. Rows arrive from the flusher as
row tuples or as columns (one-shape writes) and are appended to a pending list (cheap); the first query after a write turns the pending
rows into one Arrow chunk, deduplicates it (skipped when its time values are all distinct or its keys
are unique) and merges it into the cached table. Only cached rows whose time falls in the new chunk's
time range can collide, so only those are re-deduplicated. With no writes in between, a query reuses
the cached table as is (no copy, no dedup).

Snapshots: :meth:`Storage.snapshot` writes every table's in-memory rows to
``<data_dir>/dbs/<db_id>/<table_id>/<n>.parquet`` (ids, not names, since names change on soft delete),
records the files and the WAL sequence they cover in ``<data_dir>/snapshots.json`` and frees the
buffers. Files of one table never overlap in time: a snapshot overlapping older files is merged with
them into one file. A query reads the table's files plus its buffer, deduplicating where they overlap
(only when rows in the common time range share tags and time: otherwise nothing can collapse).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from emulator.catalog import TIME_COLUMN, TableDef, atomic_write, fsync_dir, read_json_file
from emulator.errors import DamagedFileError

log = logging.getLogger(__name__)

TAG_TYPE = pa.dictionary(pa.int32(), pa.string())
TIME_TYPE = pa.timestamp("ns")
FIELD_ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "uint64": pa.uint64(),
    "float64": pa.float64(),
    "utf8": pa.string(),
    "bool": pa.bool_(),
}
#: Merge the chunks of a cached table into one once it has this many (DataFusion prefers few, large batches).
_MAX_CHUNKS = 16

#: rows that share one column list: (column names, [row tuple, ...]), or column by column
#: (column names, [column values, ...], num_rows); ``time`` is int ns
RowGroup = tuple[Any, ...]


def arrow_schema(tdef: TableDef) -> pa.Schema:
    """The table's Arrow schema, columns in alphabetical order; ``time`` is not nullable (information_schema
    says `NO` for it on the server: write.rs `test_table_creation_with_special_characters…` snapshot)."""
    cols: list[pa.Field] = [pa.field(t, TAG_TYPE) for t in tdef.tags]
    cols.extend(pa.field(n, FIELD_ARROW_TYPES[ft]) for n, ft in tdef.fields.items())
    cols.append(pa.field(TIME_COLUMN, TIME_TYPE, nullable=False))  # the server's time column is NOT NULL
    cols.sort(key=lambda f: f.name)
    return pa.schema(cols)


def rows_to_table(groups: list[RowGroup], schema: pa.Schema) -> pa.Table:
    """Build an Arrow table from row groups; a column absent from a group is null in its rows."""
    types = {f.name: f.type for f in schema}
    tables = []
    for group in groups:
        if isinstance(group, pa.Table):  # already converted by Storage.compact_pending
            tables.append(conform(group, schema))
            continue
        names = group[0]
        columns = group[1] if len(group) == 3 else list(zip(*group[1], strict=True))
        arrays = [pa.array(col, types[name]) for name, col in zip(names, columns, strict=True)]
        tables.append(conform(pa.Table.from_arrays(arrays, names=list(names)), schema))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Project ``table`` onto ``schema``: same order, missing columns as nulls (no copy otherwise)."""
    if table.schema.equals(schema):
        return table
    names = set(table.column_names)
    cols = []
    for f in schema:
        if f.name in names:
            col = table.column(f.name)
            cols.append(col if col.type.equals(f.type) else col.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def key_columns(schema: pa.Schema) -> list[str]:
    """Series key + time: every dictionary (tag) column and ``time``."""
    return [f.name for f in schema if f.type == TAG_TYPE] + [TIME_COLUMN]


def dedup(table: pa.Table) -> pa.Table:
    """Collapse rows with equal tags and time; later rows win field by field (nulls do not overwrite)."""
    if table.num_rows <= 1:
        return table
    time_col = table.column(TIME_COLUMN)
    if pc.count_distinct(time_col).as_py() == table.num_rows:
        return table
    names = table.column_names
    keyset = set(key_columns(table.schema))
    table = table.unify_dictionaries()
    # Acero reads a column name given as a string as a field path when it starts with "." (".v" is
    # column "v"), so the grouping works on positional names and the real ones are put back after
    # (issue 9 item 3: a field ".v" took the values of "v")
    work = table.rename_columns([f"c{i}" for i in range(len(names))])
    keys = [f"c{i}" for i, n in enumerate(names) if n in keyset]
    values = [f"c{i}" for i, n in enumerate(names) if n not in keyset]
    if work.group_by(keys, use_threads=False).aggregate([]).num_rows == table.num_rows:
        return table
    grouped = work.group_by(keys, use_threads=False).aggregate([(n, "last") for n in values])
    columns = [grouped.column(f"c{i}" if n in keyset else f"c{i}_last") for i, n in enumerate(names)]
    return zero_null_keys(pa.Table.from_arrays(columns, names=names).cast(table.schema))


def zero_null_keys(table: pa.Table) -> pa.Table:
    """``table`` with index 0 in the null slots of every dictionary column.

    Arrow leaves the index under a null slot undefined, and pyarrow's hash ``group_by`` (Arrow 26) emits
    arbitrary values there for a null key. ``unify_dictionaries`` and ``Concatenate`` transpose every
    index, null or not, through a lookup table, so such a value reads far outside it: the process dies
    with SIGSEGV (issue 9 item 1: a table whose chunks mixed rows with and without a tag). Every table
    the buffers keep therefore holds only in-range indices; chunks without nulls are kept as they are."""
    columns = []
    changed = False
    for col in table.columns:
        if pa.types.is_dictionary(col.type) and col.null_count:
            col = pa.chunked_array([_zero_null_indices(ch) for ch in col.chunks], col.type)
            changed = True
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=table.schema) if changed else table


def _zero_null_indices(chunk: pa.DictionaryArray) -> pa.DictionaryArray:
    if not chunk.null_count:
        return chunk
    valid = pc.is_valid(chunk.indices)  # computed: a fresh bitmap at offset 0
    data = pc.fill_null(chunk.indices, 0)  # computed: a fresh buffer at offset 0, 0 under every null
    indices = pa.Array.from_buffers(chunk.indices.type, len(chunk), [valid.buffers()[1], data.buffers()[1]],
                                    null_count=chunk.null_count)
    return pa.DictionaryArray.from_arrays(indices, chunk.dictionary)


def time_range(table: pa.Table) -> tuple[int, int]:
    mm = pc.min_max(table.column(TIME_COLUMN).cast(pa.int64()))
    return mm["min"].as_py(), mm["max"].as_py()


def merge_deduped(old: pa.Table | None, old_range: tuple[int, int] | None, new: pa.Table) -> pa.Table:
    """Merge two deduplicated tables of one schema; ``new`` wins. Only the overlapping time range of
    ``old`` is deduplicated again."""
    if old is None or old.num_rows == 0:
        return new
    if new.num_rows == 0:
        return old
    assert old_range is not None
    nmin, nmax = time_range(new)
    if nmin > old_range[1] or nmax < old_range[0]:
        return pa.concat_tables([old, new])
    t = old.column(TIME_COLUMN).cast(pa.int64())
    mask = pc.and_(pc.greater_equal(t, nmin), pc.less_equal(t, nmax))
    overlap = old.filter(mask)
    if overlap.num_rows == 0:
        return pa.concat_tables([old, new])
    rest = old.filter(pc.invert(mask))
    merged = dedup(pa.concat_tables([overlap, new]).unify_dictionaries())
    return pa.concat_tables([rest, merged])


def _between(table: pa.Table, lo: int, hi: int) -> pa.Table:
    t = table.column(TIME_COLUMN).cast(pa.int64())
    return table.filter(pc.and_(pc.greater_equal(t, lo), pc.less_equal(t, hi)))


def _may_collide(file_tables: list[pa.Table], mem: pa.Table, mem_range: tuple[int, int] | None,
                 files: list[SnapshotFile]) -> bool:
    """Whether some row of the snapshot files and some row of the memory table share tags and time.
    Neither side holds such a pair by itself (files are deduplicated and never overlap in time; the
    memory table is deduplicated), and a pair has its time in both time ranges, so only the rows in the
    intersection of the ranges are checked (``dedup`` of the whole is needed only when this is true)."""
    if mem_range is None or mem.num_rows == 0:
        return False
    files_lo = min(f.min_time for f in files)
    files_hi = max(f.max_time for f in files)
    lo, hi = max(files_lo, mem_range[0]), min(files_hi, mem_range[1])
    if lo > hi:
        return False
    subset = pa.concat_tables([*(_between(t, lo, hi) for t in file_tables), _between(mem, lo, hi)])
    return dedup(subset.unify_dictionaries()).num_rows != subset.num_rows


def _covers(schema: pa.Schema, pending: list[RowGroup]) -> bool:
    """Whether every column of the pending row groups is in ``schema``."""
    names = set(schema.names)
    return all(names.issuperset(group.column_names if isinstance(group, pa.Table) else group[0])
               for group in pending)


@dataclass
class SnapshotFile:
    name: str
    min_time: int
    max_time: int
    rows: int


@dataclass
class TableBuffer:
    """In-memory rows of one table: pending rows (row groups of Python values, or Arrow tables once
    :meth:`Storage.compact_pending` converted them) plus the cached deduplicated Arrow table."""

    pending: list[RowGroup] = field(default_factory=list)
    pending_rows: int = 0
    cached: pa.Table | None = None
    cached_range: tuple[int, int] | None = None
    files: list[SnapshotFile] = field(default_factory=list)

    @property
    def buffered_rows(self) -> int:
        return self.pending_rows + (0 if self.cached is None else self.cached.num_rows)

    def materialize(self, schema: pa.Schema) -> pa.Table:
        """The deduplicated in-memory rows in ``schema`` (cached until the next write)."""
        if self.pending:
            chunk = dedup(rows_to_table(self.pending, schema))
            self.pending = []
            self.pending_rows = 0
            old = None if self.cached is None else conform(self.cached, schema)
            merged = merge_deduped(old, self.cached_range, chunk)
            if merged.column(0).num_chunks > _MAX_CHUNKS if merged.num_columns else False:
                merged = merged.unify_dictionaries().combine_chunks()
            self.cached = merged
            self.cached_range = time_range(merged) if merged.num_rows else None
        if self.cached is None:
            self.cached = schema.empty_table()
        elif not self.cached.schema.equals(schema):
            self.cached = conform(self.cached, schema)
        return self.cached


class Storage:
    """All tables' buffers and snapshot files. Thread-safe: one lock guards the buffers."""

    def __init__(self, data_dir: Path | None):
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self._tables: dict[tuple[int, int], TableBuffer] = {}
        self.snapshot_sequence = 0  # the WAL sequence covered by snapshots
        self._file_counter = 0
        if data_dir is not None:
            self._load_manifest()

    # ------------------------------------------------------------------ manifest
    @property
    def _manifest_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "snapshots.json"

    def _table_dir(self, db_id: int, table_id: int) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "dbs" / str(db_id) / str(table_id)

    def _load_manifest(self) -> None:
        path = self._manifest_path
        if not path.exists():
            return
        obj = read_json_file(path, dict)
        try:
            self.snapshot_sequence = int(obj.get("wal_sequence", 0))
            self._file_counter = int(obj.get("file_counter", 0))
            for key, files in obj.get("tables", {}).items():
                db_id, table_id = (int(x) for x in key.split("/"))
                buf = self._tables.setdefault((db_id, table_id), TableBuffer())
                buf.files = [SnapshotFile(**f) for f in files]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._tables.clear()
            raise DamagedFileError(path, 0, f"not a snapshot manifest: {type(exc).__name__} {exc}") from None

    def _save_manifest(self) -> None:
        obj = {
            "version": 1,
            "wal_sequence": self.snapshot_sequence,
            "file_counter": self._file_counter,
            "tables": {
                f"{db}/{tid}": [f.__dict__ for f in buf.files]
                for (db, tid), buf in self._tables.items()
                if buf.files
            },
        }
        atomic_write(self._manifest_path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))

    # ------------------------------------------------------------------ writes
    def apply(self, db_id: int, table_id: int, names: tuple[str, ...], rows: Any,
              num_rows: int | None = None) -> None:
        """Append validated rows (tuples in ``names`` order) to a table's buffer; with ``num_rows``,
        ``rows`` holds the same rows as columns (one sequence of values per name)."""
        with self.lock:
            buf = self._tables.get((db_id, table_id))
            if buf is None:
                buf = self._tables[(db_id, table_id)] = TableBuffer()
            if num_rows is None:
                buf.pending.append((tuple(names), rows))
                buf.pending_rows += len(rows)
            else:
                buf.pending.append((tuple(names), rows, num_rows))
                buf.pending_rows += num_rows

    def snapshot_files(self, db_id: int, table_id: int) -> list[SnapshotFile]:
        """The Parquet snapshot files of one table (``system.parquet_files``)."""
        with self.lock:
            buf = self._tables.get((db_id, table_id))
            return [] if buf is None else list(buf.files)

    def compact_pending(self, db_id: int, table_id: int, schema: pa.Schema) -> None:
        """Turn the table's pending rows that are still Python values into one Arrow table in ``schema``
        (issue 9 item 10: held as Python objects, 1,000,000 rows of 3 tags and 8 fields took over 500 MiB;
        as Arrow they take about 90). The engine calls it after each flush, off the writers' path; rows
        whose columns ``schema`` lacks (a column added since it was read) stay as they are for the next
        call or the query path."""
        with self.lock:
            buf = self._tables.get((db_id, table_id))
            if buf is None:
                return
            pending = buf.pending
            first_raw = len(pending)
            while first_raw and not isinstance(pending[first_raw - 1], pa.Table):
                first_raw -= 1
            raw = pending[first_raw:]
            if not raw or not _covers(schema, raw):
                return
            buf.pending = [*pending[:first_raw], rows_to_table(raw, schema)]

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory (pending plus cached; an upper bound before deduplication)."""
        with self.lock:
            return sum(b.buffered_rows for b in self._tables.values())

    def drop_table(self, db_id: int, table_id: int) -> None:
        """Forget a table's rows (soft delete hides them; the files are removed)."""
        with self.lock:
            buf = self._tables.pop((db_id, table_id), None)
            if buf is not None and buf.files and self.data_dir is not None:
                self._remove_files(db_id, table_id, buf.files)
                self._save_manifest()

    def drop_database(self, db_id: int) -> None:
        with self.lock:
            for key in [k for k in self._tables if k[0] == db_id]:
                self.drop_table(*key)

    def _remove_files(self, db_id: int, table_id: int, files: list[SnapshotFile]) -> None:
        directory = self._table_dir(db_id, table_id)
        for f in files:
            (directory / f.name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ reads
    def table(self, db_id: int, tdef: TableDef, schema_lock: Any = None) -> pa.Table:
        """All rows of a table (snapshot files + buffer), deduplicated, columns alphabetical.
        ``schema_lock`` (the catalog's) guards ``tdef`` against writers adding columns meanwhile."""
        while True:
            if schema_lock is None:
                schema = arrow_schema(tdef)
            else:
                with schema_lock:
                    schema = arrow_schema(tdef)
            with self.lock:
                buf = self._tables.get((db_id, tdef.id))
                if buf is None:
                    return schema.empty_table()
                if buf.pending and not _covers(schema, buf.pending):
                    continue  # a write added a column after the schema was read: read it again
                mem = buf.materialize(schema)
                files = list(buf.files)
                mem_range = buf.cached_range
            if not files:
                return mem
            try:
                return self._with_files(db_id, tdef.id, files, mem, mem_range, schema)
            except FileNotFoundError:
                # a snapshot merged these files into a new one (or the table was dropped) after they
                # were listed and removed them: read the table again as it is now
                with self.lock:
                    now = self._tables.get((db_id, tdef.id))
                    if now is not None and now.files == files:
                        raise

    def _with_files(self, db_id: int, table_id: int, files: list[SnapshotFile], mem: pa.Table,
                    mem_range: tuple[int, int] | None, schema: pa.Schema) -> pa.Table:
        directory = self._table_dir(db_id, table_id)
        parts: list[pa.Table] = []
        overlapping: list[pa.Table] = []
        for f in files:
            data = conform(pq.read_table(directory / f.name, memory_map=True), schema)
            if mem_range is not None and not (f.max_time < mem_range[0] or f.min_time > mem_range[1]):
                overlapping.append(data)
            else:
                parts.append(data)
        if overlapping:
            combined = pa.concat_tables([*overlapping, mem]).unify_dictionaries()
            if _may_collide(overlapping, mem, mem_range, files):
                combined = dedup(combined)
            parts.append(combined)
        else:
            parts.append(mem)
        return pa.concat_tables(parts)

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, tables: dict[tuple[int, int], TableDef], wal_sequence: int) -> int:
        """Write every in-memory table to Parquet, record that WAL through ``wal_sequence`` is covered,
        and free the buffers. ``tables`` maps (db_id, table_id) to the live definition; buffers of
        tables not in it are dropped. Returns the number of rows written. Memory-only: no-op."""
        if self.data_dir is None:
            return 0
        written = 0
        obsolete: list[Path] = []
        with self.lock:
            for key in list(self._tables):
                buf = self._tables[key]
                tdef = tables.get(key)
                if tdef is None:
                    self.drop_table(*key)
                    continue
                schema = arrow_schema(tdef)
                mem = buf.materialize(schema)
                if mem.num_rows == 0:
                    continue
                written += mem.num_rows
                buf.files = self._write_snapshot_file(key, buf.files, mem, schema, obsolete)
                buf.cached = None
                buf.cached_range = None
            self.snapshot_sequence = max(self.snapshot_sequence, wal_sequence)
            self._save_manifest()
        for path in obsolete:
            path.unlink(missing_ok=True)
        return written

    def _write_snapshot_file(self, key: tuple[int, int], files: list[SnapshotFile], mem: pa.Table,
                             schema: pa.Schema, obsolete: list[Path]) -> list[SnapshotFile]:
        directory = self._table_dir(*key)
        directory.mkdir(parents=True, exist_ok=True)
        lo, hi = time_range(mem)
        overlapping = [f for f in files if not (f.max_time < lo or f.min_time > hi)]
        keep = [f for f in files if f not in overlapping]
        data = mem
        if overlapping:
            olds = [conform(pq.read_table(directory / f.name), schema) for f in overlapping]
            data = dedup(pa.concat_tables([*olds, mem]).unify_dictionaries())
            lo, hi = time_range(data)
        self._file_counter += 1
        name = f"{self._file_counter}.parquet"
        tmp = directory / (name + ".tmp")
        pq.write_table(data, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(directory / name)
        fsync_dir(directory)
        # the merged-away files are removed only once the manifest no longer names them
        obsolete.extend(directory / f.name for f in overlapping)
        return [*keep, SnapshotFile(name, lo, hi, data.num_rows)]
