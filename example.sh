#!/usr/bin/env bash
# Sets up a fresh Debian machine with Rust and runs the example shop:
# Python for the instances (the manifest's setup steps install Flask), a release build
# of strata, then `strata up` in the foreground. Ctrl-C stops everything.
#
# Overrides:
#   PORT=9090 ./example.sh                      the gateway on 127.0.0.1:9090 instead of :8080
#   ./example.sh --listen 127.0.0.1:9090        the same, as `strata up --listen`
#   ./example.sh path/to/strata.json            another app than examples/shop
# Any other flag is passed to `strata up` as it is (`strata up --help` lists them), for
# example `--cache-listen 127.0.0.1:6380` for a Redis port.
set -euo pipefail
cd "$(dirname "$0")"

manifest=examples/shop/strata.json
flags=()
listen=""
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen="${2:?--listen needs an address, for example 127.0.0.1:9090}"; shift 2 ;;
    --listen=*) listen="${1#--listen=}"; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*=*) flags+=("$1"); shift ;;
    # Every other flag of `strata up` takes a value.
    -*) flags+=("$1" "${2:?$1 needs a value (see strata up --help)}"); shift 2 ;;
    *) manifest="$1"; shift ;;
  esac
done
if [ -z "$listen" ] && [ -n "${PORT:-}" ]; then
  case "$PORT" in
    *[!0-9]*) echo "example.sh: PORT must be a port number, found '$PORT'" >&2; exit 2 ;;
  esac
  listen="127.0.0.1:$PORT"
fi
if [ -n "$listen" ]; then
  flags+=(--listen "$listen")
fi

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${need[@]}"
fi
cargo build --release -p strata
# PORT was for this script; each instance gets a PORT of its own from strata.
exec env -u PORT target/release/strata up "$manifest" ${flags[@]+"${flags[@]}"}
