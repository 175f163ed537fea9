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
# Prints requests/s per round, then per test the medians and the ratio B/A.
set -euo pipefail

A=${1:?usage: bench/cache_ab.sh A_BINARY B_BINARY}
B=${2:?usage: bench/cache_ab.sh A_BINARY B_BINARY}
ROUNDS=${ROUNDS:-3}
N=${N:-200000}
CONNS=${CONNS:-50}
DEPTHS=${DEPTHS:-1 16}
THREADS=${THREADS:-1}
KEYSPACE=${KEYSPACE:-}

command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (apt-get install redis-tools)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

start() { # binary port (not in a subshell: PIDS must keep the process for the trap)
    "$1" --port "$2" --threads "$THREADS" >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        redis-benchmark -p "$2" -t ping -n 1 -q >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "$1 did not start on port $2" >&2
    exit 1
}

PORT_A=$(free_port)
start "$A" "$PORT_A"
PORT_B=$(free_port)
start "$B" "$PORT_B"
OUT=$(mktemp)
RANGE=()
[ -n "$KEYSPACE" ] && RANGE=(-r "$KEYSPACE")

for round in $(seq "$ROUNDS"); do
    order="A B"
    [ $((round % 2)) -eq 0 ] && order="B A"
    for depth in $DEPTHS; do
        for which in $order; do
            port=$PORT_A
            [ "$which" = B ] && port=$PORT_B
            redis-benchmark -p "$port" -t set,get -n "$N" -c "$CONNS" -P "$depth" "${RANGE[@]}" --csv 2>/dev/null |
                tail -n +2 | tr -d '"' | while IFS=, read -r test rps _; do
                    echo "$round $which P$depth $test $rps" | tee -a "$OUT"
                done
        done
    done
done

echo
echo "medians over $ROUNDS rounds (requests/s), B/A:"
python3 - "$OUT" <<'EOF'
import statistics, sys, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, which, depth, test, rps = line.split()
    runs[(depth, test, which)].append(float(rps))
for depth, test in sorted({(d, t) for d, t, _ in runs}):
    a = statistics.median(runs[(depth, test, "A")])
    b = statistics.median(runs[(depth, test, "B")])
    print(f"  {depth:>3} {test:<4} A {a:>10.0f}  B {b:>10.0f}  B/A {b / a:.3f}   "
          f"(A {sorted(runs[(depth, test, 'A')])}, B {sorted(runs[(depth, test, 'B')])})")
EOF
rm -f "$OUT"
