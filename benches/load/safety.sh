#!/bin/bash
# What the change-safety features cost on ingest: one binary, four configurations,
# alternated in the same run, the server pinned to CPU 1 and wrk to CPU 0
# (`delivery.hold: true`, one Yandex alert per request, alertIds cycling over 1,000,
# wrk -t1 -c32 -d10s):
#   plain:   no recording, no shadow
#   record:  `record.enabled: true` (every accepted request written, redacted, rotated)
#   agree:   `shadow_rules:` a folder that decides as the live one (the usual case: each
#            alert decided twice, nothing to record)
#   shadow:  `shadow_rules:` a folder that disagrees on every alert (the worst case: each
#            alert is a disagreement, counted, kept in the ring, logged within the budget)
#   both:    record and the disagreeing shadow
#
#   benches/load/safety.sh BINARY          # ROUNDS=3 by default
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: safety.sh BINARY}
rounds=${ROUNDS:-3}
port=${PORT:-19804}
work=$(mktemp -d)
trap '[ -n "${srv:-}" ] && kill $srv 2>/dev/null; rm -rf "$work"' EXIT
for tool in wrk curl taskset; do
  command -v $tool >/dev/null || { echo "safety.sh: needs $tool" >&2; exit 2; }
done
mkdir -p "$work/rules" "$work/shadow" "$work/agree"
printf 'target t { url = "http://127.0.0.1:9/x" }\ntarget u { url = "http://127.0.0.1:9/y" }\nwhen @source == "yandex" and status == "ALARM" -> post t\n' > "$work/rules/r.rules"
printf 'target t { url = "http://127.0.0.1:9/x" }\ntarget u { url = "http://127.0.0.1:9/y" }\nwhen @source == "yandex" and status == "ALARM" -> post u\n' > "$work/shadow/r.rules"
cp "$work/rules/r.rules" "$work/agree/r.rules"
run() { # extra config lines
  rm -rf "$work/data"
  printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\ndelivery:\n  hold: true\nlogging:\n  level: warn\n%b' \
    "$port" "$work/rules" "$work/data" "$1" > "$work/config.yaml"
  taskset -c 1 "$bin" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
    sleep 0.1
  done
  taskset -c 0 wrk -t1 -c32 -d10s -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" \
    | awk '/Requests\/sec/ {print $2}'
  kill $srv; wait $srv 2>/dev/null; srv=
}
record='record:\n  enabled: true\n'
shadow="shadow_rules: $work/shadow\n"
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="plain record agree shadow both"; else order="both shadow agree record plain"; fi
  for which in $order; do
    case $which in
      plain) extra='' ;;
      record) extra=$record ;;
      agree) extra="shadow_rules: $work/agree\n" ;;
      shadow) extra=$shadow ;;
      both) extra="$record$shadow" ;;
    esac
    echo "round $r $which $(run "$extra") req/s"
  done
done
