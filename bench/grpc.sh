#!/usr/bin/env bash
# bench/grpc.sh: gRPC unary and bidi streaming through strata's gateway against nginx
# (grpc_pass) and HAProxy (mode http, h2 both sides), and straight to the member, same
# member process, same run (issue 16). Two members in turn: a tonic echo server (fast,
# so the proxies are what is measured) and the grpcio member of strata's tests.
#
# Run from anywhere:   bash bench/grpc.sh
# Settings (environment):
#   ROUNDS=3          rounds; each round runs every target once, in a rotating order
#   DURATION=5        seconds per run
#   CONNS=50          client connections (h2c), each running STREAMS closed loops
#   STREAMS=1         calls in flight (unary) or open streams (bidi) per connection
#   SIZE=64           bytes per message
#   MEMBERS="tonic grpcio"   which members, in this order
#   MODES="unary bidi"       which kinds of call
#   WARMUP=1          seconds of warm-up per target and mode before the first round
#   STRATA=$CARGO_TARGET_DIR/release/strata   the binary (built with cargo when missing)
#   GRPC_BENCH=...    the load client and tonic member (default: built from bench/grpc)
#   PROXY_LOG=buffered  nginx's access log: "buffered" (a line per call, 64 KiB buffer,
#                     like strata's) or "off"
#   HAPROXY_LOG=none  HAProxy's log: "none" (HAProxy's default) or "ring" (`option
#                     httplog`, a line per call into a 1 MiB ring in memory, the nearest
#                     HAProxy has to strata's buffered access log without a syslog server)
#   STRATA_ACCESS_LOG=true  strata's `gateway.access_log`: true (its default, a line
#                     per call) or false (no log, as HAProxy's default)
#   CLIENT_THREADS=auto  the load client's tokio worker threads (TOKIO_WORKER_THREADS):
#                     "auto" (tokio's default, one per core) or a number. The client's CPU
#                     time per call is reported beside the proxy's and the member's: on a
#                     machine whose cores all three share, it is part of what a run measures
#   SYSCALLS=0        1: also count the proxy's system calls and context switches during
#                     each run (`perf stat -e raw_syscalls:sys_enter,context-switches`,
#                     all its processes) and report them per call or message
#   CALLS_PER_CONN=auto  strata's relay.grpc_calls_per_connection: "auto" (1 for the
#                     grpcio member, as docs/grpc.md recommends for it; unset for tonic),
#                     "none" (unset: one multiplexed connection per gateway thread) or a number
#   PEER_HEADERS=0    1: nginx and HAProxy add to each call what strata's instance
#                     contract adds (`x-request-id`, `traceparent` with a per-call trace
#                     id, `x-strata-attempt: 1`), so that the member decodes the same
#                     metadata behind every proxy (a like-for-like variant; the default
#                     compares the peers as they are usually configured)
#   READY_TIMEOUT=60  seconds for the member to become ready
#   KEEP=1            keep the work dir (configs, logs, raw JSON lines) for inspection
# See bench/README.md for what is measured.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
STREAMS=${STREAMS:-1}
SIZE=${SIZE:-64}
MEMBERS=${MEMBERS:-tonic grpcio}
MODES=${MODES:-unary bidi}
WARMUP=${WARMUP:-1}
STRATA=${STRATA:-$TARGET_DIR/release/strata}
GRPC_BENCH=${GRPC_BENCH:-}
PROXY_LOG=${PROXY_LOG:-buffered}
HAPROXY_LOG=${HAPROXY_LOG:-none}
PEER_HEADERS=${PEER_HEADERS:-0}
STRATA_ACCESS_LOG=${STRATA_ACCESS_LOG:-true}
case $STRATA_ACCESS_LOG in true | false) ;; *) die "STRATA_ACCESS_LOG must be true or false, not ${STRATA_ACCESS_LOG@Q}" ;; esac
case $HAPROXY_LOG in none | ring) ;; *) die "HAPROXY_LOG must be none or ring, not ${HAPROXY_LOG@Q}" ;; esac
READY_TIMEOUT=${READY_TIMEOUT:-60}
CALLS_PER_CONN=${CALLS_PER_CONN:-auto}
case $CALLS_PER_CONN in auto | none | [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;; *) die "CALLS_PER_CONN must be auto, none or a number from 1, not ${CALLS_PER_CONN@Q}" ;; esac
SYSCALLS=${SYSCALLS:-0}
CLIENT_THREADS=${CLIENT_THREADS:-auto}
case $CLIENT_THREADS in auto | [1-9] | [1-9][0-9]) ;; *) die "CLIENT_THREADS must be a number of threads or auto, not ${CLIENT_THREADS@Q}" ;; esac
case $SYSCALLS in 0 | 1) ;; *) die "SYSCALLS must be 0 or 1, not ${SYSCALLS@Q}" ;; esac
KEEP=${KEEP:-}
GRPCIO_MEMBER=$ROOT/crates/strata/tests/fixtures/grpc_member.py


# ------------------------------------------------------------------ tools



ensure_tools() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    [ "$SYSCALLS" = 0 ] || command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
    if [[ " $MEMBERS " == *" grpcio "* ]] && ! python3 -c 'import grpc' 2>/dev/null; then
        missing+=(python3-grpcio)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
    HAPROXY=$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)
    PYTHON=$(command -v python3)
}

ensure_binaries() {
    if [ ! -x "$STRATA" ]; then
        log "$STRATA not found: building it (cargo build --release -p strata)"
        cargo build --release -p strata
    fi
    [ -x "$STRATA" ] || die "$STRATA is not an executable"
    STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
    if [ -z "$GRPC_BENCH" ]; then
        log "building the load client and tonic member (cargo build --release in bench/grpc)"
        cargo build --release --manifest-path bench/grpc/Cargo.toml
        GRPC_BENCH=${CARGO_TARGET_DIR:-bench/grpc/target}/release/grpc-bench
    fi
    [ -x "$GRPC_BENCH" ] || die "$GRPC_BENCH is not an executable"
    GRPC_BENCH=$(cd "$(dirname "$GRPC_BENCH")" && pwd)/$(basename "$GRPC_BENCH")
}

# ------------------------------------------------------------------ process bookkeeping

WORK=""
STRATA_PID=""
STRATA_DIR=""
NGINX_PID=""
HAPROXY_PID=""
MEMBER_PID=""
MEMBER_COMM=""


stop_strata() {
    [ -n "$STRATA_PID" ] || return 0
    if alive "$STRATA_PID"; then
        (cd "$STRATA_DIR" && timeout 30 "$STRATA" down >/dev/null 2>&1) || true
        wait_gone "$STRATA_PID" 30 || true
        stop_pid "$STRATA_PID"
    fi
    wait "$STRATA_PID" 2>/dev/null || true
    STRATA_PID=""
    # safety net: the member strata reported, if it still runs the same program
    if [ -n "$MEMBER_PID" ] && alive "$MEMBER_PID" &&
        [ "$(cat "/proc/$MEMBER_PID/comm" 2>/dev/null)" = "$MEMBER_COMM" ]; then
        log "member pid $MEMBER_PID outlived strata: stopping it"
        stop_pid "$MEMBER_PID"
    fi
    MEMBER_PID=""
}

stop_proxies() {
    [ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID"
    [ -n "$HAPROXY_PID" ] && stop_pid "$HAPROXY_PID"
    NGINX_PID=""
    HAPROXY_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_proxies
    stop_strata
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ strata and its member

# write_manifest DIR GATEWAY_PORT KIND: one service, the member, claiming test.Echo
write_manifest() {
    mkdir -p "$1"
    GW_PORT=$2 KIND=$3 GRPC_BENCH="$GRPC_BENCH" PYTHON_BIN="$PYTHON" MEMBER_PY="$GRPCIO_MEMBER" \
        ACCESS_LOG="$STRATA_ACCESS_LOG" CALLS_PER_CONN="$CALLS_PER_CONN" \
        "$PYTHON" - >"$1/strata.json" <<'PY'
import json, os
e = os.environ
run = [e["GRPC_BENCH"], "member"] if e["KIND"] == "tonic" else [e["PYTHON_BIN"], e["MEMBER_PY"]]
doc = {"strata": 1, "app": "bench-grpc",
       "gateway": {"listen": "127.0.0.1:" + e["GW_PORT"],
                   "access_log": e["ACCESS_LOG"] == "true"},
       "services": {"echo": {"run": run,
                             "instances": {"min": 1, "max": 1},
                             "grpc": ["test.Echo"]}}}
per_conn = e["CALLS_PER_CONN"]
if per_conn == "auto":
    per_conn = "1" if e["KIND"] == "grpcio" else "none"
if per_conn != "none":
    doc["services"]["echo"]["relay"] = {"grpc_calls_per_connection": int(per_conn)}
print(json.dumps(doc, indent=2))
PY
}

# member_ready DIR: prints "PORT PID" of the ready member, fails while there is none
member_ready() {
    local json
    json=$(cd "$1" && "$STRATA" ps --json 2>/dev/null) || return 1
    "$PYTHON" -c '
import json, sys
doc = json.loads(sys.stdin.read())
ready = [i for s in doc.get("services", []) if s.get("name") == "echo"
         for i in s.get("instances", []) if i.get("state") == "ready"]
if not ready:
    sys.exit(1)
print(ready[0]["port"], ready[0].get("pid") or "")
' <<<"$json"
}

start_strata() {
    local dir=$1 found="" deadline=$((SECONDS + READY_TIMEOUT))
    STRATA_DIR=$dir
    (cd "$dir" && exec "$STRATA" up strata.json --cache-listen 127.0.0.1:0) >"$dir/strata.log" 2>&1 &
    STRATA_PID=$!
    while :; do
        alive "$STRATA_PID" || { tail -n 30 "$dir/strata.log" >&2; die "strata up exited early (log above)"; }
        if found=$(member_ready "$dir"); then break; fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$dir/strata.log" >&2; die "the echo member was not ready after ${READY_TIMEOUT}s"; }
        sleep 0.2
    done
    MEMBER_PORT=${found%% *}
    MEMBER_PID=${found#* }
    MEMBER_COMM=$(cat "/proc/$MEMBER_PID/comm" 2>/dev/null || true)
}

# ------------------------------------------------------------------ the peers

start_nginx() {
    local dir=$1 listen_port=$2 upstream_port=$3 access_log
    mkdir -p "$dir"
    if [ "$PROXY_LOG" = off ]; then
        access_log="access_log off;"
    else
        access_log="access_log $dir/access.log combined buffer=64k flush=1s;"
    fi
    local nginx_headers=""
    if [ "$PEER_HEADERS" = 1 ]; then
        # \$request_id: 32 hex digits, a W3C trace id's size
        nginx_headers='grpc_set_header x-request-id $request_id; grpc_set_header traceparent 00-$request_id-00f067aa0ba902b7-01; grpc_set_header x-strata-attempt 1;'
    fi
    # nginx 1.22 (Debian 12): h2c by `listen ... http2` (`http2 on;` is 1.25.1+);
    # keepalive_requests also bounds the calls per client HTTP/2 connection
    cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    $access_log
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream member {
        server 127.0.0.1:$upstream_port;
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$listen_port http2 reuseport;
        location / {
            $nginx_headers
            grpc_pass grpc://member;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }
    }
}
EOF
    "$NGINX" -t -q -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx config rejected (see $dir/error.log)"
    "$NGINX" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
}

start_haproxy() {
    local dir=$1 listen_port=$2 upstream_port=$3 ring="" log=""
    mkdir -p "$dir"
    if [ "$HAPROXY_LOG" = ring ]; then
        ring=$'ring calls\n    format rfc5424\n    maxlen 1200\n    size 1048576'
        log=$'    log ring@calls local0\n    option httplog'
    fi
    local haproxy_headers=""
    if [ "$PEER_HEADERS" = 1 ]; then
        haproxy_headers=$'    http-request set-header x-request-id %[uuid]\n    http-request set-header traceparent 00-%[uuid,regsub(-,,g)]-00f067aa0ba902b7-01\n    http-request set-header x-strata-attempt 1'
    fi
    # one process, a thread per core (HAProxy's default), h2 on both sides
    cat >"$dir/haproxy.cfg" <<EOF
global
    maxconn 4096
$ring
defaults
    mode http
$log
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend grpc_in
    bind 127.0.0.1:$listen_port proto h2
$haproxy_headers
    default_backend member
backend member
    server s1 127.0.0.1:$upstream_port proto h2
EOF
    "$HAPROXY" -c -q -f "$dir/haproxy.cfg" || die "haproxy config rejected ($dir/haproxy.cfg)"
    "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
}

# ------------------------------------------------------------------ measuring

CLK_TCK=$(getconf CLK_TCK)

# the processes that relay for a target: nginx's master and workers, haproxy, strata
proxy_pids() {
    case $1 in
    # shellcheck disable=SC2046  # one pid per word
    nginx) echo "$NGINX_PID" $(ps -o pid= --ppid "$NGINX_PID") ;;
    haproxy) echo "$HAPROXY_PID" ;;
    strata) echo "$STRATA_PID" ;;
    *) ;;
    esac
}

# wait_grpc TARGET: until unary calls and a bidi stream go through it
wait_grpc() {
    local target=$1 deadline=$((SECONDS + 20)) out mode
    for mode in unary bidi; do
        while :; do
            out=$("$GRPC_BENCH" load "$target" "$mode" 1 0.3 "$SIZE" 2>/dev/null || true)
            case $out in *'"errors": 0}'*) [[ $out != *'"messages": 0,'* ]] && break ;; esac
            [ "$SECONDS" -lt "$deadline" ] || die "$target does not answer $mode calls (last: $out)"
            sleep 0.2
        done
    done
}

# client CMD...: the load client with CLIENT_THREADS tokio workers
client() {
    if [ "$CLIENT_THREADS" = auto ]; then
        "$@"
    else
        TOKIO_WORKER_THREADS=$CLIENT_THREADS "$@"
    fi
}

# run_load MEMBER NAME TARGET MODE ROUND: one load run, with the CPU time the proxy and
# the member spent during it
run_load() {
    local kind=$1 name=$2 target=$3 mode=$4 round=$5 err out pids proxy0 member0 proxy1 member1
    local perf_out perf_pid="" calls=-1 switches=-1
    pids=$(proxy_pids "$name")
    err="$WORK/raw/$kind.$name.$mode.$round.err"
    perf_out="$WORK/raw/$kind.$name.$mode.$round.syscalls"
    if [ "$SYSCALLS" = 1 ] && [ -n "$pids" ]; then
        # shellcheck disable=SC2086  # one pid per word
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$(echo $pids | tr ' ' ',')" -o "$perf_out" &
        perf_pid=$!
        sleep 0.2
    fi
    # shellcheck disable=SC2086
    proxy0=$(cpu_ticks $pids)
    member0=$(cpu_ticks "$MEMBER_PID")
    out=$(client "$GRPC_BENCH" load "$target" "$mode" "$CONNS" "$DURATION" "$SIZE" "$STREAMS" 2>"$err") ||
        { cat "$err" >&2; die "grpc-bench load against $name ($target) failed"; }
    # shellcheck disable=SC2086
    proxy1=$(cpu_ticks $pids)
    member1=$(cpu_ticks "$MEMBER_PID")
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        calls=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$perf_out")
        [[ $calls =~ ^[0-9]+$ ]] || die "perf stat gave no system call count for $name (see $perf_out)"
        switches=$(awk -F, '/context-switches/ { print $1 }' "$perf_out")
        [[ $switches =~ ^[0-9]+$ ]] || die "perf stat gave no context switch count for $name (see $perf_out)"
    fi
    printf '%s %s %s %s %s %s %s %s %s\n' "$kind" "$name" "$mode" "$round" \
        "$((proxy1 - proxy0))" "$((member1 - member0))" "$calls" "$switches" "$out" >>"$RESULTS"
    log "$(printf '%-6s %-7s %-5s round %s: %s' "$kind" "$name" "$mode" "$round" "$out")"
}

report() {
    RESULTS=$RESULTS ROUNDS=$ROUNDS CONNS=$CONNS CLIENT_THREADS=$CLIENT_THREADS STREAMS=$STREAMS SIZE=$SIZE CLK_TCK=$CLK_TCK \
        PROXY_LOG=$PROXY_LOG HAPROXY_LOG=$HAPROXY_LOG STRATA_ACCESS_LOG=$STRATA_ACCESS_LOG "$PYTHON" - <<'PY'
import json, os, statistics
tck = int(os.environ["CLK_TCK"])
rows = {}
order = []
for line in open(os.environ["RESULTS"]):
    kind, name, mode, rnd, proxy_ticks, member_ticks, syscalls, switches, doc = line.split(" ", 8)
    d = json.loads(doc)
    msgs = max(d["messages"], 1)
    # Counted from a little before the run to its end (the idle proxy makes a few).
    d["syscalls"] = int(syscalls) / msgs if int(syscalls) >= 0 else None
    d["switches"] = int(switches) / msgs if int(switches) >= 0 else None
    d["proxy_us"] = int(proxy_ticks) / tck * 1e6 / msgs
    d["member_us"] = int(member_ticks) / tck * 1e6 / msgs
    d["client_us"] = d["client_cpu_us"] / msgs
    rows.setdefault((kind, mode, name), {})[int(rnd)] = d
    if (kind, mode) not in order:
        order.append((kind, mode))

def med(kind, mode, name, key):
    vals = [r[key] for r in rows.get((kind, mode, name), {}).values()]
    return statistics.median(vals) if vals else float("nan")

def ratio(a, b):
    return a / b if b else float("nan")

print()
print(f"medians of {os.environ['ROUNDS']} rounds; {os.environ['CONNS']} connections x "
      f"{os.environ['STREAMS']} closed loop(s); {os.environ['SIZE']}-byte messages; latencies in "
      f"microseconds; cpu: the proxy's CPU time per call or message (nginx: all its processes), "
      f"the member's, the load client's ({os.environ['CLIENT_THREADS']} thread(s)); "
      f"nginx access log: {os.environ['PROXY_LOG']}, HAProxy: {os.environ['HAPROXY_LOG']}, strata: "
      f"{'its own' if os.environ['STRATA_ACCESS_LOG'] == 'true' else 'off'}")
targets = [("direct", "the member, no proxy"), ("nginx", "nginx grpc_pass"),
           ("haproxy", "HAProxy, h2 both sides"), ("strata", "strata gateway")]
for kind, mode in order:
    unit = "calls/s" if mode == "unary" else "msg/s"
    print()
    print(f"== {kind} member, {mode}")
    hdr = (f"{'target':<8} {unit:>9} {'p50':>7} {'p99':>7} {'cpu us':>7} {'member us':>9} {'client us':>9} "
           f"{'errors':>6}  what")
    print(hdr)
    print("-" * len(hdr))
    for t, what in targets:
        if (kind, mode, t) not in rows:
            continue
        errs = sum(r["errors"] for r in rows[(kind, mode, t)].values())
        cpu = f"{med(kind, mode, t, 'proxy_us'):.1f}" if t != "direct" else "-"
        counted = [r["syscalls"] for r in rows[(kind, mode, t)].values() if r["syscalls"] is not None]
        switched = [r["switches"] for r in rows[(kind, mode, t)].values() if r["switches"] is not None]
        sys_note = f", {statistics.median(counted):.2f} system calls each" if counted else ""
        sys_note += f", {statistics.median(switched):.2f} context switches" if switched else ""
        print(f"{t:<8} {med(kind, mode, t, 'per_s'):>9.0f} {med(kind, mode, t, 'p50_us'):>7.0f} "
              f"{med(kind, mode, t, 'p99_us'):>7.0f} {cpu:>7} {med(kind, mode, t, 'member_us'):>9.1f} "
              f"{med(kind, mode, t, 'client_us'):>9.1f} "
              f"{errs:>6}  {what}{sys_note}")
    s = med(kind, mode, "strata", "per_s")
    for peer in ("nginx", "haproxy", "direct"):
        print(f"strata/{peer:<7}  throughput {ratio(s, med(kind, mode, peer, 'per_s')):.2f}   "
              f"p99 {ratio(med(kind, mode, 'strata', 'p99_us'), med(kind, mode, peer, 'p99_us')):.2f}"
              + (f"   cpu {ratio(med(kind, mode, 'strata', 'proxy_us'), med(kind, mode, peer, 'proxy_us')):.2f}"
                 if peer != "direct" else ""))
    best_name = max(("nginx", "haproxy"), key=lambda p: med(kind, mode, p, "per_s"))
    # The spread: a median of a few rounds hides a target that ran at two speeds (the
    # grpcio member does, bench/README.md "stop 40").
    spread = "; ".join(
        f"{t} {min(v):.0f}-{max(v):.0f}"
        for t, v in ((t, [d["per_s"] for d in rows[(kind, mode, t)].values()]) for t, _ in targets)
        if (kind, mode, t) in rows)
    print(f"per round, {unit}: {spread}")
    ours, theirs = rows.get((kind, mode, "strata"), {}), rows.get((kind, mode, best_name), {})
    per_round = [ratio(ours[n]["per_s"], theirs[n]["per_s"]) for n in sorted(ours) if n in theirs]
    print(f"strata/{best_name} per round: " + ", ".join(f"{x:.2f}" for x in per_round))
    r = ratio(s, med(kind, mode, best_name, "per_s"))
    print(f"target (throughput >= 1.0x the better peer, {best_name}): {r:.2f}, "
          f"{'met' if r >= 1.0 else 'NOT met'}")
PY
}

# ------------------------------------------------------------------ main

ensure_tools
ensure_binaries
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-grpc.XXXXXX")
mkdir -p "$WORK/raw"
RESULTS=$WORK/results.txt
: >"$RESULTS"

log "strata: $STRATA"
log "strata relay.grpc_calls_per_connection: $CALLS_PER_CONN (auto: 1 for the grpcio member, unset for tonic)"
log "grpc-bench: $GRPC_BENCH"
log "nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //'), haproxy: $("$HAPROXY" -v | head -n1 | awk '{print $3}')"
log "work dir: $WORK"
log "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

for kind in $MEMBERS; do
    case $kind in tonic | grpcio) ;; *) die "MEMBERS: unknown member $kind (tonic, grpcio)" ;; esac
    GW_PORT=$(free_port)
    NGINX_PORT=$(free_port)
    HAPROXY_PORT=$(free_port)
    write_manifest "$WORK/$kind/app" "$GW_PORT" "$kind"
    start_strata "$WORK/$kind/app"
    [ -n "$MEMBER_PID" ] || die "strata ps --json gave no pid for the member"
    # nginx and HAProxy go to the very member process strata runs: the same member for all
    start_nginx "$WORK/$kind/nginx" "$NGINX_PORT" "$MEMBER_PORT"
    start_haproxy "$WORK/$kind/haproxy" "$HAPROXY_PORT" "$MEMBER_PORT"
    log "$kind member on 127.0.0.1:$MEMBER_PORT (pid $MEMBER_PID); strata :$GW_PORT, nginx :$NGINX_PORT, haproxy :$HAPROXY_PORT"
    declare -A TARGET=(
        [direct]="127.0.0.1:$MEMBER_PORT"
        [nginx]="127.0.0.1:$NGINX_PORT"
        [haproxy]="127.0.0.1:$HAPROXY_PORT"
        [strata]="127.0.0.1:$GW_PORT"
    )
    for t in direct nginx haproxy strata; do wait_grpc "${TARGET[$t]}"; done
    ORDER=(direct nginx haproxy strata)
    for mode in $MODES; do
        if [ "$WARMUP" != 0 ]; then
            for t in "${ORDER[@]}"; do
                client "$GRPC_BENCH" load "${TARGET[$t]}" "$mode" "$CONNS" "$WARMUP" "$SIZE" "$STREAMS" >/dev/null 2>&1 || true
            done
        fi
        for ((r = 1; r <= ROUNDS; r++)); do
            for ((i = 0; i < ${#ORDER[@]}; i++)); do
                t=${ORDER[$(((i + r - 1) % ${#ORDER[@]}))]}
                run_load "$kind" "$t" "${TARGET[$t]}" "$mode" "$r"
            done
        done
    done
    stop_proxies
    stop_strata
    unset TARGET
done

report
