#!/bin/bash
# Same-run A/B of two switchyard binaries: durable ingest and end to end, alternated.
#
#   benches/load/ab.sh BEFORE_BINARY AFTER_BINARY        # ROUNDS=3 by default
#
# Build the two binaries first, for example from a worktree of the older commit:
#   git worktree add /tmp/before <commit> && (cd /tmp/before && CARGO_TARGET_DIR=$PWD/../before-target cargo build --release)
# and the sink once: (cd benches/load && cargo build --release --bin sink).
#
# Each round runs both binaries (the order alternates between rounds), each twice:
#   ingest: `delivery.hold: true`, wrk -t1 -c32 -d10s, one Yandex alert per request;
#   end to end: every alert delivered to the Rust sink; the rate is the sink's count over
#   the span from its first to its last delivery.
# The server is pinned to CPU 1, wrk and the sink to CPU 0 (needs 2 CPUs, wrk, curl).
# Everything listens on 127.0.0.1 only; what is started is stopped by PID.
set -u
before=${1:?usage: ab.sh BEFORE_BINARY AFTER_BINARY}
after=${2:?usage: ab.sh BEFORE_BINARY AFTER_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
sink=${SINK:-$here/target/release/sink}
rounds=${ROUNDS:-3}
port=${PORT:-19802}
sink_port=${SINK_PORT:-19950}
work=$(mktemp -d)
trap 'kill $sink_pid 2>/dev/null; [ -n "${srv:-}" ] && kill $srv 2>/dev/null; rm -rf "$work"' EXIT
for tool in wrk curl taskset; do
  command -v $tool >/dev/null || { echo "ab.sh: needs $tool" >&2; exit 2; }
done
[ -x "$sink" ] || { echo "ab.sh: build the sink first: (cd benches/load && cargo build --release --bin sink)" >&2; exit 2; }
mkdir -p "$work/hold" "$work/deliver"
printf 'target t { url = "http://127.0.0.1:9/x" }\nwhen @source == "yandex" and status == "ALARM" -> post t\n' > "$work/hold/r.rules"
printf 'target s { url = "http://127.0.0.1:%s/hook" }\nwhen @source == "yandex" and status == "ALARM" -> post s\n' "$sink_port" > "$work/deliver/r.rules"
# alertIds cycle over IDS (1,000 by default): one alert's deliveries to one target go one
# at a time, in order (docs/delivery.md, "Order"), so a single alertId for every request
# would measure one alert's round trips, not the router. IDS=1 gives that case.
sink_stat() { curl -fs "http://127.0.0.1:$sink_port/stats" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
start() { # binary, hold, rules folder
  rm -rf "$work/data"
  printf 'listen: 127.0.0.1:%s\nrules: %s\ndata: %s\ndelivery:\n  hold: %s\nlogging:\n  level: warn\n' \
    "$port" "$3" "$work/data" "$2" > "$work/config.yaml"
  taskset -c 1 "$1" serve --config "$work/config.yaml" > "$work/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && return 0
    sleep 0.1
  done
  echo "ab.sh: the server did not become ready:" >&2; cat "$work/server.log" >&2; exit 1
}
stop() { kill $srv; wait $srv 2>/dev/null; srv=; }
taskset -c 0 "$sink" --port "$sink_port" > "$work/sink.log" 2>&1 &
sink_pid=$!
sleep 0.5
for r in $(seq 1 "$rounds"); do
  order="before after"; [ $((r % 2)) = 0 ] && order="after before"
  for which in $order; do
    bin=$before; [ "$which" = after ] && bin=$after
    start "$bin" true "$work/hold"
    rps=$(taskset -c 0 wrk -t1 -c32 -d10s -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- "${IDS:-1000}" | awk '/Requests\/sec/ {print $2}')
    stop
    echo "round $r $which ingest $rps req/s"
    curl -fs -X POST -o /dev/null "http://127.0.0.1:$sink_port/reset"
    start "$bin" false "$work/deliver"
    total=$(taskset -c 0 wrk -t1 -c32 -d10s -s "$here/yandex_post.lua" "http://127.0.0.1:$port/alerts/yandex" -- "${IDS:-1000}" | awk '/requests in/ {print $1}')
    for _ in $(seq 1 600); do
      [ "$(sink_stat 's["requests"]')" -ge "$total" ] && break
      sleep 0.1
    done
    echo "round $r $which end-to-end $(sink_stat 'round(s["requests"]/max(s["last_ts"]-s["first_ts"],1e-9))') alerts/s (accepted $total, delivered $(sink_stat 's["requests"]'))"
    stop
  done
done
