"""`python -m emulator serve`: flags, env vars and one-line startup errors (reference §13)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.config import ConfigError, cli_params, parse_serve_args
from emulator.systables import capture_cli_params
from tests.support import REPO_ROOT, free_port, start_server


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB3_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args], cwd=REPO_ROOT, env=full, capture_output=True, text=True, timeout=60
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_node_id_is_clear_error() -> None:
    proc = _run(["serve", "--without-auth", "--object-store", "memory"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: the following required arguments were not provided: --node-id <NODE_IDENTIFIER_PREFIX>"
    )


def test_busy_port_is_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = _run(["serve", "--node-id", "t", "--object-store", "memory", "--without-auth",
                     "--http-bind", f"127.0.0.1:{port}"])
    _assert_one_line_error(proc, f"failed to bind address 127.0.0.1:{port}: Address already in use")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_data_dir_is_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    proc = _run(["serve", "--node-id", "t", "--data-dir", str(ro / "data"), "--without-auth",
                 "--http-bind", f"127.0.0.1:{free_port()}"])
    _assert_one_line_error(proc, "is not writable")


def test_data_dir_under_a_file_is_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = _run(["serve", "--node-id", "t", "--data-dir", str(blocker / "data"), "--without-auth",
                 "--http-bind", f"127.0.0.1:{free_port()}"])
    _assert_one_line_error(proc, f"data dir {blocker / 'data'} is not writable")


def test_bad_token_prefix_aborts_startup(tmp_path: Path) -> None:
    f = tmp_path / "tok.json"
    f.write_text(json.dumps({"token": "nope_123", "name": "_admin"}))
    f.chmod(0o600)
    proc = _run(["serve", "--node-id", "t", "--data-dir", str(tmp_path / "d"), "--admin-token-file", str(f),
                 "--http-bind", f"127.0.0.1:{free_port()}"])
    _assert_one_line_error(proc, "Invalid token format: must start with 'apiv3_'")


def test_missing_token_file_aborts_startup(tmp_path: Path) -> None:
    proc = _run(["serve", "--node-id", "t", "--object-store", "memory", "--admin-token-file",
                 str(tmp_path / "absent.json"), "--http-bind", f"127.0.0.1:{free_port()}"])
    _assert_one_line_error(proc, "cannot read admin token file")


def test_env_vars_are_read() -> None:
    cfg = parse_serve_args(
        ["serve"],
        {
            "INFLUXDB3_NODE_IDENTIFIER_PREFIX": "n1",
            "INFLUXDB3_DB_DIR": "/tmp/x",
            "INFLUXDB3_PLUGIN_DIR": "/tmp/p",
            "VIRTUAL_ENV": "/tmp/v",
            "INFLUXDB3_HTTP_BIND_ADDR": "127.0.0.1:9999",
            "INFLUXDB3_START_WITHOUT_AUTH": "true",
            "INFLUXDB3_DISABLE_AUTHZ": "health,ping",
            "LOG_FILTER": "debug",
            "INFLUXDB3_WAL_FLUSH_INTERVAL": "100ms",
        },
    )
    assert (cfg.node_id, str(cfg.data_dir), str(cfg.plugin_dir), str(cfg.virtual_env_location)) == (
        "n1", "/tmp/x", "/tmp/p", "/tmp/v")
    assert (cfg.http_host, cfg.http_port, cfg.without_auth) == ("127.0.0.1", 9999, True)
    assert cfg.disable_authz == frozenset({"health", "ping"})
    assert (cfg.log_filter, cfg.wal_flush_interval) == ("debug", 0.1)


def test_flag_defaults_and_flags_win_over_env() -> None:
    cfg = parse_serve_args(["serve", "--host-id", "a", "--object-store", "memory"], {"INFLUXDB3_NODE_IDENTIFIER_PREFIX": "b"})
    assert cfg.node_id == "a"
    assert cfg.data_dir is None
    assert (cfg.http_host, cfg.http_port) == ("0.0.0.0", 8181)
    assert cfg.wal_flush_interval == 1.0
    assert cfg.max_http_request_size == 10485760
    assert cfg.restrict_plugin_triggers_to == {"wal", "schedule", "request"}
    assert cfg.without_auth is False


def test_cli_params_show_the_wal_and_snapshot_flags() -> None:
    """system.nodes.cli_params lists every flag the user set, the WAL/snapshot ones too, each with its value as
    the server's extract_user_params (influxdb3/src/lib.rs) records it; a flag left at its default is absent."""
    cfg = parse_serve_args(["serve", "--node-id", "n", "--object-store", "memory", "--wal-snapshot-size", "10",
                            "--gen1-duration", "1m", "--repair-damaged-files"],
                           {"INFLUXDB3_NUM_WAL_FILES_TO_KEEP": "7"})
    assert capture_cli_params(cli_params(cfg)) == {
        "node-id": "n", "object-store": "memory", "wal-snapshot-size": "10", "gen1-duration": "1m",
        "snapshotted-wal-files-to-keep": "7", "repair-damaged-files": "true"}
    plain = parse_serve_args(["serve", "--node-id", "n", "--object-store", "memory"], {})
    assert cli_params(plain) == {"node-id": "n", "object-store": "memory"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--disable-authz", "bogus"], "invalid value 'bogus' for '--disable-authz"),
        (["--wal-flush-interval", "soon"], "invalid value 'soon' for '--wal-flush-interval"),
        (["--http-bind", "nope"], "invalid value 'nope' for '--http-bind"),
        (["--object-store", "s3"], "invalid value 's3' for '--object-store"),
    ],
)
def test_bad_flag_values(args: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_serve_args(["serve", "--node-id", "x", *args], {})


def test_sigterm_stops_cleanly_and_logs_address(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    assert srv.session.post(f"{srv.url}/api/v3/write_lp?db=cli&no_sync=true", data="m f=1i 1").status_code == 204
    assert srv.stop() == 0
    log = srv.log_path.read_text()
    assert f"address=127.0.0.1:{srv.port}" in log
    assert "startup time: " in log
    srv.start()  # no_sync write flushed on shutdown
    try:
        r = srv.session.get(f"{srv.url}/api/v3/query_sql", params={"db": "cli", "q": "SELECT f FROM m"})
        assert r.status_code == 200 and r.json() == [{"f": 1}]
    finally:
        srv.stop()
