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

# proc_sum FILE PROGRAM PID...: the awk PROGRAM's number from /proc/PID/FILE of each
# process, summed (a process gone counts 0)
proc_sum() {
    local file=$1 program=$2 pid sum=0 n
    shift 2
    for pid in "$@"; do
        n=$(awk "$program" "/proc/$pid/$file" 2>/dev/null || echo 0)
        sum=$((sum + ${n:-0}))
    done
    echo "$sum"
}

# cpu_ticks PID...: the user + system clock ticks these processes have used (the fields
# after the command name, which may hold spaces)
cpu_ticks() { proc_sum stat '{sub(/^.*\) /, ""); print $12 + $13}' "$@"; }

# rss_kb PID...: the resident memory of these processes, in KB
rss_kb() { proc_sum status '/^VmRSS:/ {print $2}' "$@"; }


# nginx_member_conf [DIRECTIVES]: the config of the nginx member that gateway.sh,
# gateway_ab.sh and slowloris.sh run under strata: one worker answering a 5-byte 200
# ("hello") to every request. ${PORT} and ${TMPDIR} are left for strata to expand.
# DIRECTIVES go into the location before the return (CACHE=1: a Cache-Control header).
nginx_member_conf() {
    local conf
    conf=$(cat <<'CONF'
worker_processes 1;
pid ${TMPDIR}/nginx.pid;
error_log ${TMPDIR}/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path ${TMPDIR}/client_body;
    proxy_temp_path ${TMPDIR}/proxy;
    fastcgi_temp_path ${TMPDIR}/fastcgi;
    uwsgi_temp_path ${TMPDIR}/uwsgi;
    scgi_temp_path ${TMPDIR}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen 127.0.0.1:${PORT};
        location / { default_type text/plain; DIRECTIVES return 200 'hello'; }
    }
}
CONF
)
    local directives=${1:-}
    printf '%s\n' "${conf/DIRECTIVES /${directives:+$directives }}"
}

# For the scripts that compare two strata builds A and B (gateway_ab.sh, grpc_ab.sh),
# which keep each build's `strata up` pid in PID[w], its directory in DIR[w] and its
# binary in BIN[w], under $WORK: stops both (`strata down`, then the process) and removes
# $WORK unless KEEP is set, on exit, Ctrl-C included.
ab_cleanup() {
    local rc=$? w
    trap - EXIT INT TERM
    for w in A B; do
        [ -n "${PID[$w]:-}" ] || continue
        (cd "${DIR[$w]}" && timeout 30 "${BIN[$w]}" down >/dev/null 2>&1) || true
        wait_gone "${PID[$w]}" 30 || stop_pid "${PID[$w]}"
    done
    if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
ab_traps() {
    trap ab_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
