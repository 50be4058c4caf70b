#!/bin/bash
# Instructions per delivered alert, end to end, counted by callgrind: a figure that does
# not move with the machine's noise, for a before/after of a change to the delivery path.
#
#   benches/load/e2e_instructions.sh BINARY [BINARY...]     # ROUNDS=2, SECONDS_EACH=8
#
# Each binary runs `serve` under `valgrind --tool=callgrind` with one rule posting every
# alert to this folder's sink (src/bin/sink.rs; build it with `cargo build --release
# --bins` here). Once it is ready, the counters are zeroed, wrk sends one Yandex alert per
# request for SECONDS_EACH seconds (-t1 -c32, every alert new), the server is left to
# deliver every accepted alert (at most 120 s), the counters are dumped, and the
# user-space instructions of every thread are divided by the alerts the sink received.
# Binaries alternate within each round. PROFILE=DIR keeps the last round's callgrind
# files. Needs valgrind, wrk, curl. Listens on 127.0.0.1 only; stops what it started by PID.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: e2e_instructions.sh BINARY [BINARY...]" >&2; exit 2; }
rounds=${ROUNDS:-2}
secs=${SECONDS_EACH:-8}
port=${PORT:-19816}
sink_port=${SINK_PORT:-19817}
sink_bin=$here/target/release/sink
[ -x "$sink_bin" ] || { echo "e2e_instructions.sh: build the sink first: (cd $here && cargo build --release --bins)" >&2; exit 2; }
work=$(mktemp -d)
trap '[ -n "${vg:-}" ] && kill $vg 2>/dev/null; [ -n "${sp:-}" ] && kill $sp 2>/dev/null; rm -rf "$work"' EXIT
for tool in valgrind callgrind_control callgrind_annotate wrk curl; do
  command -v $tool >/dev/null || { echo "e2e_instructions.sh: needs $tool" >&2; exit 2; }
done
mkdir -p "$work/rules"
printf 'target sink { url = "http://127.0.0.1:%s/hook/x" }\nrule "pages" when @source == "yandex" and status == "ALARM" -> post sink\n' "$sink_port" > "$work/rules/r.rules"
printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\nlogging:\n  level: warn\n' \
  "$port" "$work/rules" "$work/data" > "$work/config.yaml"
received() { curl -fs "http://127.0.0.1:$sink_port/stats" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p'; }
for r in $(seq 1 "$rounds"); do
  order=("$@")
  [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "$@" | tac))
  for bin in "${order[@]}"; do
    rm -rf "$work/data" "$work"/cg.*
    "$sink_bin" --port "$sink_port" --max-seconds 600 > "$work/sink.log" 2>&1 &
    sp=$!
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$bin" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
    vg=$!
    ready=
    for _ in $(seq 1 240); do
      curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && { ready=1; break; }
      sleep 0.5
    done
    [ -n "$ready" ] || { echo "e2e_instructions.sh: $bin did not become ready:" >&2; cat "$work/server.log" >&2; exit 1; }
    callgrind_control -z $vg > /dev/null
    before=$(received)
    n=$(wrk -t1 -c32 -d"${secs}s" -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- 0 | awk '/requests in/ {print $1}')
    for _ in $(seq 1 120); do
      [ "$(( $(received) - before ))" -ge "$n" ] && break
      sleep 1
    done
    got=$(( $(received) - before ))
    callgrind_control -d $vg > /dev/null
    kill $vg; wait $vg 2>/dev/null; vg=
    kill $sp; wait $sp 2>/dev/null; sp=
    ir=$(callgrind_annotate "$work"/cg.*.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
    echo "round $r $bin accepted $n delivered $got instructions $ir per_alert $((ir / (got > 0 ? got : 1)))"
    if [ -n "${PROFILE:-}" ] && [ "$r" = "$rounds" ]; then
      mkdir -p "$PROFILE"; cp "$work"/cg.*.1 "$PROFILE/$(basename "$bin").callgrind"
    fi
  done
done
