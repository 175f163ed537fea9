#!/usr/bin/env bash
# bench/cache_ab.sh: two builds of strata's RESP server, A and B, side by side in one run
# (the rounds alternate A, B, A, B, ...), to check that a change costs ordinary GET/SET
# nothing beyond noise.
#
#   cargo build --release -p strata-cache --example resp_server
#   cp target/release/examples/resp_server /tmp/resp_before     # on the old commit
#   ... change, build again ...
#   bash bench/cache_ab.sh /tmp/resp_before target/release/examples/resp_server
#
# Settings (environment):
#   ROUNDS=3     rounds; each runs A then B (B then A on odd rounds) at every depth
#   N=200000     requests per redis-benchmark test (-n)
#   CONNS=50     connections (-c)
#   DEPTHS="1 16" pipeline depths (-P)
#   THREADS=1    the servers' worker threads (the node's default is 1)
#   KEYSPACE=    redis-benchmark -r (empty: one key, as redis-benchmark does by default)
# Prints requests/s and the server's CPU time per request (user + system, from
# /proc/PID/stat: steadier than throughput when other work shares the cores) per round,
# then per test the medians and the ratios B/A.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

A=${1:?usage: bench/cache_ab.sh A_BINARY B_BINARY}
B=${2:?usage: bench/cache_ab.sh A_BINARY B_BINARY}
ROUNDS=${ROUNDS:-3}
N=${N:-200000}
CONNS=${CONNS:-50}
DEPTHS=${DEPTHS:-1 16}
THREADS=${THREADS:-1}
KEYSPACE=${KEYSPACE:-}

command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (apt-get install redis-tools)" >&2; exit 1; }

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

start() { # binary port (not in a subshell: PIDS must keep the process for the trap)
    "$1" --port "$2" --threads "$THREADS" >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        # redis-cli, not redis-benchmark: a redis-benchmark started before the port
        # listens can hang instead of failing
        [ "$(timeout 2 redis-cli -p "$2" ping 2>/dev/null)" = PONG ] && return
        sleep 0.1
    done
    echo "$1 did not start on port $2" >&2
    exit 1
}

PORT_A=$(free_port)
start "$A" "$PORT_A"
PID_A=${PIDS[-1]}
PORT_B=$(free_port)
start "$B" "$PORT_B"
PID_B=${PIDS[-1]}

TICK=$(getconf CLK_TCK)
OUT=$(mktemp)
RANGE=()
[ -n "$KEYSPACE" ] && RANGE=(-r "$KEYSPACE")

for round in $(seq "$ROUNDS"); do
    order="A B"
    [ $((round % 2)) -eq 0 ] && order="B A"
    for depth in $DEPTHS; do
        for which in $order; do
            port=$PORT_A
            pid=$PID_A
            [ "$which" = B ] && port=$PORT_B && pid=$PID_B
            for test in set get; do
                before=$(cpu_ticks "$pid")
                rps=$(redis-benchmark -p "$port" -t "$test" -n "$N" -c "$CONNS" -P "$depth" "${RANGE[@]}" --csv 2>/dev/null |
                    tail -n +2 | tr -d '"' | cut -d, -f2)
                after=$(cpu_ticks "$pid")
                us=$(python3 -c "print(round(($after - $before) * 1e6 / $TICK / $N, 2))")
                echo "$round $which P$depth ${test^^} $rps $us" | tee -a "$OUT"
            done
        done
    done
done

echo
echo "medians over $ROUNDS rounds: requests/s and server CPU us per request; ratios B/A"
python3 - "$OUT" <<'EOF'
import statistics, sys, collections
rps = collections.defaultdict(list)
cpu = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, which, depth, test, r, us = line.split()
    rps[(depth, test, which)].append(float(r))
    cpu[(depth, test, which)].append(float(us))
for depth, test in sorted({(d, t) for d, t, _ in rps}):
    ra, rb = (statistics.median(rps[(depth, test, w)]) for w in "AB")
    ca, cb = (statistics.median(cpu[(depth, test, w)]) for w in "AB")
    print(f"  {depth:>3} {test:<4} req/s A {ra:>9.0f} B {rb:>9.0f} B/A {rb / ra:.3f}   "
          f"cpu us/req A {ca:5.2f} B {cb:5.2f} B/A {cb / ca:.3f}")
EOF
rm -f "$OUT"
