#!/usr/bin/env bash
# bench/grpc_ab.sh: two strata builds, A and B, relaying gRPC side by side in one run
# (rounds alternate A B, then B A, ...), each `strata up` with its own tonic member, to
# tell a change to the gRPC relay from the noise of a shared machine.
#
#   bash bench/grpc_ab.sh OLD_STRATA NEW_STRATA
#
# Settings (environment):
#   ROUNDS=6        rounds; each runs A and B once per shape
#   DURATION=4      seconds per run
#   SHAPES="unary:4x25 unary:50x1 bidi:4x25"   MODE:CONNSxSTREAMS per run
#   SIZE=64         bytes per message
#   MEMBER=tonic    the member behind each: "tonic" (grpc-bench member) or "grpcio"
#                   (crates/strata/tests/fixtures/grpc_member.py, the issue's member)
#   CALLS_PER_CONN=auto  the service's relay.grpc_calls_per_connection, both sides:
#                   "auto" (1 for the grpcio member, as docs/grpc.md recommends and
#                   grpc.sh does; unset for tonic), "none" (unset) or a number
#   WORKERS_A=, WORKERS_B=   gateway.workers of A and of B (unset: one per core); with
#                   the same binary as A and B, this compares the two settings
#   GRPC_BENCH=...  the load client and tonic member (default: built from bench/grpc)
#   KEEP=1          keep the work dir (manifests, logs, raw lines)
# Prints per round the calls (or messages) per second and strata's CPU time per call
# (user + system from /proc/PID/stat: it moves much less than throughput when other work
# shares the cores), then per shape the medians and the ratios B/A.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

A=${1:?usage: bench/grpc_ab.sh A_STRATA B_STRATA}
B=${2:?usage: bench/grpc_ab.sh A_STRATA B_STRATA}
A=$(cd "$(dirname "$A")" && pwd)/$(basename "$A")
B=$(cd "$(dirname "$B")" && pwd)/$(basename "$B")
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-4}
SHAPES=${SHAPES:-unary:4x25 unary:50x1 bidi:4x25}
SIZE=${SIZE:-64}
MEMBER=${MEMBER:-tonic}
case $MEMBER in
tonic) ;;
grpcio) python3 -c 'import grpc' 2>/dev/null || die "MEMBER=grpcio needs python3-grpcio (apt-get install python3-grpcio)" ;;
*) die "MEMBER must be tonic or grpcio, not ${MEMBER@Q}" ;;
esac
CALLS_PER_CONN=${CALLS_PER_CONN:-auto}
if [ "$CALLS_PER_CONN" = auto ]; then
    CALLS_PER_CONN=none
    [ "$MEMBER" = grpcio ] && CALLS_PER_CONN=1
fi
[[ $CALLS_PER_CONN =~ ^(none|[1-9][0-9]*)$ ]] || die "CALLS_PER_CONN must be auto, none or a number, not ${CALLS_PER_CONN@Q}"
declare -A WORKERS=([A]="${WORKERS_A:-}" [B]="${WORKERS_B:-}")
for w in A B; do
    case ${WORKERS[$w]} in "" | [1-9] | [1-9][0-9]) ;; *) die "WORKERS_$w must be a number of threads, not ${WORKERS[$w]@Q}" ;; esac
done
GRPC_BENCH=${GRPC_BENCH:-}
KEEP=${KEEP:-}

if [ -z "$GRPC_BENCH" ]; then
    log "building the load client and tonic member (cargo build --release in bench/grpc)"
    cargo build --release --manifest-path bench/grpc/Cargo.toml
    GRPC_BENCH=${CARGO_TARGET_DIR:-bench/grpc/target}/release/grpc-bench
fi
GRPC_BENCH=$(cd "$(dirname "$GRPC_BENCH")" && pwd)/$(basename "$GRPC_BENCH")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-grpc-ab.XXXXXX")
OUT=$WORK/results.txt
declare -A PID MPID DIR PORT BIN=([A]="$A" [B]="$B")

ab_traps

# start WHICH: `strata up` of build WHICH with a tonic member claiming test.Echo
start() {
    local w=$1 deadline=$((SECONDS + 60))
    DIR[$w]=$WORK/$w
    PORT[$w]=$(free_port)
    mkdir -p "${DIR[$w]}"
    local run="[\"$GRPC_BENCH\", \"member\"]"
    [ "$MEMBER" = grpcio ] && run="[\"python3\", \"$(pwd)/crates/strata/tests/fixtures/grpc_member.py\"]"
    local workers="" relay=""
    [ -n "${WORKERS[$w]}" ] && workers=", \"workers\": ${WORKERS[$w]}"
    [ "$CALLS_PER_CONN" != none ] && relay=", \"relay\": {\"grpc_calls_per_connection\": $CALLS_PER_CONN}"
    cat >"${DIR[$w]}/strata.json" <<EOF
{"strata": 1, "app": "bench-grpc-ab-${w,,}",
 "gateway": {"listen": "127.0.0.1:${PORT[$w]}"$workers},
 "services": {"echo": {"run": $run, "instances": {"min": 1, "max": 1},
                       "grpc": ["test.Echo"]$relay}}}
EOF
    (cd "${DIR[$w]}" && exec "${BIN[$w]}" up strata.json --cache-listen 127.0.0.1:0) >"${DIR[$w]}/strata.log" 2>&1 &
    PID[$w]=$!
    until "$GRPC_BENCH" load "127.0.0.1:${PORT[$w]}" unary 1 0.3 "$SIZE" 2>/dev/null | grep -q '"errors": 0}'; do
        alive "${PID[$w]}" || { tail -n 20 "${DIR[$w]}/strata.log" >&2; die "strata $w exited early"; }
        [ "$SECONDS" -lt "$deadline" ] || die "strata $w did not relay calls within 60 s"
        sleep 0.3
    done
    MPID[$w]=$(pgrep -P "${PID[$w]}" -f 'grpc_member.py|grpc-bench member' | head -n 1)
    [ -n "${MPID[$w]}" ] || die "strata $w's member process was not found"
}

TICK=$(getconf CLK_TCK)

start A
start B
log "A: $A (pid ${PID[A]}, gateway workers ${WORKERS[A]:-auto}), B: $B (pid ${PID[B]}, gateway workers ${WORKERS[B]:-auto}); calls per connection $CALLS_PER_CONN; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for shape in $SHAPES; do
    mode=${shape%%:*} conns=${shape#*:}
    streams=${conns#*x} conns=${conns%x*}
    for w in A B; do
        "$GRPC_BENCH" load "127.0.0.1:${PORT[$w]}" "$mode" "$conns" 1 "$SIZE" "$streams" >/dev/null 2>&1 || true
    done
done
for round in $(seq "$ROUNDS"); do
    order="A B"
    [ $((round % 2)) -eq 0 ] && order="B A"
    for shape in $SHAPES; do
        mode=${shape%%:*} conns=${shape#*:}
        streams=${conns#*x} conns=${conns%x*}
        for w in $order; do
            before=$(cpu_ticks "${PID[$w]}") mbefore=$(cpu_ticks "${MPID[$w]}")
            doc=$("$GRPC_BENCH" load "127.0.0.1:${PORT[$w]}" "$mode" "$conns" "$DURATION" "$SIZE" "$streams")
            after=$(cpu_ticks "${PID[$w]}") mafter=$(cpu_ticks "${MPID[$w]}")
            line=$(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
n = max(d["messages"], 1)
us = (int(sys.argv[3]) - int(sys.argv[2])) * 1e6 / int(sys.argv[4]) / n
member = (int(sys.argv[6]) - int(sys.argv[5])) * 1e6 / int(sys.argv[4]) / n
print("%.0f %.2f %d %.2f" % (d["per_s"], us, d["errors"], member))' "$doc" "$before" "$after" "$TICK" "$mbefore" "$mafter")
            echo "$round $w $shape $line" | tee -a "$OUT"
        done
    done
done

echo
echo "medians over $ROUNDS rounds: calls (or messages) per second, strata's and the member's CPU us per call; ratios B/A"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'EOF'
import collections, statistics, sys
rate = collections.defaultdict(list)
cpu = collections.defaultdict(list)
member = collections.defaultdict(list)
errors = collections.Counter()
shapes = []
for line in open(sys.argv[1]):
    _, which, shape, r, us, errs, mus = line.split()
    rate[(shape, which)].append(float(r))
    member[(shape, which)].append(float(mus))
    cpu[(shape, which)].append(float(us))
    errors[(shape, which)] += int(errs)
    if shape not in shapes:
        shapes.append(shape)
for shape in shapes:
    ra, rb = (statistics.median(rate[(shape, w)]) for w in "AB")
    ca, cb = (statistics.median(cpu[(shape, w)]) for w in "AB")
    ahead = sum(b < a for a, b in zip(cpu[(shape, "A")], cpu[(shape, "B")]))
    print(f"  {shape:<11} per s A {ra:>8.0f} B {rb:>8.0f} B/A {rb / ra:.3f}   "
          f"cpu us A {ca:6.2f} B {cb:6.2f} B/A {cb / ca:.3f}   B cheaper in {ahead}/{len(cpu[(shape, 'A')])} rounds"
          f"   errors A {errors[(shape, 'A')]} B {errors[(shape, 'B')]}")
    ma, mb = (statistics.median(member[(shape, w)]) for w in "AB")
    print(f"  {'':<11} member cpu us A {ma:6.2f} B {mb:6.2f} B/A {mb / ma:.3f}")
EOF
