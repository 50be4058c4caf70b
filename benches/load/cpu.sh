#!/bin/bash
# The server's CPU time per durable ingest request, kernel included: what callgrind's
# instruction counts (instructions.sh) leave out (sockets, writes, fsync, cache misses on a
# growing index). perf's task-clock of every thread of the server over the load, divided by
# the requests answered.
#
#   benches/load/cpu.sh BINARY [BINARY...]     # ROUNDS=3, IDS=0, CLAUSES=', dedup for 1h', CONNECTIONS=32
#
# Each binary runs `serve` pinned to CPU 1 with `delivery.hold: true` and one rule that
# routes every alert, plus CLAUSES (CLAUSES= for none); wrk, pinned to CPU 0, sends one
# Yandex alert per request for 10 s (-t1 -cCONNECTIONS; IDS as yandex_post.lua reads it: 0, every
# alert new). Binaries alternate within each round. Needs perf, wrk, curl, taskset.
# Listens on 127.0.0.1 only; stops what it started by PID.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: cpu.sh BINARY [BINARY...]" >&2; exit 2; }
rounds=${ROUNDS:-3}
ids=${IDS:-0}
clauses=${CLAUSES-, dedup for 1h}
port=${PORT:-19877}
conns=${CONNECTIONS:-32}
for tool in perf wrk curl taskset; do
  command -v $tool >/dev/null || { echo "cpu.sh: needs $tool" >&2; exit 2; }
done
# The commits are counted where perf may read the syscall tracepoints (root, or
# kernel.perf_event_paranoid allowing it); elsewhere only the CPU time is.
events=task-clock
perf stat -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1 && events=task-clock,syscalls:sys_enter_fdatasync
work=$(mktemp -d)
trap '[ -n "${srv:-}" ] && kill $srv 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
printf 'target t { url = "http://127.0.0.1:9/x" }\nrule "pages" when @source == "yandex" and status == "ALARM" -> post t%s\n' "$clauses" > "$work/rules/r.rules"
printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\ndelivery:\n  hold: true\nlogging:\n  level: warn\n' \
  "$port" "$work/rules" "$work/data" > "$work/config.yaml"
for r in $(seq 1 "$rounds"); do
  order=("$@")
  [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "$@" | tac))
  for bin in "${order[@]}"; do
    rm -rf "$work/data" "$work/perf.txt"
    taskset -c 1 "$bin" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
    srv=$!
    for _ in $(seq 1 100); do
      curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
      sleep 0.1
    done
    perf stat -x, -e "$events" -p "$srv" -o "$work/perf.txt" -- sleep 10.5 &
    pp=$!
    out=$(taskset -c 0 wrk -t1 -c"$conns" -d10s -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- "$ids")
    wait $pp
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    awk -F, -v n="$n" -v rps="$rps" -v r="$r" -v b="$bin" \
      '/task-clock/ {tc=$1} /fdatasync/ {fs=$1} END {printf "round %s %s requests/s %s cpu_us_per_request %.2f requests_per_fdatasync %.1f\n", r, b, rps, tc*1000/n, (fs > 0 ? n/fs : 0)}' "$work/perf.txt"
    kill $srv; wait $srv 2>/dev/null; srv=
  done
done
