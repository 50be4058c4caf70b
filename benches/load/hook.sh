#!/usr/bin/env bash
# SERVER_HOOK for the Alertmanager load harness (benches/load/harness/run.sh):
# starts switchyard with rules equivalent to the harness's N routes.
#
#   hook.sh start <workdir> <port> <routes> <profile> <sink_url>
#
# Profiles: switchyard has no grouping, so ingest, each0 and each1 all forward each alert
# (one webhook per alert); grouped is not applicable and is refused. With HOLD=1 (the
# default for the ingest profile, set by run.sh) deliveries are stored in the outbox and
# not sent, so an ingest run measures accept + route + durable enqueue, as the issue asks;
# HOLD=0 delivers during ingest too.
#
# Environment: SRV_CPU (taskset prefix or empty, from run.sh), SWITCHYARD_BIN (default:
# target/release/switchyard of this repository), HOLD.
set -euo pipefail
[[ ${1:-} == start ]] || { echo "usage: $0 start <workdir> <port> <routes> <profile> <sink_url>" >&2; exit 2; }
dir=$2 port=$3 routes=$4 profile=$5 sink=$6
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin=${SWITCHYARD_BIN:-$here/../../target/release/switchyard}
[[ -x $bin ]] || { echo "no switchyard binary at $bin: cargo build --release" >&2; exit 1; }
case $profile in
  ingest) hold=${HOLD:-1} ;;
  each0 | each1) hold=0 ;;
  grouped) echo "switchyard does not group alerts: profile grouped is not applicable" >&2; exit 2 ;;
  *) echo "unknown profile $profile" >&2; exit 2 ;;
esac
mkdir -p "$dir/rules" "$dir/data"
python3 "$here/gen_rules.py" --routes "$routes" --sink "$sink" >"$dir/rules/bench.rules"
hold_yaml=false
[[ $hold == 1 ]] && hold_yaml=true
cat >"$dir/switchyard.yaml" <<YAML
listen: 127.0.0.1:$port
rules: $dir/rules
data: $dir/data
limits:
  # The open-loop sender may batch up to 2,000 alerts when it falls behind.
  max_alerts_per_request: 5000
  max_body_bytes: 8388608
delivery:
  hold: $hold_yaml
logging:
  level: warn
YAML
# shellcheck disable=SC2086
${SRV_CPU:-} "$bin" serve --config "$dir/switchyard.yaml" >"$dir/server.log" 2>&1 &
echo $! >"$dir/server.pid"
for ((i = 0; i < 200; i++)); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && exit 0
  sleep 0.1
done
echo "switchyard did not become ready; its log:" >&2
cat "$dir/server.log" >&2
exit 1
