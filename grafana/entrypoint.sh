#!/bin/sh
# Grafana entrypoint wrapper (compose.yaml): read the InfluxDB token from the Compose secret into this
# process's environment, where the datasource provisioning file expands ${INFLUXDB3_GRAFANA_TOKEN}, then
# hand over to the image's own entrypoint. The token never appears in compose.yaml, .env or the repo.
set -eu
token_file="${INFLUXDB3_TOKEN_FILE:-/run/secrets/influxdb3_admin_token}"
token=$(sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$token_file")
if [ -z "$token" ]; then
  token=$(tr -d '[:space:]' < "$token_file")
fi
INFLUXDB3_GRAFANA_TOKEN="$token"
export INFLUXDB3_GRAFANA_TOKEN
exec /run.sh "$@"
