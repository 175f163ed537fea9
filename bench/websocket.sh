#!/usr/bin/env bash
# bench/websocket.sh: WebSocket through strata's gateway against nginx as a WebSocket
# proxy and against the member directly, same member, same run (issue 16).
#
# Run from anywhere:   bash bench/websocket.sh
# Settings (environment):
#   ROUNDS=3          rounds; each round runs every target once, in a rotating order
#   DURATION=10       seconds per loaded run (CONNS connections, closed loops)
#   LAT_DURATION=$DURATION  seconds per one-connection run
#   CONNS=100         connections of the loaded runs
#   SIZE=128          bytes per message (a text frame each way)
#   WARMUP=2          seconds of warm-up per target before the first round
#   HELD=4000         then WebSockets held open and idle through each proxy at once (0:
#                     none): each proxy's resident memory before, while they are held,
#                     and 3 s after they closed
#   STRATA=$CARGO_TARGET_DIR/release/strata   the binary (built with cargo when missing)
#   WS_BENCH=$CARGO_TARGET_DIR/release/examples/ws_bench   load client and echo member
#                     (built with cargo when missing or older than its source)
#   READY_TIMEOUT=60  seconds for the member to become ready
#   KEEP=1            keep the work dir (configs, logs, raw JSON lines) for inspection
#   PIN=1             the load client alone on core 0; strata (so its member too) and
#                     nginx on the last core: the proxies and the member bound, not the
#                     client, and the client never waits for a core behind them
#   WORKERS=$(nproc --all)  strata's gateway workers (gateway.workers) and nginx's
#                     worker_processes, the same for both: left to themselves under PIN,
#                     strata would run one (it follows the CPU affinity) and nginx 1.22
#                     two (it counts the online CPUs)
# See bench/README.md for what is measured.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
LAT_DURATION=${LAT_DURATION:-$DURATION}
CONNS=${CONNS:-100}
SIZE=${SIZE:-128}
WARMUP=${WARMUP:-2}
STRATA=${STRATA:-$TARGET_DIR/release/strata}
WS_BENCH=${WS_BENCH:-}
READY_TIMEOUT=${READY_TIMEOUT:-60}
HELD=${HELD:-4000}
KEEP=${KEEP:-}
PIN=${PIN:-}
WORKERS=${WORKERS:-$(nproc --all)}
SERVER_CPU=()
CLIENT_CPU=()
if [ -n "$PIN" ]; then
    [ "$(nproc)" -ge 2 ] || die "PIN needs two cores"
    command -v taskset >/dev/null 2>&1 || die "PIN needs taskset (util-linux)"
    SERVER_CPU=(taskset -c "$(($(nproc) - 1))")
    CLIENT_CPU=(taskset -c 0)
fi


# ------------------------------------------------------------------ tools



ensure_tools() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
    PYTHON=$(command -v python3)
}

ensure_binaries() {
    if [ ! -x "$STRATA" ]; then
        log "$STRATA not found: building it (cargo build --release -p strata)"
        cargo build --release -p strata
    fi
    [ -x "$STRATA" ] || die "$STRATA is not an executable"
    STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
    if [ -z "$WS_BENCH" ]; then
        WS_BENCH=$TARGET_DIR/release/examples/ws_bench
        if [ ! -x "$WS_BENCH" ] || [ crates/gateway/examples/ws_bench.rs -nt "$WS_BENCH" ]; then
            log "building the load client and echo member (cargo build --release -p strata-gateway --example ws_bench)"
            cargo build --release -p strata-gateway --example ws_bench
        fi
    fi
    [ -x "$WS_BENCH" ] || die "$WS_BENCH is not an executable"
    WS_BENCH=$(cd "$(dirname "$WS_BENCH")" && pwd)/$(basename "$WS_BENCH")
}

# ------------------------------------------------------------------ process bookkeeping

WORK=""
STRATA_PID=""
STRATA_DIR=""
PROXY_PID=""
MEMBER_PID=""




stop_strata() {
    [ -n "$STRATA_PID" ] || return 0
    if alive "$STRATA_PID"; then
        (cd "$STRATA_DIR" && timeout 30 "$STRATA" down >/dev/null 2>&1) || true
        wait_gone "$STRATA_PID" 30 || true
        stop_pid "$STRATA_PID"
    fi
    wait "$STRATA_PID" 2>/dev/null || true
    STRATA_PID=""
    # safety net: the member strata reported, if it still runs ws_bench
    if [ -n "$MEMBER_PID" ] && alive "$MEMBER_PID" &&
        [ "$(cat "/proc/$MEMBER_PID/comm" 2>/dev/null)" = ws_bench ]; then
        log "member pid $MEMBER_PID outlived strata: stopping it"
        stop_pid "$MEMBER_PID"
    fi
    MEMBER_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_strata
    [ -n "$PROXY_PID" ] && stop_pid "$PROXY_PID"
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ strata and its member

# write_manifest DIR GATEWAY_PORT: one service, `ws_bench echo`, routed at /
write_manifest() {
    mkdir -p "$1"
    GW_PORT=$2 WS_BENCH="$WS_BENCH" WORKERS="$WORKERS" "$PYTHON" - >"$1/strata.json" <<'PY'
import json, os
e = os.environ
doc = {"strata": 1, "app": "bench-websocket",
       "gateway": {"listen": "127.0.0.1:" + e["GW_PORT"], "workers": int(e["WORKERS"])},
       "services": {"echo": {"run": [e["WS_BENCH"], "echo"],
                             "instances": {"min": 1, "max": 1},
                             "routes": ["/"]}}}
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
    (cd "$dir" && exec "${SERVER_CPU[@]}" "$STRATA" up strata.json --cache-listen 127.0.0.1:0) >"$dir/strata.log" 2>&1 &
    STRATA_PID=$!
    while :; do
        alive "$STRATA_PID" || { tail -n 30 "$dir/strata.log" >&2; die "strata up exited early (log above)"; }
        if found=$(member_ready "$dir"); then break; fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$dir/strata.log" >&2; die "the echo member was not ready after ${READY_TIMEOUT}s"; }
        sleep 0.2
    done
    MEMBER_PORT=${found%% *}
    MEMBER_PID=${found#* }
}

# ------------------------------------------------------------------ nginx proxy

start_proxy() {
    local dir=$1 listen_port=$2 upstream_port=$3
    mkdir -p "$dir"
    # shellcheck disable=SC2016  # $http_upgrade is nginx's
    printf '%s\n' \
        "worker_processes $WORKERS;" \
        "pid $dir/nginx.pid;" \
        "error_log $dir/error.log warn;" \
        "worker_rlimit_nofile $((2 * HELD + 4096));" \
        "events { worker_connections $((2 * HELD + 4096)); }" \
        'http {' \
        "    access_log $dir/access.log combined buffer=64k flush=1s;" \
        "    client_body_temp_path $dir/client_body;" \
        "    proxy_temp_path $dir/proxy;" \
        "    fastcgi_temp_path $dir/fastcgi;" \
        "    uwsgi_temp_path $dir/uwsgi;" \
        "    scgi_temp_path $dir/scgi;" \
        "    upstream member { server 127.0.0.1:$upstream_port; }" \
        '    server {' \
        "        listen 127.0.0.1:$listen_port reuseport;" \
        '        location / {' \
        '            proxy_pass http://member;' \
        '            proxy_http_version 1.1;' \
        '            proxy_set_header Upgrade $http_upgrade;' \
        '            proxy_set_header Connection "upgrade";' \
        '            proxy_read_timeout 300s;' \
        '        }' \
        '    }' \
        '}' >"$dir/nginx.conf"
    "$NGINX" -t -q -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx proxy config rejected (see $dir/error.log)"
    "${SERVER_CPU[@]}" "$NGINX" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    PROXY_PID=$!
}

# ------------------------------------------------------------------ measuring

CLK_TCK=$(getconf CLK_TCK)

# the processes that do a target's relaying: the nginx workers, the strata process
proxy_pids() {
    case $1 in
    # shellcheck disable=SC2046  # one pid per word
    nginx) echo "$PROXY_PID" $(ps -o pid= --ppid "$PROXY_PID") ;;
    strata) echo "$STRATA_PID" ;;
    *) ;;
    esac
}

# wait_ws URL: until one connection exchanges messages through it
wait_ws() {
    local url=$1 deadline=$((SECONDS + 20)) out
    while :; do
        out=$("${CLIENT_CPU[@]}" "$WS_BENCH" load "$url" 1 0.2 "$SIZE" 2>/dev/null || true)
        case $out in *'"errors": 0}'*) [[ $out != *'"messages": 0,'* ]] && return 0 ;; esac
        [ "$SECONDS" -lt "$deadline" ] || die "$url does not echo WebSocket messages (last: $out)"
        sleep 0.2
    done
}

# run_load NAME URL MODE ROUND CONNS DURATION: one ws_bench load run, with the CPU
# time the proxy and the member spent during it
run_load() {
    local name=$1 url=$2 mode=$3 round=$4 conns=$5 dur=$6 err out
    local pids proxy0 member0 proxy1 member1
    pids=$(proxy_pids "$name")
    err="$WORK/raw/$name.$mode.$round.err"
    # shellcheck disable=SC2086
    proxy0=$(cpu_ticks $pids)
    member0=$(cpu_ticks "$MEMBER_PID")
    out=$("${CLIENT_CPU[@]}" "$WS_BENCH" load "$url" "$conns" "$dur" "$SIZE" 2>"$err") || { cat "$err" >&2; die "ws_bench load against $name ($url) failed"; }
    # shellcheck disable=SC2086
    proxy1=$(cpu_ticks $pids)
    member1=$(cpu_ticks "$MEMBER_PID")
    printf '%s %s %s %s %s %s\n' "$name" "$mode" "$round" "$((proxy1 - proxy0))" "$((member1 - member0))" "$out" >>"$RESULTS"
    log "$(printf '%-7s %-8s round %s: %s' "$name" "$mode" "$round" "$out")"
}

# hold NAME PORT: HELD WebSockets opened through the proxy (each echoes one frame, then
# stays idle), the proxy's resident memory before, while they are all open, and 3 s
# after they closed
hold() {
    local name=$1 port=$2 pids before during after fifo="$WORK/raw/hold.$1"
    pids=$(proxy_pids "$name")
    # shellcheck disable=SC2086
    before=$(rss_kb $pids)
    mkfifo "$fifo"
    "${CLIENT_CPU[@]}" "$PYTHON" - "$port" "$HELD" >"$fifo" 2>"$WORK/raw/hold.$name.err" <<'PY' &
import asyncio, resource, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
# RFC 6455's sample key: the one ws_bench echo answers
REQ = (b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
async def one(held, gate):
    async with gate:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(REQ)
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:60]
        w.write(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))  # masked "hi"
        assert await r.readexactly(4) == b"\x81\x02hi"
        held.append(w)
async def main():
    held, gate = [], asyncio.Semaphore(200)
    await asyncio.gather(*(one(held, gate) for _ in range(n)))
    print(len(held), flush=True)
    await asyncio.sleep(3600)  # held until killed
asyncio.run(main())
PY
    local holder=$! count
    read -r count <"$fifo" || count=0
    [ "$count" = "$HELD" ] || { cat "$WORK/raw/hold.$name.err" >&2; die "only ${count:-0} of $HELD WebSockets through $name opened"; }
    sleep 1
    # shellcheck disable=SC2086
    during=$(rss_kb $pids)
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    rm -f "$fifo"
    # what is kept once they have all closed (strata's idle workers give memory back a
    # second after their last connection)
    sleep 3
    # shellcheck disable=SC2086
    after=$(rss_kb $pids)
    printf '%s %s %s %s\n' "$name" "$before" "$during" "$after" >>"$WORK/held.txt"
    log "$(printf '%-7s held %s WebSockets: resident %s KB before, %s KB while held, %s KB 3 s after they closed' "$name" "$HELD" "$before" "$during" "$after")"
}

report_held() {
    [ -s "$WORK/held.txt" ] || return 0
    echo
    echo "$HELD WebSockets held open and idle at once (after the load rounds); resident memory (nginx: all its processes)"
    awk -v n="$HELD" '
        { before[$1] = $2; during[$1] = $3; after[$1] = $4; per[$1] = ($3 - $2) * 1024 / n
          printf "%-7s %8d KB before %8d KB while held %8d KB 3 s after   %6.0f bytes per WebSocket\n", $1, $2, $3, $4, per[$1] }
        END { if (per["nginx"] > 0) printf "strata/nginx  memory per held WebSocket %.2f, while held %.2f, after %.2f   (lower is better)\n",
                  per["strata"] / per["nginx"], during["strata"] / during["nginx"], after["strata"] / after["nginx"] }' "$WORK/held.txt"
}

report() {
    RESULTS=$RESULTS ROUNDS=$ROUNDS CONNS=$CONNS SIZE=$SIZE CLK_TCK=$CLK_TCK "$PYTHON" - <<'PY'
import json, os, statistics
tck = int(os.environ["CLK_TCK"])
rows = {}
for line in open(os.environ["RESULTS"]):
    name, mode, rnd, proxy_ticks, member_ticks, doc = line.split(" ", 5)
    d = json.loads(doc)
    msgs = max(d["messages"], 1)
    d["proxy_us_per_msg"] = int(proxy_ticks) / tck * 1e6 / msgs
    d["member_us_per_msg"] = int(member_ticks) / tck * 1e6 / msgs
    # the member does the same work whatever is in front of it: what else runs on the
    # machine shows in its CPU per message too, and this ratio takes it out
    d["proxy_per_member"] = d["proxy_us_per_msg"] / max(d["member_us_per_msg"], 1e-9)
    rows.setdefault((name, mode), {})[int(rnd)] = d

def med(name, mode, key):
    vals = [r[key] for r in rows.get((name, mode), {}).values()]
    return statistics.median(vals) if vals else float("nan")

def med_diff(a, b, mode, key):
    ra, rb = rows.get((a, mode), {}), rows.get((b, mode), {})
    vals = [ra[k][key] - rb[k][key] for k in ra if k in rb]
    return statistics.median(vals) if vals else float("nan")

def ratio(a, b):
    return a / b if b else float("nan")

c = os.environ["CONNS"]
targets = [("direct", "the member, no proxy"), ("nginx", "nginx WebSocket proxy"), ("strata", "strata gateway")]
print()
print(f"medians of {os.environ['ROUNDS']} rounds; {os.environ['SIZE']}-byte text frames; "
      f"latencies in microseconds; cpu: the proxy's CPU time per message (nginx: all its processes)")
hdr = (f"{'target':<7} {'msg/s c' + c:>11} {'p50 c' + c:>9} {'p99 c' + c:>9} {'msg/s c1':>9} "
       f"{'p50 c1':>7} {'p99 c1':>7} {'cpu us/msg':>10} {'member cpu':>10} {'errors':>6}  what")
print(hdr)
print("-" * len(hdr))
for t, what in targets:
    errs = sum(r["errors"] for m in ("loaded", "one") for r in rows.get((t, m), {}).values())
    cpu = f"{med(t, 'loaded', 'proxy_us_per_msg'):.2f}" if t != "direct" else "-"
    print(f"{t:<7} {med(t, 'loaded', 'msgs_per_s'):>11.0f} {med(t, 'loaded', 'p50_us'):>9.0f} "
          f"{med(t, 'loaded', 'p99_us'):>9.0f} {med(t, 'one', 'msgs_per_s'):>9.0f} "
          f"{med(t, 'one', 'p50_us'):>7.0f} {med(t, 'one', 'p99_us'):>7.0f} {cpu:>10} "
          f"{med(t, 'loaded', 'member_us_per_msg'):>10.2f} {errs:>6}  {what}")
print()
for peer in ("nginx", "direct"):
    tput = ratio(med("strata", "loaded", "msgs_per_s"), med(peer, "loaded", "msgs_per_s"))
    p99 = ratio(med("strata", "loaded", "p99_us"), med(peer, "loaded", "p99_us"))
    p50_1 = ratio(med("strata", "one", "p50_us"), med(peer, "one", "p50_us"))
    p99_1 = ratio(med("strata", "one", "p99_us"), med(peer, "one", "p99_us"))
    print(f"strata/{peer:<6}  throughput c{c} {tput:.2f}   p99 c{c} {p99:.2f}   "
          f"p50 c1 {p50_1:.2f}   p99 c1 {p99_1:.2f}")
cpu = ratio(med("strata", "loaded", "proxy_us_per_msg"), med("nginx", "loaded", "proxy_us_per_msg"))
norm = ratio(med("strata", "loaded", "proxy_per_member"), med("nginx", "loaded", "proxy_per_member"))
print(f"proxy CPU per message c{c} strata/nginx {cpu:.2f}, in units of the member's CPU per message "
      f"in the same run {norm:.2f}   (lower is better)")
add_s = med_diff("strata", "direct", "one", "p50_us")
add_n = med_diff("nginx", "direct", "one", "p50_us")
print(f"added p50 at one connection over direct: strata {add_s:.0f} us, nginx {add_n:.0f} us")
tput = ratio(med("strata", "loaded", "msgs_per_s"), med("nginx", "loaded", "msgs_per_s"))
p99 = ratio(med("strata", "loaded", "p99_us"), med("nginx", "loaded", "p99_us"))
print(f"target (throughput >= 1.0x nginx, p99 c{c} no worse): "
      f"throughput {'met' if tput >= 1.0 else 'NOT met'}, p99 {'met' if p99 <= 1.0 else 'NOT met'}")
PY
}

# ------------------------------------------------------------------ main

ensure_tools
ensure_binaries
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-ws.XXXXXX")
mkdir -p "$WORK/raw"
RESULTS=$WORK/results.txt
: >"$RESULTS"

GW_PORT=$(free_port)
PROXY_PORT=$(free_port)
while [ "$PROXY_PORT" = "$GW_PORT" ]; do PROXY_PORT=$(free_port); done

log "strata: $STRATA"
log "ws_bench: $WS_BENCH"
log "work dir: $WORK"
log "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
write_manifest "$WORK/app" "$GW_PORT"
start_strata "$WORK/app"
[ -n "$MEMBER_PID" ] || die "strata ps --json gave no pid for the member"
log "echo member (ws_bench echo, a strata instance) on 127.0.0.1:$MEMBER_PORT, strata gateway on 127.0.0.1:$GW_PORT"

start_proxy "$WORK/proxy" "$PROXY_PORT" "$MEMBER_PORT"
log "nginx proxy on 127.0.0.1:$PROXY_PORT"

declare -A URL=(
    [direct]="ws://127.0.0.1:$MEMBER_PORT/"
    [nginx]="ws://127.0.0.1:$PROXY_PORT/"
    [strata]="ws://127.0.0.1:$GW_PORT/"
)
for t in direct nginx strata; do wait_ws "${URL[$t]}"; done

if [ "$WARMUP" -gt 0 ]; then
    for t in direct nginx strata; do
        "${CLIENT_CPU[@]}" "$WS_BENCH" load "${URL[$t]}" "$CONNS" "$WARMUP" "$SIZE" >/dev/null 2>&1 || true
    done
fi

ORDER=(direct nginx strata)
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < 3; i++)); do
        t=${ORDER[$(((i + r - 1) % 3))]}
        run_load "$t" "${URL[$t]}" loaded "$r" "$CONNS" "$DURATION"
        run_load "$t" "${URL[$t]}" one "$r" 1 "$LAT_DURATION"
    done
done

log "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$HELD" -gt 0 ]; then
    hold nginx "$PROXY_PORT"
    hold strata "$GW_PORT"
fi
report
report_held
