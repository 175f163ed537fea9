#!/usr/bin/env bash
# bench/store.sh: the store's durable writes against a raw fdatasync, same disk, same run.
#
# Run from anywhere:   bash bench/store.sh
# Settings (environment):
#   ROUNDS=5     rounds; the figures printed at the end are medians over rounds
#   OPS=2000     interleaved pairs per round: one raw fdatasync, one durable put
#   TASKS=64     tasks putting at once in the concurrent phase (group commit)
#   SECS=3       seconds of the concurrent phase per round
#   DIR=$TMPDIR  where the temp dir goes: put it on the file system the store will use
#
# Per round, in a temp dir under DIR (removed at the end):
#   - raw fdatasync: a 144-byte pwrite appended into a preallocated, zero-filled file,
#     then fdatasync: the floor of any durable write on this disk;
#   - durable put: one Store::put of a 128-byte value at a time, awaited, from a tokio task
#     (what a caller sees, channel and wake-ups included); interleaved op by op with the
#     raw fdatasync so that both see the same disk and the same neighbours;
#   - concurrent puts: TASKS tasks putting 128-byte values back to back for SECS seconds.
# Targets: p50(put) <= 1.5 x p50(raw fdatasync); concurrent throughput >= 10 x the
# single-put throughput (single = OPS / total time of the sequential puts).
# Other work on the machine moves these figures; compare the ratios from one run.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
OPS=${OPS:-2000}
TASKS=${TASKS:-64}
SECS=${SECS:-3}
DIR=${DIR:-${TMPDIR:-/tmp}}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
printf '[bench] building the store benchmark (cargo build --release -p strata-store --example store_bench)\n' >&2
cargo build --release -q -p strata-store --example store_bench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/store_bench
printf '[bench] file system of %s: %s\n' "$DIR" "$(df -T "$DIR" | awk 'NR==2 {print $2 " on " $1}')" >&2
exec "$BIN" --rounds "$ROUNDS" --ops "$OPS" --tasks "$TASKS" --secs "$SECS" --dir "$DIR"
