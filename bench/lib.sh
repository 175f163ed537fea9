# bench/lib.sh: what the bench scripts share, sourced by them (bench/gateway.sh,
# bench/grpc.sh and the others): messages, apt installs, a free port, and process
# bookkeeping by pid.
# shellcheck shell=bash

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install it"
    # update first when the package lists are empty, and once more if an install fails
    if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
    fi
}

# true while PID runs (a zombie, or a reused pid of something else, does not count)
alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# waits up to $2 seconds for PID $1 to end
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# TERM, then KILL after 10 s; reaps it
stop_pid() {
    local pid=$1
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
    wait "$pid" 2>/dev/null || true
}

# a free TCP port on 127.0.0.1 (the kernel's pick; the caller binds it soon after)
free_port() {
    "${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
