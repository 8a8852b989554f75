"""Processing-engine system tables (reference: influxdb3-processing-engine.md §9).

* ``system.processing_engine_triggers`` (per database): trigger_name, plugin_filename,
  trigger_specification (serde JSON text), disabled, error_behavior;
* ``system.processing_engine_trigger_arguments`` (per database): trigger_name, argument_key, argument_value;
* ``system.processing_engine_logs``: event_time Timestamp(ns), trigger_name, log_level, log_text; an in-memory
  ring of 10,000 events shared by all databases, cleared on restart;
* ``system.plugin_files`` (only in ``_internal``): plugin_name, file_name, file_path, size_bytes,
  last_modified (ms).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

#: The server keeps this many log events (SYS ``processing_engine_logs``).
LOG_RING_SIZE = 10_000
INTERNAL_DB = "_internal"


@dataclass(frozen=True)
class LogEvent:
    event_time_ns: int
    trigger_name: str
    log_level: str
    log_text: str


class LogStore:
    """Thread-safe ring of the most recent :data:`LOG_RING_SIZE` plugin log events."""

    def __init__(self, size: int = LOG_RING_SIZE) -> None:
        self._lock = threading.Lock()
        self._events: deque[LogEvent] = deque(maxlen=size)

    def add(self, trigger_name: str, level: str, text: str) -> None:
        event = LogEvent(time.time_ns(), trigger_name, level, text)
        with self._lock:
            self._events.append(event)

    def snapshot(self) -> list[LogEvent]:
        with self._lock:
            return list(self._events)


LOGS_SCHEMA = pa.schema([
    pa.field("event_time", pa.timestamp("ns"), nullable=False),
    pa.field("trigger_name", pa.string(), nullable=False),
    pa.field("log_level", pa.string(), nullable=False),
    pa.field("log_text", pa.string(), nullable=False),
])
TRIGGERS_SCHEMA = pa.schema([
    pa.field("trigger_name", pa.string(), nullable=False),
    pa.field("plugin_filename", pa.string(), nullable=False),
    pa.field("trigger_specification", pa.string(), nullable=False),
    pa.field("disabled", pa.bool_(), nullable=False),
    pa.field("error_behavior", pa.string(), nullable=False),
])
ARGUMENTS_SCHEMA = pa.schema([
    pa.field("trigger_name", pa.string(), nullable=False),
    pa.field("argument_key", pa.string(), nullable=False),
    pa.field("argument_value", pa.string(), nullable=False),
])
PLUGIN_FILES_SCHEMA = pa.schema([
    pa.field("plugin_name", pa.string(), nullable=False),
    pa.field("file_name", pa.string(), nullable=False),
    pa.field("file_path", pa.string(), nullable=False),
    pa.field("size_bytes", pa.int64(), nullable=False),
    pa.field("last_modified", pa.int64(), nullable=False),
])


def logs_table(store: LogStore) -> pa.Table:
    events = store.snapshot()
    return pa.table(
        {
            "event_time": pa.array([e.event_time_ns for e in events], pa.timestamp("ns")),
            "trigger_name": [e.trigger_name for e in events],
            "log_level": [e.log_level for e in events],
            "log_text": [e.log_text for e in events],
        },
        schema=LOGS_SCHEMA,
    )


#: (db, name, record) as stored in the catalog
TriggerRow = tuple[str, str, dict[str, Any]]


def triggers_table(rows: list[TriggerRow], spec_json: Callable[[str], str]) -> pa.Table:
    """``spec_json`` turns the stored ``trigger_specification`` string into its serde JSON text."""
    return pa.table(
        {
            "trigger_name": [name for _, name, _ in rows],
            "plugin_filename": [rec["plugin_filename"] for _, _, rec in rows],
            "trigger_specification": [spec_json(rec["trigger_specification"]) for _, _, rec in rows],
            "disabled": [bool(rec.get("disabled")) for _, _, rec in rows],
            "error_behavior": [rec["trigger_settings"]["error_behavior"] for _, _, rec in rows],
        },
        schema=TRIGGERS_SCHEMA,
    )


def arguments_table(rows: list[TriggerRow]) -> pa.Table:
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    for _, name, rec in rows:
        for key, value in (rec.get("trigger_arguments") or {}).items():
            names.append(name)
            keys.append(key)
            values.append(value)
    return pa.table({"trigger_name": names, "argument_key": keys, "argument_value": values},
                    schema=ARGUMENTS_SCHEMA)


def plugin_files_table(db: str, rows: list[TriggerRow], plugin_dir: Path | None) -> pa.Table | None:
    """One row per trigger whose plugin is a local file; None (no such table) outside ``_internal``.

    The server registers ``plugin_files`` only in ``_internal``'s system schema (influxdb3_system_tables
    ``AllSystemSchemaTablesProvider::new``), so elsewhere the query fails as for any unknown table.
    """
    if db != INTERNAL_DB:
        return None
    cols: dict[str, list[Any]] = {name: [] for name in PLUGIN_FILES_SCHEMA.names}
    if plugin_dir is not None:
        for _, name, rec in rows:
            filename = rec["plugin_filename"]
            path = plugin_dir / filename
            try:
                st = path.stat()
            except OSError:
                continue
            cols["plugin_name"].append(name)
            cols["file_name"].append(filename)
            cols["file_path"].append(str(path))
            cols["size_bytes"].append(int(st.st_size))
            cols["last_modified"].append(int(st.st_mtime * 1000))
    return pa.table(cols, schema=PLUGIN_FILES_SCHEMA)
