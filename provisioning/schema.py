"""The tables of DESIGN.md with their tags and field types, and a check of a live schema against them.

Tables are created before any trigger because a ``table:gh`` trigger needs its table on the real server.
"""

from __future__ import annotations

from dataclasses import dataclass

INT = "int64"
STR = "utf8"


@dataclass(frozen=True)
class TableSchema:
    name: str
    tags: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]  # (name, type) with types utf8|int64|uint64|float64|bool

    def request_fields(self) -> list[dict[str, str]]:
        return [{"name": n, "type": t} for n, t in self.fields]


TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        "gh",
        ("repo", "ref", "pr_number"),
        (("activity_type", STR), ("lines", INT), ("additions", INT), ("deletions", INT),
         ("author", STR), ("title", STR), ("url", STR)),
    ),
    TableSchema(
        "gh_file",
        ("repo", "ref", "pr_number", "path"),
        (("additions", INT), ("deletions", INT), ("change_type", STR), ("previous_path", STR)),
    ),
    TableSchema(
        "kapa_source",
        ("project_id", "source_id", "source_name", "source_type", "event_type"),
        (("timestamp_unix", INT), ("timezone", STR), ("occurred", INT), ("scheduled", INT)),
    ),
    TableSchema(
        "integration_status",
        ("repo", "source_name"),
        (("days_since_ingestion", INT), ("prs_since_ingestion", INT), ("lines_since_ingestion", INT),
         ("files_changed", INT), ("pages_changed", INT), ("needs_update", INT), ("severity_threshold", INT),
         ("status", STR)),
    ),
    TableSchema(
        "documentation_alert",
        ("repo", "source_name", "severity"),
        (("message", STR), ("lines_changed", INT), ("days_since_ingestion", INT)),
    ),
    # One row per changed page of a source and repository since an ingestion (time = that ingestion, so each
    # evaluation in the window replaces the rows; evaluated_at = the time of the evaluation's integration_status
    # row): what the Grafana "Stale pages" panel shows.
    TableSchema(
        "stale_page",
        ("source_name", "repo", "page"),
        (("lines_changed", INT), ("pr_count", INT), ("pr_numbers", STR), ("last_merged_at", STR),
         ("evaluated_at", STR)),
    ),
)

# Arrow type names as DataFusion prints them in information_schema.columns.data_type.
_ARROW_NAMES: dict[str, tuple[str, ...]] = {
    "utf8": ("Utf8", "Utf8View", "LargeUtf8"),
    "int64": ("Int64",),
    "uint64": ("UInt64",),
    "float64": ("Float64",),
    "bool": ("Boolean",),
}

COLUMNS_SQL = (
    "SELECT table_name, column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = 'iox' ORDER BY table_name, column_name"
)


def _kind(data_type: str) -> str:
    """Our type word for an Arrow type string: tag, time, one of the field types, or the raw text."""
    if data_type.startswith("Dictionary"):
        return "tag"
    if data_type.startswith("Timestamp"):
        return "time"
    for word, names in _ARROW_NAMES.items():
        if data_type in names:
            return word
    return data_type


@dataclass(frozen=True)
class SchemaReport:
    """Differences between a live table and the declared one."""

    mismatches: tuple[str, ...]  # will break writes: wrong type, tag/field swapped
    missing: tuple[str, ...]  # columns the server adds on first write; informational


def compare_schema(table: TableSchema, live_columns: dict[str, str]) -> SchemaReport:
    """Compare declared ``table`` with ``live_columns`` ({column: data_type}) from information_schema."""
    mismatches: list[str] = []
    missing: list[str] = []
    expected: dict[str, str] = {t: "tag" for t in table.tags}
    expected.update(dict(table.fields))
    for column, want in expected.items():
        got = live_columns.get(column)
        if got is None:
            missing.append(f"{column} ({want})")
            continue
        have = _kind(got)
        if have != want:
            mismatches.append(f"column {column} is {have if have in ('tag', 'time') else got}, expected {want}")
    return SchemaReport(tuple(mismatches), tuple(missing))
