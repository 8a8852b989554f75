#!/bin/sh
# Entry point with influxdb:3.x-core's behaviour: drop the variables INFLUXDB3_UNSET_VARS names; arguments that
# start with `serve` or `-` run `influxdb3 [serve] ...`; each argument of an influxdb3 command has ${VAR}
# references expanded from the container's environment (envsubst), so compose can defer them with $${VAR}.
set -e
for name in ${INFLUXDB3_UNSET_VARS:-}; do
  unset "$name"
done
case "${1:-}" in
  serve) set -- influxdb3 "$@" ;;
  -*) set -- influxdb3 serve "$@" ;;
esac
if [ "${1:-}" = influxdb3 ]; then
  for arg do
    shift
    set -- "$@" "$(printf '%s' "$arg" | envsubst)"
  done
fi
exec "$@"
