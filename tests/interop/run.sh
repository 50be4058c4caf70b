#!/usr/bin/env bash
# Interoperability with the real senders: Debian's Prometheus and Alertmanager send to
# switchyard, and switchyard's rules deliver to a receiver.
#
#   Prometheus (always-firing rule) --/api/v2/alerts-------------------> switchyard -> receiver /prom
#   Prometheus -> Alertmanager --webhook /alerts/alertmanager----------> switchyard -> receiver /am
#
# Then grouping against Alertmanager's as the reference: one alert stream posted to both,
# Alertmanager grouping by cluster (group_wait 2s, group_interval 3s) to /am-group and
# switchyard's `group by labels.cluster wait 2s every 3s` to /sy-group; the notifications
# agree in count and membership, group by group.
#
# Then routing that remembers, against Prometheus's own re-sends (every second here): over
# 10 s of re-sends, `dedup until resolved` lets exactly one firing delivery through to
# /once; when the alerting rule stops firing (its file rewritten, Prometheus reloaded with
# SIGHUP), `resolve once` delivers exactly one resolution there, though Prometheus keeps
# re-sending the resolved alert.
#
# Every process listens on 127.0.0.1 only, is stopped by its own PID, and the whole run is
# bounded in time. Installs the two Debian packages when they are missing (needs root).
# Usage: tests/interop/run.sh [path/to/switchyard]
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN="${1:-target/debug/switchyard}"
LIMIT="${INTEROP_SECONDS:-120}"
[ -x "$BIN" ] || cargo build --quiet --bin switchyard

if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
    echo "interop: installing prometheus and prometheus-alertmanager"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RECV_PORT=$(free_port); SY_PORT=$(free_port); AM_PORT=$(free_port); PROM_PORT=$(free_port)

# The receiver: appends one line per request (path and body) to a file.
python3 -u - "$RECV_PORT" "$WORK/received" <<'PY' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(out, "a") as f:
            f.write(self.path + " " + body.decode(errors="replace").replace("\n", " ") + "\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)

mkdir -p "$WORK/rules"
cat > "$WORK/rules/interop.rules" <<RULES
target prom_sink { url = "http://127.0.0.1:$RECV_PORT/prom" }
target am_sink   { url = "http://127.0.0.1:$RECV_PORT/am" }
target once_sink { url = "http://127.0.0.1:$RECV_PORT/once" }
target group_sink { url = "http://127.0.0.1:$RECV_PORT/sy-group" }
when @source == "prometheus" and labels.alertname == "InteropAlways" and @state == "firing" -> post prom_sink
when @source == "alertmanager" and labels.alertname == "InteropAlways" -> post am_sink
rule "interop once" when @source == "prometheus" and labels.alertname == "InteropAlways" and @state == "firing"
  -> post once_sink, dedup until resolved, resolve once
rule "interop groups" when @source == "prometheus" and labels.alertname in ["GroupA", "GroupB", "GroupC", "GroupD"]
  -> post group_sink, group by labels.cluster wait 2s every 3s repeat 1h
RULES
"$BIN" serve --listen "127.0.0.1:$SY_PORT" --rules "$WORK/rules" --data "$WORK/data" >"$WORK/switchyard.log" 2>&1 &
PIDS+=($!)

cat > "$WORK/am.yml" <<AM
route:
  receiver: switchyard
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1m
  routes:
    - matchers: ['alertname=~"Group.*"']
      receiver: reference
      group_by: [cluster]
      group_wait: 2s
      group_interval: 3s
      repeat_interval: 1h
receivers:
  - name: switchyard
    webhook_configs:
      - url: http://127.0.0.1:$SY_PORT/alerts/alertmanager
  - name: reference
    webhook_configs:
      - url: http://127.0.0.1:$RECV_PORT/am-group
AM
prometheus-alertmanager --config.file="$WORK/am.yml" --storage.path="$WORK/am" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$WORK/am.log" 2>&1 &
PIDS+=($!)

cat > "$WORK/prom.yml" <<PROM
global:
  evaluation_interval: 1s
rule_files: ["$WORK/alerts.yml"]
alerting:
  alertmanagers:
    - static_configs: [{ targets: ["127.0.0.1:$SY_PORT"] }]
    - static_configs: [{ targets: ["127.0.0.1:$AM_PORT"] }]
PROM
cat > "$WORK/alerts.yml" <<'RULE'
groups:
  - name: interop
    rules:
      - alert: InteropAlways
        expr: vector(1)
        labels: { severity: test }
RULE
# Prometheus drops its first batch when no Alertmanager is known yet and resends every
# resend-delay (1 m by default): 1 s keeps the test short.
prometheus --config.file="$WORK/prom.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --rules.alert.resend-delay=1s >"$WORK/prom.log" 2>&1 &
PROM_PID=$!
PIDS+=($PROM_PID)
count() { grep -c "^$1 " "$WORK/received" 2>/dev/null || true; }
fail() {
    echo "interop: FAILED, $1" >&2
    echo "--- received"; cut -c1-300 "$WORK/received" 2>/dev/null || true
    echo "--- switchyard"; grep -v " unrouted: " "$WORK/switchyard.log" | tail -30
    echo "--- alertmanager"; tail -20 "$WORK/am.log"
    echo "--- prometheus"; tail -20 "$WORK/prom.log"
    exit 1
}

start=$SECONDS
until grep -q '^/prom ' "$WORK/received" 2>/dev/null && grep -q '^/am ' "$WORK/received" 2>/dev/null; do
    (( SECONDS - start < LIMIT )) || fail "not everything arrived within ${LIMIT}s"
    sleep 1
done
echo "interop: Prometheus -> switchyard and Prometheus -> Alertmanager -> switchyard delivered in $((SECONDS - start))s"
grep -m1 '^/prom ' "$WORK/received" | cut -c1-200
grep -m1 '^/am ' "$WORK/received" | cut -c1-200

# Grouping, with Alertmanager as the reference: the same alerts to both, at the same time.
post_both() {
    python3 - "$AM_PORT" "$SY_PORT" "$@" <<'PY' || fail "posting the group alerts"
import datetime, json, sys, urllib.request
now = datetime.datetime.now(datetime.timezone.utc)
moment = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
alerts = [{"labels": {"alertname": s.split(":")[0], "cluster": s.split(":")[1]},
           "startsAt": moment(now), "endsAt": moment(now + datetime.timedelta(hours=1))}
          for s in sys.argv[3:]]
for port in sys.argv[1:3]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", json.dumps(alerts).encode(),
                                 {"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
PY
}
post_both GroupA:eu GroupB:eu GroupC:us
sleep 4
post_both GroupD:eu
sleep 5
python3 - "$WORK/received" <<'PY' || fail "the group notifications differ from Alertmanager's"
import json, sys
seen = {"/am-group": {}, "/sy-group": {}}
for line in open(sys.argv[1]):
    path, _, body = line.rstrip("\n").partition(" ")
    if path in seen:
        b = json.loads(body)
        names = sorted(a["labels"]["alertname"] for a in b["alerts"] if a["status"] == "firing")
        seen[path].setdefault(b["groupLabels"].get("cluster"), []).append(names)
am, sy = seen["/am-group"], seen["/sy-group"]
print("interop: Alertmanager's groups:", am)
print("interop: switchyard's groups:  ", sy)
want = {"eu": [["GroupA", "GroupB"], ["GroupA", "GroupB", "GroupD"]], "us": [["GroupC"]]}
sys.exit(0 if am == sy == want else 1)
PY
echo "interop: group notifications agree with Alertmanager's in count and membership"

# Ten seconds of re-sends: /prom (no memory) gets each, /once exactly one.
first_prom=$(count /prom)
sleep 10
resends=$(( $(count /prom) - first_prom ))
(( resends >= 3 )) || fail "Prometheus re-sent only $resends times in 10 s"
[ "$(count /once)" = 1 ] || fail "dedup: /once got $(count /once) deliveries over $resends re-sends, not 1"
echo "interop: $resends re-sends in 10 s, one delivery through dedup"

# The alert stops firing: Prometheus sends it resolved (and keeps re-sending that).
cat > "$WORK/alerts.yml" <<'RULE'
groups:
  - name: interop
    rules:
      - alert: InteropAlways
        expr: vector(1) == 0
        labels: { severity: test }
RULE
kill -HUP "$PROM_PID"
start=$SECONDS
until [ "$(count /once)" -ge 2 ]; do
    (( SECONDS - start < 60 )) || fail "no resolution reached /once within 60 s"
    sleep 1
done
sleep 5
[ "$(count /once)" = 2 ] || fail "resolve once: /once got $(count /once) deliveries, not 2 (one firing, one resolution)"
grep '^/once ' "$WORK/received" | tail -1 | grep -q '"endsAt"' || fail "the second delivery to /once is not the resolution"
echo "interop: the resolution went out once, $((SECONDS - start))s after the rule stopped firing"
exit 0
