"""``serve`` configuration: the real server's flag names and environment variables (reference §13).

:func:`parse_serve_args` turns argv (plus the environment) into a :class:`ServeConfig`. Flags win over
environment variables, which win over defaults, as clap's ``env = …`` does.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HTTP_BIND = "0.0.0.0:8181"
DEFAULT_MAX_REQUEST_SIZE = 10 * 1024 * 1024
DEFAULT_RECOVERY_BIND = "127.0.0.1:8182"
#: WAL snapshot settings, with the server's defaults (influxdb3/src/commands/serve.rs)
DEFAULT_WAL_SNAPSHOT_SIZE = 600
DEFAULT_SNAPSHOTTED_WAL_FILES_TO_KEEP = 300
#: --gen1-duration accepts exactly these (influxdb3_wal ``Gen1Duration::from_str``), in seconds
GEN1_DURATIONS = {"1m": 60, "5m": 300, "10m": 600}
#: --disable-authz accepts these resource names (reference §12).
AUTHZ_RESOURCES = ("health", "ping", "metrics", "ready", "pprof", "node_stop")
TRIGGER_KINDS = ("wal", "schedule", "request")
OBJECT_STORES = ("file", "memory")
_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n", ""}


class ConfigError(ValueError):
    """A flag or environment value the server would reject at startup (one-line message)."""


@dataclass
class ServeConfig:
    node_id: str
    data_dir: Path | None  # None with --object-store memory
    object_store: str = "file"
    plugin_dir: Path | None = None
    virtual_env_location: Path | None = None
    http_host: str = "0.0.0.0"
    http_port: int = 8181
    admin_token_file: Path | None = None
    without_auth: bool = False
    disable_authz: frozenset[str] = frozenset()
    log_filter: str = "info"
    wal_flush_interval: float = 1.0
    max_http_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    restrict_plugin_triggers_to: set[str] = field(default_factory=lambda: set(TRIGGER_KINDS))
    admin_token_recovery_http_bind: str | None = None
    wal_snapshot_size: int = DEFAULT_WAL_SNAPSHOT_SIZE
    gen1_duration_s: int = GEN1_DURATIONS["10m"]
    snapshotted_wal_files_to_keep: int = DEFAULT_SNAPSHOTTED_WAL_FILES_TO_KEEP
    #: --exec-mem-pool-bytes in bytes (None: the server's default, 20% of memory; see parse_memory_size)
    exec_mem_pool_bytes: int | None = None
    #: emulator only: move damaged data files aside at startup instead of stopping (README "Damaged data files")
    repair_damaged_files: bool = False

    @property
    def http_bind(self) -> str:
        return f"{self.http_host}:{self.http_port}"


# -- value parsers -------------------------------------------------------------------------------

_HT_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("nsec", "ns"), 1e-9),
    (("usec", "us", "µs"), 1e-6),
    (("msec", "ms"), 1e-3),
    (("seconds", "second", "secs", "sec", "s"), 1.0),
    (("minutes", "minute", "mins", "min", "m"), 60.0),
    (("hours", "hour", "hrs", "hr", "h"), 3600.0),
    (("days", "day", "d"), 86400.0),
    (("weeks", "week", "w"), 604800.0),
    (("months", "month", "M"), 2_630_016.0),
    (("years", "year", "y"), 31_557_600.0),
):
    for _n in _names:
        _HT_UNITS[_n] = _secs
_HT_TOKEN = re.compile(r"\s*(\d+)\s*([A-Za-zµ]+)")


def _local_humantime(text: str) -> float:
    """humantime 2.x ``parse_duration`` (subset sufficient for flags): ``1s``, ``100ms``, ``1h 30m``."""
    s = text.strip()
    if not s:
        raise ConfigError("value was empty")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _HT_TOKEN.match(s, pos)
        if not m:
            if s[pos:].strip() and not s[pos].isdigit() and not s[pos].isspace():
                raise ConfigError(f"expected number at {pos}")
            raise ConfigError(f"time unit needed, for example {s.strip()}sec or {s.strip()}ms")
        unit = m.group(2)
        if unit not in _HT_UNITS:
            raise ConfigError(f'unknown time unit "{unit}", supported units: ns, us, ms, sec, min, hours, '
                              "days, weeks, months, years (and few variations)")
        total += int(m.group(1)) * _HT_UNITS[unit]
        pos = m.end()
    return total


def parse_humantime(text: str) -> float:
    """A humantime duration in seconds; uses the processing engine's parser when it is available."""
    try:
        from emulator.processing import specs  # written by another engineer; optional
    except ImportError:
        return _local_humantime(text)
    fn = getattr(specs, "parse_humantime", None) or getattr(specs, "parse_duration", None)
    if fn is None:
        return _local_humantime(text)
    try:
        value = fn(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"invalid boolean value '{text}'")


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"invalid value '{text}' for '--http-bind <HTTP_BIND_ADDRESS>': invalid socket address syntax")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def parse_list(text: str, allowed: Sequence[str], flag: str) -> list[str]:
    items = [p.strip() for p in text.split(",") if p.strip()]
    for item in items:
        if item not in allowed:
            raise ConfigError(
                f"invalid value '{item}' for '{flag}': possible values: {', '.join(allowed)}"
            )
    return items


def log_level(log_filter: str) -> int:
    """The Python logging level for a tracing filter such as ``info`` or ``info,iox_query=warn``."""
    levels = {
        "trace": logging.DEBUG,
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warn": logging.WARNING,
        "warning": logging.WARNING,
        "error": logging.ERROR,
        "off": logging.CRITICAL + 10,
    }
    for directive in log_filter.split(","):
        d = directive.strip().lower()
        if d and "=" not in d and d in levels:
            return levels[d]
    return logging.INFO


# -- argparse -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m emulator", description="Embedded InfluxDB 3 Core stand-in")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--node-id", "--host-id", dest="node_id")
    s.add_argument("--data-dir", dest="data_dir")
    s.add_argument("--object-store", dest="object_store")
    s.add_argument("--plugin-dir", dest="plugin_dir")
    s.add_argument("--virtual-env-location", dest="virtual_env_location")
    s.add_argument("--http-bind", dest="http_bind")
    s.add_argument("--admin-token-file", dest="admin_token_file")
    s.add_argument("--without-auth", dest="without_auth", action="store_true", default=None)
    s.add_argument("--disable-authz", dest="disable_authz")
    s.add_argument("--log-filter", dest="log_filter")
    s.add_argument("--wal-flush-interval", dest="wal_flush_interval")
    s.add_argument("--max-http-request-size", dest="max_http_request_size")
    s.add_argument("--restrict-plugin-triggers-to", dest="restrict_plugin_triggers_to")
    s.add_argument("--wal-snapshot-size", dest="wal_snapshot_size")
    s.add_argument("--gen1-duration", dest="gen1_duration")
    s.add_argument("--snapshotted-wal-files-to-keep", dest="snapshotted_wal_files_to_keep")
    s.add_argument("--exec-mem-pool-bytes", dest="exec_mem_pool_bytes")
    s.add_argument("--repair-damaged-files", dest="repair_damaged_files", action="store_true", default=False,
                   help="emulator only: move damaged WAL, catalog or snapshot files aside and start without them")
    s.add_argument(
        "--admin-token-recovery-http-bind",
        dest="admin_token_recovery_http_bind",
        nargs="?",
        const=DEFAULT_RECOVERY_BIND,
    )
    return parser


def _pick(flag: str | None, env: Mapping[str, str], *names: str) -> str | None:
    if flag is not None:
        return flag
    for n in names:
        if n in env:
            return env[n]
    return None


def _unsigned(text: str, flag: str) -> int:
    """A clap ``usize``/``u64`` value, with clap's one-line error for anything else."""
    if not text.isdigit():
        reason = "cannot parse integer from empty string" if not text else "invalid digit found in string"
        raise ConfigError(f"invalid value '{text}' for '{flag}': {reason}")
    return int(text)


_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE = re.compile(r"(\d+)\s*(tb|gb|mb|kb|b)")


def parse_memory_size(text: str, flag: str) -> int:
    """A memory size as the server's 3.x ``--exec-mem-pool-bytes`` takes it, in bytes: ``N%`` of the memory
    this process may use (0-100), a number with a unit suffix (``b``, ``kb``, ``mb``, ``gb``, ``tb``,
    case-insensitive, 1024-based, whitespace allowed before the suffix) or a bare number of megabytes
    (x 1000 x 1000) (clap_blocks ``memory_size.rs``, influxdb3 ``commands/serve.rs`` ``MemorySizeMb``).
    Raises ConfigError naming ``flag``."""
    from emulator.query import total_memory_bytes

    s = text.strip().lower()
    if s.endswith("%"):
        pct = s[:-1].strip()
        if not pct.isdigit():
            raise ConfigError(f"invalid value '{text}' for '{flag}': failed to parse '{s}' as a percentage of "
                              "available memory: invalid digit found in string")
        if int(pct) > 100:
            raise ConfigError(f"invalid value '{text}' for '{flag}': relative memory size must be in [0, 100] "
                              f"but is {int(pct)}")
        return round(int(pct) / 100 * total_memory_bytes())
    m = _SIZE.fullmatch(s)
    if m:
        return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if s.isdigit():
        return int(s) * 1000 * 1000
    raise ConfigError(f"invalid value '{text}' for '{flag}': failed to parse '{s}' as a memory size: expected a "
                      "number, optionally with a unit suffix (b, kb, mb, gb, tb) or a percentage")


def parse_serve_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ServeConfig:
    """argv (without the program name) + environment -> ServeConfig. Raises ConfigError."""
    env = os.environ if env is None else env
    ns = build_parser().parse_args(list(argv))
    node_id = _pick(ns.node_id, env, "INFLUXDB3_NODE_IDENTIFIER_PREFIX")
    if not node_id:
        raise ConfigError(
            "the following required arguments were not provided: --node-id <NODE_IDENTIFIER_PREFIX>"
        )
    object_store = _pick(ns.object_store, env, "INFLUXDB3_OBJECT_STORE") or "file"
    if object_store not in OBJECT_STORES:
        raise ConfigError(
            f"invalid value '{object_store}' for '--object-store <OBJECT_STORE>': "
            f"this emulator supports: {', '.join(OBJECT_STORES)}"
        )
    data_dir_s = _pick(ns.data_dir, env, "INFLUXDB3_DB_DIR") or str(Path.home() / ".influxdb")
    plugin_dir_s = _pick(ns.plugin_dir, env, "INFLUXDB3_PLUGIN_DIR")
    venv_s = _pick(ns.virtual_env_location, env, "VIRTUAL_ENV")
    host, port = parse_bind(_pick(ns.http_bind, env, "INFLUXDB3_HTTP_BIND_ADDR") or DEFAULT_HTTP_BIND)
    token_file = _pick(ns.admin_token_file, env, "INFLUXDB3_ADMIN_TOKEN_FILE")
    if ns.without_auth:
        without_auth = True
    else:
        raw = _pick(None, env, "INFLUXDB3_START_WITHOUT_AUTH", "INFLUXDB3_WITHOUT_AUTH")
        without_auth = parse_bool(raw) if raw is not None else False
    authz = _pick(ns.disable_authz, env, "INFLUXDB3_DISABLE_AUTHZ") or ""
    disable_authz = frozenset(parse_list(authz, AUTHZ_RESOURCES, "--disable-authz <DISABLE_AUTHZ>"))
    log_filter = _pick(ns.log_filter, env, "INFLUXDB3_LOG_FILTER", "LOG_FILTER") or "info"
    flush_s = _pick(ns.wal_flush_interval, env, "INFLUXDB3_WAL_FLUSH_INTERVAL") or "1s"
    try:
        flush = parse_humantime(flush_s)
    except ConfigError as exc:
        raise ConfigError(
            f"invalid value '{flush_s}' for '--wal-flush-interval <WAL_FLUSH_INTERVAL>': {exc}"
        ) from None
    if flush <= 0:
        raise ConfigError("--wal-flush-interval must be greater than zero")
    size_s = _pick(ns.max_http_request_size, env, "INFLUXDB3_MAX_HTTP_REQUEST_SIZE")
    try:
        max_size = int(size_s) if size_s is not None else DEFAULT_MAX_REQUEST_SIZE
    except ValueError:
        raise ConfigError(
            f"invalid value '{size_s}' for '--max-http-request-size <MAX_HTTP_REQUEST_SIZE>': "
            "invalid digit found in string"
        ) from None
    restrict_s = _pick(ns.restrict_plugin_triggers_to, env, "INFLUXDB3_RESTRICT_PLUGIN_TRIGGERS_TO")
    restrict = (
        set(parse_list(restrict_s, TRIGGER_KINDS, "--restrict-plugin-triggers-to"))
        if restrict_s is not None
        else set(TRIGGER_KINDS)
    )
    snap_s = _pick(ns.wal_snapshot_size, env, "INFLUXDB3_WAL_SNAPSHOT_SIZE")
    snapshot_size = (DEFAULT_WAL_SNAPSHOT_SIZE if snap_s is None
                     else _unsigned(snap_s, "--wal-snapshot-size <WAL_SNAPSHOT_SIZE>"))
    gen1_s = _pick(ns.gen1_duration, env, "INFLUXDB3_GEN1_DURATION") or "10m"
    if gen1_s not in GEN1_DURATIONS:
        raise ConfigError(f"invalid value '{gen1_s}' for '--gen1-duration <GEN1_DURATION>': "
                          f"invalid gen1 duration {gen1_s}. Must be one of 1m, 5m, 10m")
    keep_s = _pick(ns.snapshotted_wal_files_to_keep, env, "INFLUXDB3_NUM_WAL_FILES_TO_KEEP")
    keep = (DEFAULT_SNAPSHOTTED_WAL_FILES_TO_KEEP if keep_s is None
            else _unsigned(keep_s, "--snapshotted-wal-files-to-keep <SNAPSHOTTED_WAL_FILES_TO_KEEP>"))
    pool_s = _pick(ns.exec_mem_pool_bytes, env, "INFLUXDB3_EXEC_MEM_POOL_BYTES")
    pool = None if pool_s is None else parse_memory_size(pool_s, "--exec-mem-pool-bytes <EXEC_MEM_POOL_BYTES>")
    return ServeConfig(
        node_id=node_id,
        data_dir=None if object_store == "memory" else Path(data_dir_s).expanduser(),
        object_store=object_store,
        plugin_dir=Path(plugin_dir_s).expanduser() if plugin_dir_s else None,
        virtual_env_location=Path(venv_s).expanduser() if venv_s else None,
        http_host=host,
        http_port=port,
        admin_token_file=Path(token_file).expanduser() if token_file else None,
        without_auth=without_auth,
        disable_authz=disable_authz,
        log_filter=log_filter,
        wal_flush_interval=flush,
        max_http_request_size=max_size,
        restrict_plugin_triggers_to=restrict,
        admin_token_recovery_http_bind=ns.admin_token_recovery_http_bind,
        wal_snapshot_size=snapshot_size,
        gen1_duration_s=GEN1_DURATIONS[gen1_s],
        snapshotted_wal_files_to_keep=keep,
        repair_damaged_files=ns.repair_damaged_files,
        exec_mem_pool_bytes=pool,
    )


def cli_params(cfg: ServeConfig) -> dict[str, str]:
    """The serve settings as flag name -> value, for ``_internal``'s ``system.nodes.cli_params`` (the core masks
    sensitive ones). The server records the flags the user gave; here the settings that differ from the
    defaults, plus ``node-id`` and ``object-store``."""
    out = {"node-id": cfg.node_id, "object-store": cfg.object_store}
    if cfg.data_dir is not None:
        out["data-dir"] = str(cfg.data_dir)
    if cfg.plugin_dir is not None:
        out["plugin-dir"] = str(cfg.plugin_dir)
    if cfg.http_bind != DEFAULT_HTTP_BIND:
        out["http-bind"] = cfg.http_bind
    if cfg.without_auth:
        out["without-auth"] = "true"
    if cfg.admin_token_file is not None:
        out["admin-token-file"] = str(cfg.admin_token_file)
    if cfg.disable_authz:
        out["disable-authz"] = ",".join(sorted(cfg.disable_authz))
    if cfg.log_filter != "info":
        out["log-filter"] = cfg.log_filter
    # the WAL/snapshot flags as the server's extract_user_params (influxdb3/src/lib.rs) records them: the value
    # as given (a clap usize or the gen1 label), a boolean flag as "true"
    if cfg.wal_snapshot_size != DEFAULT_WAL_SNAPSHOT_SIZE:
        out["wal-snapshot-size"] = str(cfg.wal_snapshot_size)
    if cfg.gen1_duration_s != GEN1_DURATIONS["10m"]:
        out["gen1-duration"] = next(label for label, s in GEN1_DURATIONS.items() if s == cfg.gen1_duration_s)
    if cfg.snapshotted_wal_files_to_keep != DEFAULT_SNAPSHOTTED_WAL_FILES_TO_KEEP:
        out["snapshotted-wal-files-to-keep"] = str(cfg.snapshotted_wal_files_to_keep)
    if cfg.repair_damaged_files:
        out["repair-damaged-files"] = "true"
    return out
