#!/bin/bash
# switchyard's durable ingest against the durable ceiling, in the same run, alternated:
#
#   benches/load/durable.sh BINARY [BINARY2]     # ROUNDS=3, CONNS="32 128" by default
#
# ceiling:    src/bin/durable_server.rs: hyper, parse the body, one writer thread appending
#             each body with group commit (one write and one fdatasync per batch), each
#             request answered after its batch is on disk;
# switchyard: `serve` with `delivery.hold: true` and one rule that routes every alert: each
#             request is received, parsed, routed and its delivery stored in the outbox
#             (SQLite, WAL, synchronous=FULL), answered once that commit is on disk.
# With BINARY2, a second switchyard build runs in the same rounds (a before/after).
#
# Both get the same load: wrk -t1 -c$CONNS -d${SECONDS_EACH:-10}s, one Yandex alert per
# request (alertIds cycling over 1,000), the server pinned to CPU 1 and wrk to CPU 0 (needs
# 2 CPUs, wrk, curl, taskset); UNPINNED=1 runs both unpinned. For each run it prints the
# rate, the server's CPU per request (user+system, from /proc, over the wrk run) and the
# requests per fdatasync (the ceiling's own count; switchyard's from a kernel tracepoint,
# when perf can count it: SQLite's commits and its checkpoints' syncs, so a little under
# its requests per commit); then the medians and switchyard's fraction of the
# ceiling. PROFILE=1 also records switchyard at the first connection count with
# `perf record` (cpu-clock; needs perf) and prints its top symbols. Everything listens on
# 127.0.0.1 only; what is started is stopped by PID.
set -u
bin=${1:?usage: durable.sh BINARY [BINARY2]}
bin2=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
ceiling=${CEILING:-$here/target/release/durable_server}
rounds=${ROUNDS:-3}
conns=${CONNS:-32 128}
secs=${SECONDS_EACH:-10}
port=${PORT:-19804}
work=$(mktemp -d)
trap '[ -n "${srv:-}" ] && kill $srv 2>/dev/null; rm -rf "$work"' EXIT
for tool in wrk curl taskset python3; do
  command -v $tool >/dev/null || { echo "durable.sh: needs $tool" >&2; exit 2; }
done
[ -x "$ceiling" ] || { echo "durable.sh: build the ceiling first: (cd benches/load && cargo build --release --bin durable_server)" >&2; exit 2; }
if [ -n "${UNPINNED:-}" ]; then srv_pin=(); load_pin=(); else srv_pin=(taskset -c 1); load_pin=(taskset -c 0); fi
mkdir -p "$work/rules"
printf 'target t { url = "http://127.0.0.1:9/x" }\nwhen @source == "yandex" and status == "ALARM" -> post t\n' > "$work/rules/r.rules"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_ready() { # url
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "durable.sh: the server did not become ready:" >&2; cat "$work/server.log" >&2; exit 1
}
start() { # which
  rm -rf "$work/data"
  case $1 in
    ceiling)
      "${srv_pin[@]}" "$ceiling" --dir "$work/data" --port "$port" > "$work/server.log" 2>&1 &
      srv=$!; wait_ready "http://127.0.0.1:$port/-/ready"; path=/alerts ;;
    *)
      local b=$bin; [ "$1" = switchyard2 ] && b=$bin2
      printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\ndelivery:\n  hold: true\nlogging:\n  level: warn\n' \
        "$port" "$work/rules" "$work/data" > "$work/config.yaml"
      "${srv_pin[@]}" "$b" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
      srv=$!; wait_ready "http://127.0.0.1:$port/readyz"; path=/alerts/yandex ;;
  esac
}
stop() { kill $srv; wait $srv 2>/dev/null; srv=; }
hz=$(getconf CLK_TCK)
count_syncs=
command -v perf > /dev/null && perf stat -e syscalls:sys_enter_fdatasync -o /dev/null -- true > /dev/null 2>&1 && count_syncs=1
which_all="ceiling switchyard"; [ -n "$bin2" ] && which_all="ceiling switchyard switchyard2"
: > "$work/runs"
for r in $(seq 1 "$rounds"); do
  for c in $conns; do
    order=$which_all
    [ $((r % 2)) = 0 ] && order=$(echo "$which_all" | tr ' ' '\n' | tac | tr '\n' ' ')
    for which in $order; do
      start "$which"
      profiling=
      if [ -n "${PROFILE:-}" ] && [ "$r" = 1 ] && [ "$which" = switchyard ] && [ "$c" = "${conns%% *}" ]; then
        perf record -e cpu-clock -F 1999 -g -p $srv -o "$work/perf.data" -- sleep "$secs" > /dev/null 2>&1 &
        profiling=$!
      fi
      # switchyard's fdatasyncs (SQLite's commits and checkpoints), counted by a kernel
      # tracepoint when perf can (the ceiling counts its own).
      counting=
      if [ "$which" != ceiling ] && [ -z "$profiling" ] && [ -n "$count_syncs" ]; then
        perf stat -e syscalls:sys_enter_fdatasync -p $srv -o "$work/syncs.txt" -- sleep "$secs" > /dev/null 2>&1 &
        counting=$!
      fi
      t0=$(ticks $srv)
      out=$("${load_pin[@]}" wrk -t1 -c"$c" -d"${secs}s" -s "$here/yandex_post.lua" "http://127.0.0.1:$port$path")
      t1=$(ticks $srv)
      [ -n "$profiling" ] && wait $profiling
      [ -n "$counting" ] && wait $counting
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      total=$(echo "$out" | awk '/requests in/ {print $1}')
      non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
      cpu_us=$(python3 -c "print(round(($t1-$t0)/$hz*1e6/max($total,1),1))")
      extra=
      [ "$which" = ceiling ] && extra=" per_sync $(curl -fs "http://127.0.0.1:$port/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["per_sync"])')"
      if [ -n "$counting" ]; then
        syncs=$(awk '/sys_enter_fdatasync/ {gsub(",","",$1); print $1}' "$work/syncs.txt")
        [ -n "$syncs" ] && [ "$syncs" -gt 0 ] && extra=" per_sync $(python3 -c "print(round($total/$syncs,1))")"
      fi
      stop
      line="round $r conns $c $which $rps req/s cpu_us_per_req $cpu_us${non2xx:+ non2xx $non2xx}$extra"
      echo "$line"; echo "$line" >> "$work/runs"
    done
  done
done
python3 - "$work/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault((int(f[3]), f[4]), []).append((float(f[5]), float(f[8])))
print("\nmedians (req/s, CPU us per request) and switchyard's fraction of the ceiling:")
for c in sorted({k[0] for k in runs}):
    ceil = statistics.median(x[0] for x in runs[(c, "ceiling")])
    for which in ("ceiling", "switchyard", "switchyard2"):
        if (c, which) not in runs:
            continue
        rps = statistics.median(x[0] for x in runs[(c, which)])
        cpu = statistics.median(x[1] for x in runs[(c, which)])
        print(f"  conns {c:>4} {which:<12} {rps:>9.0f} req/s {cpu:>6.1f} us/req  {rps / ceil:6.1%} of the ceiling")
PY
if [ -f "$work/perf.data" ]; then
  echo; echo "switchyard's profile at ${conns%% *} connections (perf, cpu-clock, self time, top 40):"
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^#' | grep '%' | grep -v '^ *|' | grep -v -- '--' | head -40
  [ -n "${PERF_OUT:-}" ] && cp "$work/perf.data" "$PERF_OUT"
fi
