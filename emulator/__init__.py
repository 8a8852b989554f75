"""Embedded stand-in for InfluxDB 3 Core: HTTP API, line protocol, SQL (DataFusion), WAL, auth, processing engine.

The contract is the real server's behaviour (shared/reference/influxdb3-*.md); COVERAGE.md lists what is done.
"""

PRODUCT_NAME = "InfluxDB 3 Core"
# The server version whose behaviour this stand-in follows (reference: main after v3.10.1).
VERSION = "3.10.1"
REVISION = "emulator"
