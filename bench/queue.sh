#!/usr/bin/env bash
# bench/queue.sh: strata's queues against NATS JetStream, same machine, same run.
#
# Run from anywhere:   bash bench/queue.sh
# Settings (environment):
#   ROUNDS=5            rounds; each runs both targets once, the order alternating
#   SECS=3              seconds of each timed phase, (a) and (b)
#   SIZE=128            message size in bytes
#   UNACKED=256         messages unacknowledged at once in (b)
#   BATCH=100           messages per fetch in (c)
#   CONSUME=200000      messages consumed in the timed part of (c)
#   FLOOR_SECS=1        seconds of each floor measurement (fdatasync, GET /v1/health)
#   STRATA_FSYNC=always the bench queue's fsync policy: always, interval or none
#   IN_FLIGHT=2         strata's Producer's batches on the wire at once in (b) (in
#                       order either way: docs/queues.md, "Order across batches in flight")
#   PUBLISH_BATCH=UNACKED  strata's Producer's messages per batch in (b)
#   NODE_ENV=           environment of the strata node (e.g. TOKIO_WORKER_THREADS=1)
#   STRATA=PATH         the strata binary (default: cargo build --release -p strata)
#   STRATA_API=URL      measure an already running node instead of starting one (its
#                       queue "bench" must exist)
#   NATS_SERVER=PATH    the nats-server binary (default: from PATH, /usr/sbin; apt-get
#                       installs the Debian package when missing)
#   KEEP=1              keep the work dir (logs, data, raw results)
# See bench/queue/README.md for what is measured.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
SIZE=${SIZE:-128}
UNACKED=${UNACKED:-256}
BATCH=${BATCH:-100}
CONSUME=${CONSUME:-200000}
FLOOR_SECS=${FLOOR_SECS:-1}
STRATA_FSYNC=${STRATA_FSYNC:-always}
IN_FLIGHT=${IN_FLIGHT:-2}
PUBLISH_BATCH=${PUBLISH_BATCH:-$UNACKED}
STRATA=${STRATA:-}
STRATA_API=${STRATA_API:-}
NATS_SERVER=${NATS_SERVER:-}
KEEP=${KEEP:-}
READY_TIMEOUT=${READY_TIMEOUT:-60}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/bench/queue
BENCH=$BENCH_DIR/target/release/queue-bench

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ tools

ensure_nats() {
    if [ -z "$NATS_SERVER" ]; then
        NATS_SERVER=$(command -v nats-server 2>/dev/null || true)
        for p in /usr/sbin/nats-server /usr/bin/nats-server; do
            [ -n "$NATS_SERVER" ] || { [ -x "$p" ] && NATS_SERVER=$p; } || true
        done
    fi
    if [ -z "$NATS_SERVER" ]; then
        command -v apt-get >/dev/null 2>&1 || die "nats-server is missing and there is no apt-get to install it"
        log "installing nats-server (Debian package)"
        local sudo=()
        if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=(sudo); fi
        if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nats-server >/dev/null; then
            "${sudo[@]}" apt-get update -qq
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq nats-server >/dev/null
        fi
        NATS_SERVER=$(command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server)
    fi
    [ -x "$NATS_SERVER" ] || die "$NATS_SERVER is not an executable"
}

build() {
    if [ -z "$STRATA_API" ]; then
        if [ -z "$STRATA" ]; then
            log "building strata (cargo build --release -p strata)"
            (cd "$ROOT" && cargo build --release -p strata)
            STRATA=$ROOT/target/release/strata
        fi
        [ -x "$STRATA" ] || die "$STRATA is not an executable"
        STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
    fi
    log "building queue-bench (cargo build --release in bench/queue)"
    cargo build --release --manifest-path "$BENCH_DIR/Cargo.toml"
    [ -x "$BENCH" ] || die "$BENCH was not built"
}

# ------------------------------------------------------------------ processes

WORK=""
NATS_PID=""
STRATA_PID=""
API=""

alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
    fi
    wait "$pid" 2>/dev/null || true
}

stop_strata() {
    [ -n "$STRATA_PID" ] || return 0
    if alive "$STRATA_PID" && [ -n "$API" ]; then
        timeout 30 "$STRATA" --api "$API" down >/dev/null 2>&1 || true
        wait_gone "$STRATA_PID" 30 || true
    fi
    stop_pid "$STRATA_PID"
    STRATA_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_strata
    stop_pid "$NATS_PID"
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_nats() {
    "$NATS_SERVER" -js -sd "$WORK/nats" -a 127.0.0.1 -p -1 >"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    local deadline=$((SECONDS + 20)) port=""
    while [ -z "$port" ]; do
        alive "$NATS_PID" || { cat "$WORK/nats.log" >&2; die "nats-server exited (log above)"; }
        [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/nats.log" >&2; die "nats-server is not listening after 20 s"; }
        port=$(sed -n 's/.*Listening for client connections on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$WORK/nats.log" | head -n1)
        [ -n "$port" ] || sleep 0.1
    done
    NATS_URL=nats://127.0.0.1:$port
}

# What JetStream promises when it acknowledges a publish, for the version at hand.
nats_durability() {
    local version
    version=$("$NATS_SERVER" --version 2>&1 | head -n1)
    version="nats-server ${version#nats-server: }"
    echo "$version (JetStream, file storage; started as: nats-server -js -sd DIR -a 127.0.0.1 -p -1)"
    if grep -a -q 'sync_interval' "$NATS_SERVER"; then
        echo "JetStream durability: this nats-server has the jetstream sync_interval option; the bench leaves it at its default (2m): a publish is acknowledged once written to the OS, fsync in the background every 2 minutes"
    else
        echo "JetStream durability: acknowledged BEFORE any fsync. This version has no sync option (sync_interval/sync_always came in 2.10): the file store writes each message to the OS (page cache) and fsyncs every 2 minutes (built-in defaultSyncInterval); an acknowledged message can be lost on power loss or a kernel crash (a crash of nats-server alone loses nothing)"
    fi
}

start_strata() {
    mkdir -p "$WORK/app"
    cat >"$WORK/app/strata.json" <<EOF
{
  "strata": 1,
  "app": "queue-bench",
  "services": { "idle": { "run": ["sleep", "86400"] } },
  "queues": { "bench": { "fsync": "$STRATA_FSYNC" } }
}
EOF
    (cd "$WORK/app" && exec env ${NODE_ENV:-} "$STRATA" up strata.json --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --cache-listen 127.0.0.1:0) \
        >"$WORK/strata.log" 2>&1 &
    STRATA_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT)) state=$WORK/app/.strata/node.json
    while :; do
        if ! alive "$STRATA_PID"; then
            tail -n 20 "$WORK/strata.log" >&2
            return 1
        fi
        if [ -s "$state" ]; then
            API=$(sed -n 's/^ *"api": *"\([^"]*\)".*/\1/p' "$state" | head -n1)
            # The node API answers only with a token: the bench client reads STRATA_TOKEN.
            local token
            token="$(dirname "$state")/control.token"
            [ -s "$token" ] && export STRATA_TOKEN="$(cat "$token")"
            [ -n "$API" ] && return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$WORK/strata.log" >&2; return 1; }
        sleep 0.1
    done
}

# ------------------------------------------------------------------ measuring

RUN_OPTS=()
NODE_UP=1   # the node answers (for the GET /v1/health floor)
STRATA_OK=1 # and its queue runs have not failed
FAILED=0

# run_target TARGET ROUND
run_target() {
    local target=$1 round=$2 err=$WORK/$1.$2.err
    case $target in
        strata)
            [ "$STRATA_OK" = 1 ] || return 0
            if ! "$BENCH" strata --api "$API" --queue bench --round "$round" "${RUN_OPTS[@]}" \
                >>"$RESULTS" 2>"$err"; then
                cat "$err" >&2
                log "strata round $round failed (above); strata is left out of the remaining rounds"
                STRATA_OK=0
                FAILED=1
                return 0
            fi
            ;;
        jetstream)
            if ! "$BENCH" jetstream --nats "$NATS_URL" --round "$round" "${RUN_OPTS[@]}" \
                >>"$RESULTS" 2>"$err"; then
                cat "$err" >&2
                die "JetStream round $round failed (above)"
            fi
            ;;
    esac
    log "$(grep '^\[queue-bench\]' "$err" | sed 's/^\[queue-bench\] //') (round $round)"
}

run_floors() {
    local round=$1
    "$BENCH" fsync --dir "$WORK" --secs "$FLOOR_SECS" --size "$SIZE" --round "$round" >>"$RESULTS" \
        || die "the fdatasync probe failed"
    if [ "$NODE_UP" = 1 ]; then
        "$BENCH" health --api "$API" --secs "$FLOOR_SECS" --round "$round" >>"$RESULTS" \
            || { log "GET /v1/health failed"; NODE_UP=0; FAILED=1; }
    fi
}

# ------------------------------------------------------------------ main

ensure_nats
build
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-queue-bench.XXXXXX")
RESULTS=$WORK/results.txt
: >"$RESULTS"
RUN_OPTS=(--secs "$SECS" --size "$SIZE" --unacked "$UNACKED" --batch "$BATCH" --consume "$CONSUME" --in-flight "$IN_FLIGHT" --publish-batch "$PUBLISH_BATCH")

log "work dir: $WORK ($(df -PT "$WORK" | awk 'NR == 2 {print $2}') filesystem; strata's queue, JetStream's store and the fdatasync probe all live here)"
start_nats
log "nats-server on $NATS_URL"
DURABILITY=$(nats_durability)
printf '%s\n' "$DURABILITY" | while IFS= read -r line; do log "$line"; done

if [ -n "$STRATA_API" ]; then
    API=$STRATA_API
    log "strata: the running node at $API (its queue bench)"
elif start_strata; then
    log "strata: node API $API, queue bench with fsync $STRATA_FSYNC (pid $STRATA_PID)"
else
    log "strata did not start (log above): only JetStream is measured"
    NODE_UP=0
    STRATA_OK=0
    FAILED=1
fi

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then order=(strata jetstream); else order=(jetstream strata); fi
    for t in "${order[@]}"; do run_target "$t" "$r"; done
    run_floors "$r"
done

echo
echo "queue bench: $ROUNDS rounds, ${SECS}s per timed phase, $SIZE-byte messages, $(nproc) CPUs"
printf '%s\n' "$DURABILITY"
if [ -z "$STRATA_API" ]; then
    echo "strata: queue fsync policy $STRATA_FSYNC ('always': fdatasync before each acknowledgement, group commit)"
fi
"$BENCH" report "$RESULTS"
if [ "$FAILED" != 0 ]; then
    echo
    echo "strata was not measured in every round (see the errors above)"
    exit 1
fi
