#!/bin/bash
# The server's CPU time per delivered alert end to end, kernel included, by thread: what
# the harness's end-to-end phase turns into alerts per second on a pinned core, measured
# at a fixed offered rate instead of at the edge of what the machine gives that hour.
#
#   benches/load/e2e_cpu.sh BINARY [BINARY...]     # ROUNDS=2, RATE=20000, SECONDS_EACH=8
#
# Each binary runs `serve` pinned to CPU 1, delivering to this folder's sink (src/bin/
# sink.rs; `cargo build --release --bins` here) on CPU 0. The harness's open-loop sender
# (harness/sender.py, on CPU 0) posts RATE new alerts a second to /api/v2/alerts in
# batches every 10 ms for SECONDS_EACH seconds; the server is then left to deliver every
# accepted alert (at most 60 s). perf counts the task clock of every thread of the server
# from start to the last delivery, with its context switches and fdatasync calls.
# Printed per run: CPU µs per delivered alert (all threads, then the outbox writer and the
# runtime's workers), context switches per alert, alerts per fdatasync, the sender's POST
# p50/p99, the sink's delivery latency p50/p99 (sent to received) and the connections
# open to the sink halfway through.
# RULES=one (default): one target takes every alert; RULES=harness: gen_rules.py's 100
# routes over 10 targets, as the harness. Binaries alternate within each round.
# INGEST=1 measures ingest while delivering instead: wrk closed loop (-t1 -c32) for
# SECONDS_EACH seconds, one Yandex alert per request, printing requests/s, wrk's p50/p99
# and how many alerts the sink received meanwhile (a backlog grows when that falls behind).
# SINK_DELAY_MS=N: the sink answers each webhook N ms after it arrives (a remote receiver).
# Needs perf, python3, wrk (INGEST=1), curl, taskset. Listens on 127.0.0.1 only; stops what
# it started by PID.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: e2e_cpu.sh BINARY [BINARY...]" >&2; exit 2; }
rounds=${ROUNDS:-2}
rate=${RATE:-20000}
secs=${SECONDS_EACH:-8}
rules=${RULES:-one}
ingest=${INGEST:-0}
delay=${SINK_DELAY_MS:-0}
port=${PORT:-19866}
sink_port=${SINK_PORT:-19867}
sink_bin=$here/target/release/sink
[ -x "$sink_bin" ] || { echo "e2e_cpu.sh: needs the sink: (cd $here && cargo build --release --bins)" >&2; exit 2; }
for tool in perf python3 curl taskset; do
  command -v $tool >/dev/null || { echo "e2e_cpu.sh: needs $tool" >&2; exit 2; }
done
[ "$ingest" = 1 ] && { command -v wrk >/dev/null || { echo "e2e_cpu.sh: INGEST=1 needs wrk" >&2; exit 2; }; }
events=task-clock,context-switches
perf stat -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1 && events=$events,syscalls:sys_enter_fdatasync
work=$(mktemp -d)
trap '[ -n "${pf:-}" ] && kill $pf 2>/dev/null; [ -n "${srv:-}" ] && kill $srv 2>/dev/null; [ -n "${sp:-}" ] && kill $sp 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/rules"
if [ "$rules" = harness ]; then
  python3 "$here/gen_rules.py" --routes 100 --sink "http://127.0.0.1:$sink_port" > "$work/rules/r.rules"
else
  printf 'target t { url = "http://127.0.0.1:%s/hook/x" }\nrule "all" when exists(labels.alertname) or @source == "yandex" -> post t\n' "$sink_port" > "$work/rules/r.rules"
fi
printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\nlogging:\n  level: warn\n' "$port" "$work/rules" "$work/data" > "$work/config.yaml"
received() { curl -fs "http://127.0.0.1:$sink_port/stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }
for r in $(seq 1 "$rounds"); do
  order=("$@")
  [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "$@" | tac))
  for bin in "${order[@]}"; do
    rm -rf "$work/data"
    taskset -c 0 "$sink_bin" --port "$sink_port" --max-seconds 600 --delay-ms "$delay" > "$work/sink.log" 2>&1 &
    sp=$!
    taskset -c 1 "$bin" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
    srv=$!
    ready=
    for _ in $(seq 1 150); do
      curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && { ready=1; break; }
      sleep 0.2
    done
    [ -n "$ready" ] || { echo "e2e_cpu.sh: $bin did not become ready:" >&2; cat "$work/server.log" >&2; exit 1; }
    before=$(received)
    if [ "$ingest" = 1 ]; then
      out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- 0 2>/dev/null)
      got=$(( $(received) - before ))
      echo "round $r $(basename "$bin") requests/s $(echo "$out" | awk '/Requests\/sec/ {print $2}') p50 $(echo "$out" | awk '/ 50%/ {print $2}') p99 $(echo "$out" | awk '/ 99%/ {print $2}') delivered_meanwhile $got"
    else
      perf stat --per-thread -e "$events" -p "$srv" -o "$work/stat.txt" &
      pf=$!
      # Connections open to the sink halfway through the run.
      echo '?' > "$work/conns"
      (sleep $(( (secs + 1) / 2 )); ss -tnH state established "( dport = :$sink_port )" 2>/dev/null | wc -l > "$work/conns") &
      cs=$!
      taskset -c 0 python3 "$here/harness/sender.py" --url "http://127.0.0.1:$port/api/v2/alerts" \
        --rate "$rate" --duration "$secs" --routes 100 > "$work/sender.json"
      n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$work/sender.json")
      for _ in $(seq 1 120); do
        [ "$(( $(received) - before ))" -ge "$n" ] && break
        sleep 0.5
      done
      kill -INT $pf; wait $pf 2>/dev/null; pf=
      got=$(( $(received) - before ))
      curl -fs "http://127.0.0.1:$sink_port/stats" > "$work/sink.json"
      wait $cs 2>/dev/null
      python3 - "$work/stat.txt" "$got" "$work/sender.json" "$work/sink.json" "$r" "$(basename "$bin")" "$n" "$(cat "$work/conns")" <<'EOF'
import collections, json, re, sys
stat, got, sender, sink, rnd, name, accepted, conns = sys.argv[1:9]
got = max(int(got), 1)
per = collections.defaultdict(collections.Counter)
for line in open(stat):
    m = re.match(r'\s*(.+?)-(\d+)\s+([\d,.]+)\s+(?:msec\s+)?(\S+)', line)
    if m:
        per[m.group(1).strip()][m.group(4)] += float(m.group(3).replace(',', ''))
total = collections.Counter()
for c in per.values():
    total.update(c)
def us(c): return c['task-clock'] * 1000 / got
writer = sum(us(c) for n, c in per.items() if n.startswith('switchyard-outb'))
runtime = sum(us(c) for n, c in per.items() if n.startswith('tokio-rt'))
syncs = total['syscalls:sys_enter_fdatasync']
s = json.load(open(sender)); k = json.load(open(sink))['latency_s']
print(f"round {rnd} {name} accepted {accepted} delivered {got} cpu_us_per_alert {us(total):.1f} "
      f"writer {writer:.1f} runtime {runtime:.1f} switches_per_alert {total['context-switches'] / got:.2f} "
      f"alerts_per_sync {got / syncs if syncs else float('nan'):.1f} post_p50_ms {s['post_p50_s'] * 1000:.1f} "
      f"post_p99_ms {s['post_p99_s'] * 1000:.1f} delivery_p50_ms {k['p50'] * 1000:.1f} delivery_p99_ms {k['p99'] * 1000:.1f} "
      f"connections {conns}")
EOF
    fi
    kill $srv; wait $srv 2>/dev/null; srv=
    kill $sp; wait $sp 2>/dev/null; sp=
  done
done
