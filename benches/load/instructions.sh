#!/bin/bash
# Instructions per durable ingest request, counted by callgrind: a figure that does not
# move with the machine's noise, for a before/after of a change to the hot path.
#
#   benches/load/instructions.sh BINARY [BINARY...]     # ROUNDS=2, SECONDS_EACH=10
#
# Each binary runs `serve` under `valgrind --tool=callgrind` with `delivery.hold: true` and
# one rule that routes every alert (as durable.sh's switchyard). Once it is ready, the
# counters are zeroed, wrk sends one Yandex alert per request for SECONDS_EACH seconds
# (-t1 -c32, alertIds cycling over 1,000), the counters are dumped, and the user-space
# instructions of every thread of the server are divided by the requests answered. The
# kernel's work (sockets, fsync) is not counted: durable.sh measures the whole. Binaries
# alternate within each round. With PROFILE=DIR the last round's callgrind files are kept
# in DIR (read them with `callgrind_annotate --inclusive=yes`). CLAUSES adds clauses to the
# rule (CLAUSES=', dedup for 1h'); IDS sets the alertId space (0: every alert new).
# PAIRS=1 sends each alert firing, then resolved (yandex_post.lua's `pairs`), and the
# rule takes both (`status == "ALARM" or status == "OK"`): for `resolve once`.
# E2E=1 counts end to end instead: the rule posts every alert to this folder's sink
# (src/bin/sink.rs; `cargo build --release --bins` here), nothing is held, every alert is
# new, and after the load the server is left to deliver every accepted alert (at most
# 120 s); the instructions are divided by the alerts the sink received.
# Needs valgrind, wrk, curl. Listens on 127.0.0.1 only; stops what it started by PID.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: instructions.sh BINARY [BINARY...]" >&2; exit 2; }
rounds=${ROUNDS:-2}
secs=${SECONDS_EACH:-10}
port=${PORT:-19806}
e2e=${E2E:-0}
sink_port=${SINK_PORT:-19807}
sink_bin=$here/target/release/sink
if [ "$e2e" = 1 ] && [ ! -x "$sink_bin" ]; then
  echo "instructions.sh: E2E=1 needs the sink: (cd $here && cargo build --release --bins)" >&2; exit 2
fi
work=$(mktemp -d)
trap '[ -n "${vg:-}" ] && kill $vg 2>/dev/null; [ -n "${sp:-}" ] && kill $sp 2>/dev/null; rm -rf "$work"' EXIT
for tool in valgrind callgrind_control callgrind_annotate wrk curl; do
  command -v $tool >/dev/null || { echo "instructions.sh: needs $tool" >&2; exit 2; }
done
mkdir -p "$work/rules"
if [ "$e2e" = 1 ]; then
  url="http://127.0.0.1:$sink_port/hook/x"; hold=false; ids=0
else
  url="http://127.0.0.1:9/x"; hold=true; ids=${IDS:-1000}
fi
statuses='status == "ALARM"'
pairs=
if [ "${PAIRS:-0}" = 1 ]; then statuses='(status == "ALARM" or status == "OK")'; pairs=pairs; fi
printf 'target t { url = "%s" }\nrule "pages" when @source == "yandex" and %s -> post t%s\n' "$url" "$statuses" "${CLAUSES:-}" > "$work/rules/r.rules"
printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\ndelivery:\n  hold: %s\nlogging:\n  level: warn\n' \
  "$port" "$work/rules" "$work/data" "$hold" > "$work/config.yaml"
received() { curl -fs "http://127.0.0.1:$sink_port/stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }
for r in $(seq 1 "$rounds"); do
  order=("$@")
  [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "$@" | tac))
  for bin in "${order[@]}"; do
    rm -rf "$work/data" "$work"/cg.*
    if [ "$e2e" = 1 ]; then
      "$sink_bin" --port "$sink_port" --max-seconds 600 > "$work/sink.log" 2>&1 &
      sp=$!
    fi
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$bin" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
    vg=$!
    ready=
    for _ in $(seq 1 240); do
      curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && { ready=1; break; }
      sleep 0.5
    done
    [ -n "$ready" ] || { echo "instructions.sh: $bin did not become ready:" >&2; cat "$work/server.log" >&2; exit 1; }
    callgrind_control -z $vg > /dev/null
    [ "$e2e" = 1 ] && before=$(received)
    n=$(wrk -t1 -c32 -d"${secs}s" -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- "$ids" $pairs | awk '/requests in/ {print $1}')
    if [ "$e2e" = 1 ]; then
      for _ in $(seq 1 120); do
        [ "$(( $(received) - before ))" -ge "$n" ] && break
        sleep 1
      done
      got=$(( $(received) - before ))
    fi
    callgrind_control -d $vg > /dev/null
    kill $vg; wait $vg 2>/dev/null; vg=
    if [ "$e2e" = 1 ]; then kill $sp; wait $sp 2>/dev/null; sp=; fi
    ir=$(callgrind_annotate "$work"/cg.*.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
    if [ "$e2e" = 1 ]; then
      echo "round $r $bin accepted $n delivered $got instructions $ir per_alert $((ir / (got > 0 ? got : 1)))"
    else
      echo "round $r $bin requests $n instructions $ir per_request $((ir / n))"
    fi
    if [ -n "${PROFILE:-}" ] && [ "$r" = "$rounds" ]; then
      mkdir -p "$PROFILE"; cp "$work"/cg.*.1 "$PROFILE/$(basename "$bin").callgrind"
    fi
  done
done
