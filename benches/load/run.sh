#!/usr/bin/env bash
# Head-to-head load benchmark: switchyard and Prometheus Alertmanager through the team's
# harness (benches/load/harness/run.sh), in one run, pinned (server alone on CPU 1)
# and unpinned, plus the bare ceilings of this machine measured in the same run: a bare
# hyper server (read + parse the body, 202) under the same wrk load, and one reqwest
# client pushing webhooks to the sink.
#
#   benches/load/run.sh                     everything (about 30 minutes)
#   QUICK=1 benches/load/run.sh             a smoke run (about 5 minutes)
#   PINS=1 SERVERS=switchyard benches/load/run.sh
#
# The harness is used as it is, with one change made in a temporary copy: its Python
# webhook sink (which tops out near 15k webhooks/s on a shared core) is replaced by the
# Rust sink of this folder (src/bin/sink.rs, same flags, same /stats). Everything listens
# on 127.0.0.1, every process is stopped by its PID, every loop is bounded.
#
# Knobs: HARNESS (default benches/load/harness, the team's harness copied in), OUT
# (default benches/load/results/latest), PINS ("1 0"), SERVERS ("alertmanager switchyard"),
# PHASES ("ceiling durable harness soak"), SOAK_SECONDS (300), SOAK_RATE (5000), INSTALL=1
# (apt-get install wrk and prometheus-alertmanager when missing), QUICK=1, SWITCHYARD_BIN (a
# binary to measure instead of building this repository's).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
HARNESS=${HARNESS:-$here/harness}
OUT=${OUT:-$here/results/latest}
PINS=${PINS:-"1 0"}
SERVERS=${SERVERS:-"alertmanager switchyard"}
PHASES=${PHASES:-"ceiling durable harness soak"}
QUICK=${QUICK:-0}
SOAK_SECONDS=${SOAK_SECONDS:-300}
SOAK_RATE=${SOAK_RATE:-5000}
phase() { [[ " $PHASES " == *" $1 "* ]]; }

if [[ $QUICK == 1 ]]; then
  export DUR=${DUR:-5} E2E_DUR=${E2E_DUR:-5} DRAIN_MAX=${DRAIN_MAX:-10}
  SOAK_SECONDS=${SOAK_SECONDS_QUICK:-30}
fi
export DUR=${DUR:-10} E2E_DUR=${E2E_DUR:-10} DRAIN_MAX=${DRAIN_MAX:-20}

[[ -x $HARNESS/run.sh ]] || { echo "no harness at $HARNESS (set HARNESS)" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need prometheus-alertmanager; then
  if [[ ${INSTALL:-0} == 1 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus-alertmanager wrk
  else
    echo "missing wrk or prometheus-alertmanager: INSTALL=1 $0" >&2
    exit 1
  fi
fi

echo "== building (release)"
if [[ -z ${SWITCHYARD_BIN:-} ]]; then
  cargo build --release --manifest-path "$repo/Cargo.toml" --bin switchyard
  SWITCHYARD_BIN="$repo/target/release/switchyard"
fi
export SWITCHYARD_BIN
cargo build --release --manifest-path "$here/Cargo.toml"
SINK_BIN="$here/target/release/sink"

work=$(mktemp -d /tmp/switchyard-load.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]:-}"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"

# The harness, with the Rust sink behind sink.py's name and flags.
cp -r "$HARNESS/." "$work/harness"
cat >"$work/harness/sink.py" <<EOF
#!/usr/bin/env python3
# Replaced by benches/load/run.sh: the Rust sink, same flags and endpoints.
import os, sys
os.execv("$SINK_BIN", ["$SINK_BIN"] + sys.argv[1:])
EOF

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "switchyard: $SWITCHYARD_BIN (repository at $(git -C "$repo" rev-parse --short HEAD); $("$SWITCHYARD_BIN" --version 2>/dev/null || echo '?'))"
  echo "alertmanager: $(prometheus-alertmanager --version 2>&1 | head -1)"
  echo "wrk: $(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo '?')"
  echo "kernel: $(uname -r)"
  echo "cpu: $(nproc) x $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
  echo "sink: benches/load/src/bin/sink.rs in place of sink.py"
} >"$OUT/env.txt"
cat "$OUT/env.txt"

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
stop_pid() {
  local p=$1 i
  kill "$p" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- ceilings
if phase ceiling; then
  echo "== ceilings: bare hyper server (wrk, as the ingest phase) and bare reqwest push"
  printf "what\tpin\tconns\treq_s\tp50_ms\tp99_ms\tserver_cpu\n" >"$OUT/ceiling.tsv"
  for pin in $PINS; do
    if [[ $pin == 1 ]]; then srv="taskset -c 1"; gen="taskset -c 0"; else srv=""; gen=""; fi
    for mode in parse no-parse; do
      port_free 19093 || { echo "port 19093 busy" >&2; exit 1; }
      flag=(); [[ $mode == no-parse ]] && flag=(--no-parse)
      $srv "$here/target/release/bare_server" --port 19093 --max-seconds 120 "${flag[@]}" &
      sp=$!; pids+=("$sp"); sleep 0.5
      c0=$(cpu_ticks "$sp")
      $gen wrk -t1 -c32 -d"${DUR}s" --timeout 10s -s "$work/harness/post_alerts.lua" \
        http://127.0.0.1:19093/api/v2/alerts -- 1 100 0 "bare$mode" >"$work/bare.txt"
      c1=$(cpu_ticks "$sp")
      stop_pid "$sp"
      python3 - "$work/bare.txt" "bare hyper, $mode" "$pin" "$c0" "$c1" "$HZ" >>"$OUT/ceiling.tsv" <<'EOF'
import sys
a = sys.argv
kv = dict(x.split("=") for x in open(a[1]).read().split("RESULT", 1)[1].split())
d = int(kv["duration_us"]) / 1e6
print(f"{a[2]}\t{a[3]}\t32\t{int(kv['requests'])/d:.0f}\t{int(kv['lat_p50_us'])/1000:.2f}\t"
      f"{int(kv['lat_p99_us'])/1000:.2f}\t{(int(a[5])-int(a[4]))/int(a[6])/d:.2f}")
EOF
    done
    # The push ceiling: reqwest on CPU 1 (where the router would be), the sink on CPU 0.
    port_free 19094 || { echo "port 19094 busy" >&2; exit 1; }
    $gen "$SINK_BIN" --port 19094 --max-seconds 120 >/dev/null &
    kp=$!; pids+=("$kp"); sleep 0.5
    for inflight in 32 256; do
      r=$($srv "$here/target/release/bare_push" --url http://127.0.0.1:19094/hook/bare \
        --in-flight "$inflight" --seconds "$DUR" | sed -n 's/^RESULT //p')
      python3 - "$r" "$pin" "$inflight" >>"$OUT/ceiling.tsv" <<'EOF'
import sys
kv = dict(x.split("=") for x in sys.argv[1].split())
print(f"bare reqwest push (cpu us/req {kv['cpu_us_per_req']})\t{sys.argv[2]}\t{sys.argv[3]}\t{kv['req_s']}\t-\t-\t-")
EOF
    done
    stop_pid "$kp"
  done
  column -t -s $'\t' "$OUT/ceiling.tsv"
fi

# ---------------------------------------------------------------- durable ingest
# switchyard's durable ingest against the durable ceiling (durable_server: parse, group
# commit, one fdatasync per batch), at 32 and 128 connections, alternated (durable.sh).
if phase durable; then
  for pin in $PINS; do
    echo "== durable ingest against the durable ceiling, PIN=$pin"
    unpinned=""; [[ $pin == 0 ]] && unpinned=1
    UNPINNED=$unpinned ROUNDS=${DURABLE_ROUNDS:-3} SECONDS_EACH=$DUR \
      "$here/durable.sh" "$SWITCHYARD_BIN" | tee "$OUT/durable-pin$pin.txt"
  done
fi

# ---------------------------------------------------------------- the harness
if phase harness; then
  for pin in $PINS; do
    for server in $SERVERS; do
      hook=""
      ingest_matrix="10:1:0 100:1:0 1000:1:0 10:100:0 100:100:0 1000:100:0 100:1:10000"
      if [[ $server == switchyard ]]; then
        hook="$here/hook.sh"
        e2e="each0:100:1000 each0:100:2000 each0:100:4000 each0:100:8000 each0:100:10500 each0:100:15000 each0:100:25000 each0:100:30000 each0:100:35000 each0:10:15000 each0:1000:15000"
      else
        e2e="each0:100:1000 each0:100:2000 each0:100:3000 each0:100:4000"
        [[ $pin == 0 ]] && e2e="$e2e each0:100:6000 each0:100:8000"
      fi
      if [[ $QUICK == 1 ]]; then
        ingest_matrix="10:1:0 1000:1:0 100:100:0"
        [[ $server == switchyard ]] && e2e="each0:100:2000 each0:100:15000" || e2e="each0:100:2000"
      fi
      echo "== harness: $server, PIN=$pin"
      PIN=$pin SERVER_HOOK=$hook OUT="$OUT/$server-pin$pin" PHASES="sink ingest e2e" \
        INGEST_MATRIX=$ingest_matrix E2E_MATRIX=$e2e "$work/harness/run.sh"
      if [[ $server == switchyard ]]; then
        # Ingest again with every alert delivered during the run (HOLD=0), 1 alert/request.
        echo "== harness: $server, PIN=$pin, ingest while delivering (HOLD=0)"
        HOLD=0 PIN=$pin SERVER_HOOK=$hook OUT="$OUT/$server-pin$pin-deliver" PHASES="ingest" \
          INGEST_MATRIX="100:1:0 100:100:0" "$work/harness/run.sh"
      fi
    done
  done
fi

# ---------------------------------------------------------------- soak
if phase soak; then
  echo "== soak: switchyard pinned, each0, N=100, $SOAK_RATE alerts/s for $SOAK_SECONDS s; RSS every 10 s"
  port_free 19093 && port_free 19094 || { echo "ports busy" >&2; exit 1; }
  taskset -c 0 "$SINK_BIN" --port 19094 --max-seconds $((SOAK_SECONDS + 120)) >/dev/null &
  kp=$!; pids+=("$kp"); sleep 0.5
  d="$work/soak"; mkdir -p "$d"
  SRV_CPU="taskset -c 1" "$here/hook.sh" start "$d" 19093 100 each0 http://127.0.0.1:19094
  sp=$(cat "$d/server.pid"); pids+=("$sp")
  taskset -c 0 python3 "$work/harness/sender.py" --url http://127.0.0.1:19093/api/v2/alerts \
    --rate "$SOAK_RATE" --duration "$SOAK_SECONDS" --routes 100 --tag soak >"$d/sender.json" &
  sender=$!; pids+=("$sender")
  printf "t_s\trss_mib\tcpu\tdelivered\n" >"$OUT/soak.tsv"
  t0=$(date +%s); c_prev=$(cpu_ticks "$sp")
  while kill -0 "$sender" 2>/dev/null; do
    sleep 10
    t=$(( $(date +%s) - t0 ))
    rss=$(awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$sp/status")
    c=$(cpu_ticks "$sp")
    got=$(curl -fs http://127.0.0.1:19094/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["distinct"])')
    printf "%s\t%s\t%.2f\t%s\n" "$t" "$rss" "$(awk -v a="$c" -v b="$c_prev" -v hz="$HZ" 'BEGIN{print (a-b)/hz/10}')" "$got" >>"$OUT/soak.tsv"
    c_prev=$c
  done
  sleep 3
  sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$d/sender.json")
  got=$(curl -fs http://127.0.0.1:19094/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["distinct"])')
  echo "sent $sent, delivered $got" | tee -a "$OUT/soak.tsv"
  stop_pid "$sp"; stop_pid "$kp"
  column -t -s $'\t' "$OUT/soak.tsv"
fi
echo "results in $OUT"
