#!/bin/bash
# What routing that remembers costs on ingest: one binary, three rule sets, alternated in
# the same run, the server pinned to CPU 1 and wrk to CPU 0 (`delivery.hold: true`, one
# Yandex alert per request, wrk -t1 -c32 -d10s):
#   plain:   `when ... -> post t`                        (no state)
#   unique:  `... -> post t, dedup for 1h` with a new alertId per request (every alert new)
#   repeats: the same rule, alertIds cycling over 100 (nearly every alert a duplicate)
#   group:   `... -> post t, group by alertName wait 30s every 5m`, alertIds cycling over
#            100: one group of 100 members, re-sent (a re-send that changes nothing writes
#            nothing)
#   group-unique: the same rule, a new alertId per request: every alert joins the one
#            group (rewritten whole, up to 1,000 members; later ones only counted)
#   silenced: the plain rule with 10 silences in force that match nothing (each alert is
#            matched against the 10 conditions)
#
#   benches/load/state.sh BINARY          # ROUNDS=3 by default
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: state.sh BINARY}
rounds=${ROUNDS:-3}
port=${PORT:-19803}
work=$(mktemp -d)
trap '[ -n "${srv:-}" ] && kill $srv 2>/dev/null; rm -rf "$work"' EXIT
for tool in wrk curl taskset; do
  command -v $tool >/dev/null || { echo "state.sh: needs $tool" >&2; exit 2; }
done
mkdir -p "$work/plain" "$work/dedup" "$work/group"
printf 'target t { url = "http://127.0.0.1:9/x" }\nwhen @source == "yandex" and status == "ALARM" -> post t\n' > "$work/plain/r.rules"
printf 'target t { url = "http://127.0.0.1:9/x" }\nrule "pages" when @source == "yandex" and status == "ALARM" -> post t, dedup for 1h\n' > "$work/dedup/r.rules"
printf 'target t { url = "http://127.0.0.1:9/x" }\nrule "pages" when @source == "yandex" and status == "ALARM" -> post t, group by alertName wait 30s every 5m\n' > "$work/group/r.rules"
run() { # rules folder, idspace, silences to add first
  rm -rf "$work/data"
  printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\ndelivery:\n  hold: true\nlogging:\n  level: warn\n' \
    "$port" "$1" "$work/data" > "$work/config.yaml"
  taskset -c 1 "$bin" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
    sleep 0.1
  done
  for i in $(seq 1 "${3:-0}"); do
    curl -fs -o /dev/null -H 'content-type: application/json' \
      -d "{\"condition\": \"folderId == \\\"nope$i\\\"\", \"for\": \"1h\", \"created_by\": \"bench\", \"comment\": \"matches nothing\"}" \
      "http://127.0.0.1:$port/api/silences"
  done
  taskset -c 0 wrk -t1 -c32 -d10s -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- "$2" \
    | awk '/Requests\/sec/ {print $2}'
  kill $srv; wait $srv 2>/dev/null; srv=
}
for r in $(seq 1 "$rounds"); do
  echo "round $r plain $(run "$work/plain" 0) req/s"
  echo "round $r dedup-unique $(run "$work/dedup" 0) req/s"
  echo "round $r dedup-repeats $(run "$work/dedup" 100) req/s"
  echo "round $r group $(run "$work/group" 100) req/s"
  echo "round $r group-unique $(run "$work/group" 0) req/s"
  echo "round $r silenced $(run "$work/plain" 0 10) req/s"
done
