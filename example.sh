#!/usr/bin/env bash
# Sets up a fresh Debian machine with Rust and runs the example shop:
# Python for the instances (the manifest's setup steps install Flask), a release build
# of strata, then `strata up` in the foreground. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${need[@]}"
fi
cargo build --release -p strata
exec target/release/strata up "${1:-examples/shop/strata.json}"
