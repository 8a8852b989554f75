"""``python -m provisioning``: make a server's database, tables, packages and triggers match the declaration.

Exit status: 0 when everything is as declared (whether or not anything changed), 1 with one line per
failure on stderr, 2 for bad command-line usage. Nothing printed ever contains a token.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from provisioning.client import InfluxClient
from provisioning.errors import ApiError, AuthError, ProvisioningError, ServerUnavailable, TriggerConfigError
from provisioning.freshness import NO_FILE_VALUES, FreshnessConfig, load_freshness
from provisioning.schema import COLUMNS_SQL, TABLES, compare_schema
from provisioning.settings import Settings, load_environment
from provisioning.triggers import (
    ARGUMENTS_SQL,
    TRIGGERS_SQL,
    Action,
    LiveTrigger,
    Step,
    TriggerDecl,
    live_from_rows,
    load_triggers,
    plan,
)


@dataclass
class Report:
    """Collects what happened; prints progress to ``out`` and failures to ``err`` as they occur."""

    out: TextIO
    err: TextIO
    dry_run: bool = False
    changes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def info(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def change(self, line: str) -> None:
        self.changes.append(line)
        print(("would " if self.dry_run else "") + line, file=self.out, flush=True)

    def fail(self, line: str) -> None:
        self.failures.append(line)
        print(f"error: {line}", file=self.err, flush=True)


def explain_trigger_error(decl: TriggerDecl, exc: ApiError) -> str:
    """One line naming the trigger, what the server said, and the fix where we know it."""
    body = exc.body
    if "Plugin not found" in body or "reading plugin file" in body:
        fix = "put the file in plugins/ (the server's --plugin-dir) or correct plugin in triggers.toml"
        return f"trigger {decl.name}: plugin file {decl.plugin} is not in the server's plugin directory; {fix}"
    if "Node not configured with plugin directory" in body:
        return f"trigger {decl.name}: the server runs without --plugin-dir; start it with --plugin-dir"
    if "configured to reject" in body:
        return f"trigger {decl.name}: the server refuses this trigger type ({body}); widen --restrict-plugin-triggers-to"
    if "failed to parse trigger" in body:
        return f"trigger {decl.name}: the server rejected spec {decl.spec!r} ({body}); fix spec in triggers.toml"
    if exc.status == 404:
        return f"trigger {decl.name}: database not found ({body}); provisioning creates it first, check INFLUXDB3_DATABASE"
    return f"trigger {decl.name}: {exc}"


class Provisioner:
    """Applies the declaration to one server."""

    def __init__(self, settings: Settings, client: InfluxClient, report: Report, *, prune: bool = False):
        self.settings = settings
        self.client = client
        self.report = report
        self.prune = prune
        self.db = settings.database

    # -- database and tables ----------------------------------------------------------------------------
    def ensure_database(self) -> bool:
        """Create the database unless it exists; returns whether it exists afterwards (False only in dry run)."""
        if self.report.dry_run:
            if self.db in self.client.list_databases():
                self.report.info(f"database {self.db}: exists")
                return True
            self.report.change(f"create database {self.db}")
            return False
        if self.client.create_database(self.db):
            self.report.change(f"created database {self.db}")
        else:
            self.report.info(f"database {self.db}: exists")
        return True

    def ensure_tables(self, db_exists: bool) -> None:
        live: dict[str, dict[str, str]] = {}
        if db_exists:
            for row in self.client.query(self.db, COLUMNS_SQL):
                live.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"]
        for table in TABLES:
            if table.name not in live:
                if self.report.dry_run:
                    self.report.change(f"create table {table.name}")
                    continue
                if self.client.create_table(self.db, table.name, list(table.tags), table.request_fields()):
                    self.report.change(f"created table {table.name}")
                    continue
                # a concurrent creator beat us: read it back and compare
                cols = [r for r in self.client.query(self.db, COLUMNS_SQL) if r["table_name"] == table.name]
                live[table.name] = {r["column_name"]: r["data_type"] for r in cols}
            result = compare_schema(table, live[table.name])
            for mismatch in result.mismatches:
                self.report.fail(
                    f"table {table.name}: {mismatch}; writes of that column will be rejected "
                    f"(drop the table or write the declared type)"
                )
            if not result.mismatches:
                note = f" (not yet present, added on first write: {', '.join(result.missing)})" if result.missing else ""
                self.report.info(f"table {table.name}: exists, schema matches{note}")

    def install_packages(self) -> None:
        packages = list(self.settings.packages)
        if not packages:
            return
        if self.report.dry_run:
            self.report.info(f"packages: would ask the server to install {' '.join(packages)}")
            return
        self.client.install_packages(packages)
        self.report.info(f"packages: {' '.join(packages)} installed in the server's plugin environment")

    # -- triggers ----------------------------------------------------------------------------------------
    def live_triggers(self, db_exists: bool) -> list[LiveTrigger]:
        if not db_exists:
            return []
        rows = self.client.query(self.db, TRIGGERS_SQL)
        try:
            arg_rows: list[dict] | None = self.client.query(self.db, ARGUMENTS_SQL)
        except ApiError as exc:
            if isinstance(exc, AuthError):
                raise
            self.report.info("note: this server does not list trigger arguments; argument changes are not detected")
            arg_rows = None
        return live_from_rows(rows, arg_rows)

    def _create(self, decl: TriggerDecl) -> None:
        self.client.create_trigger(
            self.db,
            decl.name,
            decl.plugin,
            decl.spec,
            decl.arguments,
            run_async=decl.run_async,
            error_behavior=decl.error_behavior,
            disabled=decl.disabled,
        )

    def apply_step(self, step: Step) -> None:
        r = self.report
        if step.action is Action.KEEP:
            r.info(f"trigger {step.name}: unchanged")
            return
        if step.action is Action.UNDECLARED:
            r.info(f"trigger {step.name}: {step.detail}")
            return
        if r.dry_run:
            r.change(f"{step.action.value} trigger {step.name} ({step.detail})")
            return
        try:
            if step.action in (Action.REPLACE, Action.DELETE):
                self.client.disable_trigger(self.db, step.name)
                self.client.delete_trigger(self.db, step.name, force=True)
            if step.action in (Action.CREATE, Action.REPLACE):
                assert step.decl is not None
                self._create(step.decl)
        except AuthError:
            raise
        except ApiError as exc:
            if step.decl is not None:
                r.fail(explain_trigger_error(step.decl, exc))
            else:
                r.fail(f"trigger {step.name}: {exc}")
            return
        verb = {Action.CREATE: "created", Action.REPLACE: "replaced", Action.DELETE: "deleted"}[step.action]
        r.change(f"{verb} trigger {step.name} ({step.detail})")

    def run(self, decls: list[TriggerDecl]) -> None:
        self.client.wait_healthy(self.settings.wait_seconds)
        db_exists = self.ensure_database()
        self.ensure_tables(db_exists)
        self.install_packages()
        for step in plan(decls, self.live_triggers(db_exists), prune=self.prune):
            self.apply_step(step)


def load_declarations(settings: Settings, env: dict[str, str]
                      ) -> tuple[FreshnessConfig | None, list[TriggerDecl], list[TriggerConfigError]]:
    """freshness.toml (validated; None without the file) and the triggers it feeds. FRESHNESS_REPOS and
    FRESHNESS_SOURCES are always set here, never taken from the environment, so only a validated file reaches
    the trigger arguments. Raises ProvisioningError (one line) for a bad freshness.toml."""
    freshness = load_freshness(settings.freshness_file, env, settings.plugin_dir)
    env = {**env, **(freshness.trigger_values() if freshness else NO_FILE_VALUES)}
    decls, errors = load_triggers(settings.triggers_file, env)
    return freshness, decls, errors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m provisioning",
        description="Create the database, tables, plugin packages and triggers of aichat-stack on an "
        "InfluxDB 3 Core server (or the embedded engine). Settings come from the environment and .env.",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--prune", action="store_true", help="delete live triggers that triggers.toml does not declare")
    p.add_argument("--triggers-file", help="triggers TOML (default: PROVISION_TRIGGERS_FILE or the packaged one)")
    p.add_argument("--freshness-file",
                   help="sources to compare (default: PROVISION_FRESHNESS_FILE or provisioning/freshness.toml)")
    p.add_argument("--env-file", help="dotenv file to read (default: PROVISION_ENV_FILE or ./.env)")
    return p


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None,
         environ: dict[str, str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    report = Report(out, err, dry_run=args.dry_run)
    try:
        env = load_environment(environ, Path(args.env_file) if args.env_file else None)
        if args.triggers_file:
            env["PROVISION_TRIGGERS_FILE"] = args.triggers_file
        if args.freshness_file:
            env["PROVISION_FRESHNESS_FILE"] = args.freshness_file
        settings = Settings.from_env(env)
        freshness, decls, errors = load_declarations(settings, env)
        for e in errors:
            report.fail(str(e))
        if errors:
            report.info(f"{len(errors)} trigger(s) in {settings.triggers_file} cannot work; nothing was changed")
            return 1
        if freshness:
            report.info(f"freshness: {len(freshness.sources)} source(s), {len(freshness.repos)} repositories "
                        f"from {freshness.path}")
        else:
            # Say which mode applies, so a mistyped PROVISION_FRESHNESS_FILE is seen, not silently single-source.
            named = " (PROVISION_FRESHNESS_FILE)" if env.get("PROVISION_FRESHNESS_FILE", "").strip() else ""
            report.info(f"freshness: {settings.freshness_file}{named} does not exist: one source from "
                        "KAPA_SOURCE_NAME, GITHUB_REPO, GITHUB_BASE and SEVERITY_THRESHOLD")
        report.info(
            f"provisioning {settings.host_url} database {settings.database} "
            f"({len(decls)} triggers from {settings.triggers_file}){' [dry run]' if args.dry_run else ''}"
        )
        Provisioner(settings, InfluxClient(settings.host_url, settings.token), report, prune=args.prune).run(decls)
    except (ServerUnavailable, AuthError) as exc:
        report.fail(str(exc))
        return 1
    except ProvisioningError as exc:
        report.fail(str(exc))
        return 1
    if report.failures:
        report.info(f"done with {len(report.failures)} failure(s)")
        return 1
    if report.dry_run:
        report.info(f"dry run: {len(report.changes)} change(s) planned" if report.changes else "dry run: no change needed")
    elif report.changes:
        report.info(f"done: {len(report.changes)} change(s)")
    else:
        report.info("no change: database, tables and triggers already as declared")
    return 0
