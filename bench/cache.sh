#!/usr/bin/env bash
# bench/cache.sh: strata's cache (RESP server) against redis-server, same machine, same run.
#
# Run from the repository root:   bash bench/cache.sh
# Settings (environment):
#   ROUNDS=3        rounds; each runs every server at both pipeline depths, the order of
#                   the servers rotating between rounds
#   TESTS=set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset
#                   redis-benchmark's -t (issue 13's list: every data type)
#   N1=100000       requests per test at -P 1
#   N16=500000      requests per test at -P 16
#   CONNS=50        redis-benchmark connections (-c)
#   KEYSPACE=100000 random keys (-r)
#   THREADS="0 1"   strata's RESP worker thread counts to measure, each as its own server
#                   (0: one per core); every one is compared with redis-server
#   STRATA=target/release/examples/resp_server   the server binary (built with cargo)
#   KEEP=1          keep the work dir (raw CSV, logs)
#   QUOTA=60        the servers bound, not the client: every server pinned to the last
#                   core and held to QUOTA per cent of it (a cpu cgroup of its own, 10 ms
#                   period; cgroup v1 or v2, needs root), redis-benchmark pinned to the
#                   other cores. Then each rate is the server's capacity: what it costs per
#                   request, wake-ups and system calls included (THREADS defaults to 1)
# See the cache section of bench/README.md for what is measured.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
TESTS=${TESTS:-set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset}
N1=${N1:-100000}
N16=${N16:-500000}
CONNS=${CONNS:-50}
KEYSPACE=${KEYSPACE:-100000}
QUOTA=${QUOTA:-}
if [ -n "$QUOTA" ]; then THREADS=${THREADS:-1}; else THREADS=${THREADS:-0 1}; fi
STRATA=${STRATA:-target/release/examples/resp_server}
KEEP=${KEEP:-}


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

ensure_tools() {
    local missing=()
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

ensure_strata() {
    if [ "$STRATA" = target/release/examples/resp_server ]; then
        log "building the RESP server (cargo build --release -p strata-cache --example resp_server)"
        cargo build --release -q -p strata-cache --example resp_server
    fi
    [ -x "$STRATA" ] || die "$STRATA is not an executable"
}

# ------------------------------------------------------------------ processes

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-cache-bench.XXXXXX")
PIDS=()
CGROUPS=()
SERVER_CPU=()
CLIENT_CPU=()
if [ -n "$QUOTA" ]; then
    [ "$(nproc)" -ge 2 ] || die "QUOTA needs two cores: one for the servers, one for the client"
    [[ "$QUOTA" =~ ^[0-9]+$ ]] && [ "$QUOTA" -ge 5 ] && [ "$QUOTA" -le 100 ] \
        || die "QUOTA is a per cent of one core, 5 to 100 (got '$QUOTA')"
    command -v taskset >/dev/null 2>&1 || die "QUOTA needs taskset (util-linux)"
    SERVER_CPU=(taskset -c "$(($(nproc) - 1))")
    CLIENT_CPU=(taskset -c "0-$(($(nproc) - 2))")
fi

# hold PID NAME: with QUOTA, moves the process PID (all its threads) into a cpu cgroup of
# its own held to QUOTA per cent of one core.
hold() {
    local pid=$1 name=$2 dir
    [ -n "$QUOTA" ] || return 0
    if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
        dir=/sys/fs/cgroup/cpu/strata-bench-$$-$name
        mkdir "$dir" || die "cannot make the cgroup $dir (QUOTA needs root)"
        echo 10000 >"$dir/cpu.cfs_period_us"
        echo $((QUOTA * 100)) >"$dir/cpu.cfs_quota_us"
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        dir=/sys/fs/cgroup/strata-bench-$$-$name
        echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        mkdir "$dir" || die "cannot make the cgroup $dir (QUOTA needs root)"
        echo "$((QUOTA * 100)) 10000" >"$dir/cpu.max" || die "no cpu controller in $dir"
    else
        die "QUOTA needs a cpu cgroup controller (v1 at /sys/fs/cgroup/cpu or v2)"
    fi
    CGROUPS+=("$dir")
    echo "$pid" >"$dir/cgroup.procs"
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    local dir
    for dir in "${CGROUPS[@]}"; do
        rmdir "$dir" 2>/dev/null || true
    done
    if [ -n "$KEEP" ]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ready() {
    local port=$1 name=$2 i
    for i in $(seq 1 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null)" = PONG ]; then return 0; fi
        sleep 0.1
    done
    die "$name did not answer PING on port $port (see $WORK/$name.log)"
}

# ------------------------------------------------------------------ run

ensure_tools
ensure_strata

REDIS_PORT=$(free_port)
"${SERVER_CPU[@]}" redis-server --save '' --appendonly no --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no \
    >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
hold $! redis
wait_ready "$REDIS_PORT" redis
TARGETS=(redis)
declare -A PORT=([redis]=$REDIS_PORT)
for t in $THREADS; do
    n=$t; [ "$n" = 0 ] && n=$(nproc)
    name=strata-${n}t
    [ -n "${PORT[$name]:-}" ] && continue
    port=$(free_port)
    "${SERVER_CPU[@]}" "$STRATA" --port "$port" --threads "$n" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    hold $! "$name"
    wait_ready "$port" "$name"
    TARGETS+=("$name")
    PORT[$name]=$port
done
log "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') and ${TARGETS[*]:1} (Nt: N RESP worker threads; shards = cores)"
log "$(nproc) cores; $ROUNDS rounds; -c $CONNS -r $KEYSPACE; -P 1 -n $N1; -P 16 -n $N16"
[ -z "$QUOTA" ] || log "servers on core $(($(nproc) - 1)) held to $QUOTA % of it; redis-benchmark on cores 0-$(($(nproc) - 2))"

# run TARGET PORT PIPELINE N ROUND: one redis-benchmark run, appended to results.tsv
run() {
    local target=$1 port=$2 pipeline=$3 n=$4 round=$5
    "${CLIENT_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -t "$TESTS" -c "$CONNS" -r "$KEYSPACE" -n "$n" -P "$pipeline" --csv \
        >"$WORK/$target-P$pipeline-r$round.csv" 2>"$WORK/$target-P$pipeline-r$round.err" \
        || die "redis-benchmark against $target failed (see $WORK)"
    python3 - "$WORK/$target-P$pipeline-r$round.csv" "$target" "$pipeline" "$round" >>"$WORK/results.tsv" <<'EOF'
import csv, sys
path, target, pipeline, rnd = sys.argv[1:]
for row in csv.DictReader(open(path)):
    print("\t".join([rnd, target, pipeline, row["test"], row["rps"], row["p99_latency_ms"]]))
EOF
    grep -P "^$round\t$target\t$pipeline\t" "$WORK/results.tsv" | awk -F'\t' '{printf "[bench] round %s  %-10s -P %-2s %-3s %12.0f req/s  p99 %6.3f ms\n", $1, $2, $3, $4, $5, $6}' >&2
}

log "warm-up"
for target in "${TARGETS[@]}"; do
    redis-benchmark -h 127.0.0.1 -p "${PORT[$target]}" -t set,get -c "$CONNS" -r "$KEYSPACE" -n 100000 -P 16 -q \
        >/dev/null 2>&1
done

: >"$WORK/results.tsv"
count=${#TARGETS[@]}
for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order each round so no server always runs first (or right after another).
    order=()
    for i in $(seq 0 $((count - 1))); do order+=("${TARGETS[$(((i + round - 1) % count))]}"); done
    for pipeline in 1 16; do
        n=$N1; [ "$pipeline" = 16 ] && n=$N16
        for target in "${order[@]}"; do
            run "$target" "${PORT[$target]}" "$pipeline" "$n" "$round"
        done
    done
done

python3 - "$WORK/results.tsv" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
fig = {}
tests = []
for rnd, target, pipeline, test, rps, p99 in rows:
    fig.setdefault((target, pipeline, test), []).append((float(rps), float(p99)))
    if test not in tests:
        tests.append(test)
targets = sorted({t for t, _, _ in fig if t != "redis"})
print()
print("medians over %d rounds (req/s; p99 in ms)" % len({r[0] for r in rows}))
for target in targets:
    print()
    print("%-4s %-36s %12s %12s %6s %10s %10s %6s" % ("", "", "redis", target, "ratio", "redis p99", "p99", "ratio"))
    worst_rps, worst_p99 = None, None
    for pipeline in ("1", "16"):
        for test in tests:
            r = fig.get(("redis", pipeline, test)); s = fig.get((target, pipeline, test))
            if not r or not s:
                continue
            r_rps = statistics.median(x[0] for x in r); s_rps = statistics.median(x[0] for x in s)
            r_p99 = statistics.median(x[1] for x in r); s_p99 = statistics.median(x[1] for x in s)
            ratio = s_rps / r_rps
            p99_ratio = s_p99 / r_p99 if r_p99 > 0 else float("nan")
            worst_rps = ratio if worst_rps is None else min(worst_rps, ratio)
            worst_p99 = p99_ratio if worst_p99 is None else max(worst_p99, p99_ratio)
            print("%-4s %-36s %12.0f %12.0f %6.2f %10.3f %10.3f %6.2f" % ("-P" + pipeline, test, r_rps, s_rps, ratio, r_p99, s_p99, p99_ratio))
    print("%s: lowest throughput ratio %.2f (target >= 1.00), highest p99 ratio %.2f (target <= 1.00)" % (target, worst_rps, worst_p99))
print()
print("ratio = strata / redis-server; throughput: higher is better; p99: lower is better")
EOF
