#!/usr/bin/env bash
# bench/autoscale.sh: strata's autoscaler under a step from 1 to 64 clients, and the latency
# that scale from zero adds to a request, against the targets of the autoscaling issue.
#
# Run from anywhere:   bash bench/autoscale.sh
# Settings (environment):
#   ROUNDS=3            ramp rounds, then as many alternating pairs of own-start / cold
#   SLEEP_MS=50         the handler's sleep per request
#   CONCURRENCY=4       requests one instance serves at a time (the handler's slots) and the
#                       autoscale target (autoscale.concurrency)
#   FROM=1 TO=64        clients before and after the step (closed loop, no think time)
#   NEEDED=ceil(TO/CONCURRENCY)  the instance count the step needs (16)
#   MAX_INSTANCES=20    instances.max of the scaled service
#   WARM_S=3            seconds at FROM clients before the step
#   HOLD_S=12           seconds at TO clients after it
#   STEADY_S=5          the last seconds of the hold taken as steady state
#   UP_WINDOW_MS=1000 DOWN_WINDOW_MS=3000   the autoscaler's stabilisation windows
#   IDLE_TIMEOUT_MS=1000  instances.idle_timeout_ms (the min-0 service stops after it)
#   POLL_MS=20          how often GET /v1/ps is polled during a ramp
#   QUIET_S=2           pause once the pool is back at 1 ready, before the next round
#   SETTLE_TIMEOUT=120  seconds to wait for the pool to come back to 1 ready
#   FIRST_TARGET_MS=1000  target: first new instance serving within this of the step
#   COLD_SLACK_MS=10    target: scale from zero adds at most own start + this
#   PYTHON=PATH         the interpreter of the handler (default: the real executable behind
#                       python3, not a pyenv/asdf shim, so that its start is the program's)
#   STRATA=target/release/strata   the binary (built with cargo when missing)
#   READY_TIMEOUT=60    seconds for the app to come up
#   KEEP=1              keep the work dir (manifest, strata log, raw JSON lines)
# See bench/README.md for what is measured.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
SLEEP_MS=${SLEEP_MS:-50}
CONCURRENCY=${CONCURRENCY:-4}
FROM=${FROM:-1}
TO=${TO:-64}
NEEDED=${NEEDED:-$(((TO + CONCURRENCY - 1) / CONCURRENCY))}
MAX_INSTANCES=${MAX_INSTANCES:-20}
WARM_S=${WARM_S:-3}
HOLD_S=${HOLD_S:-12}
STEADY_S=${STEADY_S:-5}
UP_WINDOW_MS=${UP_WINDOW_MS:-1000}
DOWN_WINDOW_MS=${DOWN_WINDOW_MS:-3000}
IDLE_TIMEOUT_MS=${IDLE_TIMEOUT_MS:-1000}
POLL_MS=${POLL_MS:-20}
QUIET_S=${QUIET_S:-2}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-120}
FIRST_TARGET_MS=${FIRST_TARGET_MS:-1000}
COLD_SLACK_MS=${COLD_SLACK_MS:-10}
PYTHON=${PYTHON:-}
STRATA=${STRATA:-}
READY_TIMEOUT=${READY_TIMEOUT:-60}
KEEP=${KEEP:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/bench/autoscale
BENCH=$BENCH_DIR/target/release/autoscale-bench


# ------------------------------------------------------------------ tools


apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install it"
    if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
    fi
}

ensure_python() {
    if [ -z "$PYTHON" ]; then
        if ! command -v python3 >/dev/null 2>&1; then
            log "installing python3"
            apt_install python3
        fi
        # the interpreter itself: a shim (pyenv, asdf) is a shell script that would add its
        # own start to the program's
        PYTHON=$(python3 -c 'import sys; print(sys.executable)')
    fi
    [ -x "$PYTHON" ] || die "$PYTHON is not an executable"
}

ensure_strata() {
    if [ -z "$STRATA" ]; then
        STRATA=$ROOT/target/release/strata
        if [ ! -x "$STRATA" ]; then
            log "$STRATA not found: building it (cargo build --release -p strata)"
            (cd "$ROOT" && cargo build --release -p strata)
        fi
    fi
    [ -x "$STRATA" ] || die "$STRATA is not an executable"
    STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
}

build_bench() {
    log "building autoscale-bench (cargo build --release in bench/autoscale)"
    cargo build --release --manifest-path "$BENCH_DIR/Cargo.toml"
    [ -x "$BENCH" ] || die "$BENCH was not built"
}

# ------------------------------------------------------------------ processes

WORK=""
APP=""
STRATA_PID=""
API=""
GATEWAY=""

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

# Handlers still running in the app dir once strata is gone (it stops its instances; this
# is the safety net when it could not): each is killed by its pid.
stop_leftovers() {
    [ -n "$APP" ] && [ -d "$APP" ] || return 0
    local d pid
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$(readlink "$d/cwd" 2>/dev/null || true)" = "$APP" ] || continue
        alive "$pid" || continue
        log "instance pid $pid outlived strata: stopping it"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
    done
}

stop_strata() {
    [ -n "$STRATA_PID" ] || return 0
    if alive "$STRATA_PID" && [ -n "$API" ]; then
        timeout 30 "$STRATA" --api "$API" down >/dev/null 2>&1 || true
        wait_gone "$STRATA_PID" 30 || true
    fi
    stop_pid "$STRATA_PID"
    STRATA_PID=""
    stop_leftovers
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_strata
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ the app

# sleepy: the scaled service (route /); cold: min 0, max 1 (route /cold), for scale from zero
write_manifest() {
    mkdir -p "$APP"
    cp "$BENCH_DIR/handler.py" "$APP/handler.py"
    cat >"$APP/strata.json" <<EOF
{
  "strata": 1,
  "app": "scalebench",
  "gateway": { "listen": "127.0.0.1:0" },
  "cache": { "listen": null },
  "services": {
    "sleepy": {
      "run": ["$PYTHON", "-S", "handler.py"],
      "env": { "SLEEP_MS": "$SLEEP_MS", "SLOTS": "$CONCURRENCY" },
      "instances": { "min": 1, "max": $MAX_INSTANCES, "idle_timeout_ms": $IDLE_TIMEOUT_MS },
      "autoscale": { "concurrency": $CONCURRENCY, "up_window_ms": $UP_WINDOW_MS, "down_window_ms": $DOWN_WINDOW_MS },
      "routes": ["/"],
      "health": { "path": "/healthz" }
    },
    "cold": {
      "run": ["$PYTHON", "-S", "handler.py"],
      "env": { "SLEEP_MS": "$SLEEP_MS", "SLOTS": "$CONCURRENCY" },
      "instances": { "min": 0, "max": 1, "idle_timeout_ms": $IDLE_TIMEOUT_MS },
      "routes": ["/cold"],
      "health": { "path": "/healthz" }
    }
  }
}
EOF
    local out
    if ! out=$("$STRATA" validate "$APP/strata.json" 2>&1); then
        printf '%s\n' "$out" >&2
        die "$STRATA rejects the bench manifest (above): does it have autoscaling (services.*.autoscale)?"
    fi
}

node_field() {
    sed -n "s/^ *\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" "$APP/.strata/node.json" 2>/dev/null | head -n1
}

start_strata() {
    (cd "$APP" && exec "$STRATA" up strata.json) >"$WORK/strata.log" 2>&1 &
    STRATA_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    while :; do
        alive "$STRATA_PID" || { tail -n 30 "$WORK/strata.log" >&2; die "strata up exited (log above)"; }
        if [ -s "$APP/.strata/node.json" ]; then
            API=$(node_field api)
            GATEWAY=$(node_field gateway)
            [ -n "$API" ] && [ -n "$GATEWAY" ] && break
        fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$WORK/strata.log" >&2; die "no node.json after ${READY_TIMEOUT}s"; }
        sleep 0.1
    done
    "$BENCH" wait --api "$API" --service sleepy --ready 1 --timeout-s "$READY_TIMEOUT" \
        || { tail -n 30 "$WORK/strata.log" >&2; die "sleepy is not ready (strata log above)"; }
}

# ------------------------------------------------------------------ measuring

# run KIND ROUND ARGS...: one measurement, its JSON line appended to the results
run() {
    local kind=$1 round=$2 err=$WORK/$1.$2.err
    shift 2
    if ! "$BENCH" "$kind" --round "$round" "$@" >>"$RESULTS" 2>"$err"; then
        cat "$err" >&2
        tail -n 20 "$WORK/strata.log" >&2
        die "$kind round $round failed (above; strata's log after it)"
    fi
    sed 's/^\[autoscale-bench\] //' "$err" | while IFS= read -r line; do log "$line"; done
}

back_to_one() {
    "$BENCH" wait --api "$API" --service sleepy --ready 1 --timeout-s "$SETTLE_TIMEOUT" 2>"$WORK/wait.err" \
        || { cat "$WORK/wait.err" >&2; die "the pool did not come back to 1 instance"; }
    sed 's/^\[autoscale-bench\] /pool back: /' "$WORK/wait.err" | while IFS= read -r line; do log "$line"; done
    sleep "$QUIET_S"
}

# ------------------------------------------------------------------ main

ensure_python
ensure_strata
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-autoscale-bench.XXXXXX")
APP=$WORK/app
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
write_manifest
build_bench

log "strata: $STRATA"
log "work dir: $WORK; handler: $PYTHON -S handler.py (sleep $SLEEP_MS ms, $CONCURRENCY at a time)"
start_strata
log "gateway $GATEWAY, node API $API; sleepy ready"

for ((r = 1; r <= ROUNDS; r++)); do
    back_to_one
    run ramp "$r" --gateway "$GATEWAY" --api "$API" --service sleepy --path /work \
        --from "$FROM" --to "$TO" --warm-s "$WARM_S" --hold-s "$HOLD_S" --steady-s "$STEADY_S" \
        --needed "$NEEDED" --poll-ms "$POLL_MS"
done

# scale from zero: the program's own start and a cold request, alternating
OWN=(--cmd "$PYTHON -S handler.py" --dir "$APP")
COLD=(--gateway "$GATEWAY" --api "$API" --service cold --path /cold/x --sleep-ms "$SLEEP_MS" \
    --timeout-s "$SETTLE_TIMEOUT")
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2 == 1)); then
        run own-start "$r" "${OWN[@]}"
        run cold "$r" "${COLD[@]}"
    else
        run cold "$r" "${COLD[@]}"
        run own-start "$r" "${OWN[@]}"
    fi
done

echo
echo "autoscale bench: $ROUNDS rounds, $(nproc) CPUs; handler sleeps $SLEEP_MS ms, $CONCURRENCY requests at a time per instance"
echo "step $FROM -> $TO closed-loop clients after ${WARM_S} s, held ${HOLD_S} s; needed $NEEDED instances (max $MAX_INSTANCES);"
echo "autoscale: concurrency $CONCURRENCY, up window $UP_WINDOW_MS ms, down window $DOWN_WINDOW_MS ms; idle timeout $IDLE_TIMEOUT_MS ms"
STRATA_VERSION=$("$STRATA" --version 2>/dev/null || echo "strata (version unknown)")
echo "$STRATA_VERSION; load generator, strata and every instance share the machine's CPUs"
SAMPLE_SIGNAL=$(sed -n 's/.*"autoscale_signal":"\([^"]*\)".*/\1/p' "$RESULTS" | head -n1)
[ -z "$SAMPLE_SIGNAL" ] || echo "the node's autoscale signal: $SAMPLE_SIGNAL"
"$BENCH" report "$RESULTS" --first-target-ms "$FIRST_TARGET_MS" --cold-slack-ms "$COLD_SLACK_MS"
