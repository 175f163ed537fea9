#!/usr/bin/env bash
# bench/slowloris.sh: the gateway under load while idle and slowloris connections are held
# open against every port of the node, against the same load on a quiet node (issue 10,
# "Benchmark").
#
# What is measured. One `strata up` of a small app (one nginx instance answering "hello", as
# in bench/gateway.sh) with its gateway, node API and Redis port (--cache-listen) on free
# ports. In each of ROUNDS rounds, in alternating order, two runs of
# `wrk -t1 -c$CONNS -d$DURATION --latency` against the gateway:
#   quiet:  nothing else;
#   loaded: bench/tools/conn_holder.py holds IDLE idle connections and SLOW slowloris ones
#           (a request that never ends, trickled a byte every INTERVAL seconds) spread evenly
#           over PORTS, and opens again whatever a server closes, so the pressure stays the
#           same; wrk starts SETTLE seconds after all of them are open.
# It prints the medians of throughput and p99, quiet and loaded, their ratios against the
# target (loaded within TARGET_PCT % of quiet); the strata process's memory from /proc
# (VmRSS sampled every 0.5 s during each wrk run, its peak per run; VmHWM; after the holder
# let go) and its open descriptors; per port, how many connections were held during the wrk
# runs and how many the server closed, after how long and with what answer. Expected: the
# gateway and the node API answer 408 10 s after a head's first byte; the Redis port closes a
# command not complete 10 s after its first byte (cache.command_timeout_ms) and an idle client
# after cache.idle_timeout_ms (300 s; CACHE_IDLE_MS changes it), each within a tick (1 s) of
# its deadline; the gateway and the node API close idle connections after 75 s. wrk, the
# holder, nginx and strata share the machine's cores: the CPU each took is printed too.
#
# Run from anywhere:   bash bench/slowloris.sh
# Settings (environment):
#   ROUNDS=3          rounds; each runs quiet and loaded once, the order alternating
#   DURATION=20       seconds per wrk run (more than 10, so that slowloris closes happen in it)
#   CONNS=50          wrk's connections
#   WARMUP=2          seconds of wrk before the first round
#   IDLE=10000        idle connections held, spread over PORTS
#   SLOW=1000         slowloris connections held, spread over PORTS
#   PORTS="gateway api redis"   where they go (any of the three)
#   INTERVAL=3        seconds between two trickled bytes of a slowloris connection
#   SETTLE=2          seconds between all connections open and the start of wrk
#   RAMP_TIMEOUT=60   seconds to open them all (wrk then runs with what is open)
#   PAUSE=2           seconds between two runs
#   CACHE_IDLE_MS=    the manifest's cache.idle_timeout_ms (empty: strata's default)
#   TARGET_PCT=10     the target: loaded throughput and p99 within this of quiet
#   ELSEWHERE=1       a control: the holder holds its connections against a second node on
#                     this machine instead of the measured one, so that what the loaded runs
#                     lose is the cost of the attack's traffic on the shared cores alone
#   STRATA=           the binary; default target/release/strata, built with cargo when
#                     missing or older than the last commit
#   READY_TIMEOUT=120 seconds for the app to come up
#   KEEP=1            keep the work dir (manifest, strata log, wrk output, holder reports)
# See bench/README.md.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-2}
IDLE=${IDLE:-10000}
SLOW=${SLOW:-1000}
PORTS=${PORTS:-gateway api redis}
INTERVAL=${INTERVAL:-3}
SETTLE=${SETTLE:-2}
RAMP_TIMEOUT=${RAMP_TIMEOUT:-60}
PAUSE=${PAUSE:-2}
CACHE_IDLE_MS=${CACHE_IDLE_MS:-}
TARGET_PCT=${TARGET_PCT:-10}
ELSEWHERE=${ELSEWHERE:-}
STRATA=${STRATA:-}
READY_TIMEOUT=${READY_TIMEOUT:-120}
KEEP=${KEEP:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOLDER=$ROOT/bench/tools/conn_holder.py


for p in $PORTS; do
    case $p in gateway | api | redis) ;; *) die "PORTS: '$p' is not one of gateway, api, redis" ;; esac
done
[ -n "$PORTS" ] || die "PORTS is empty: name at least one of gateway, api, redis"
# whole numbers only (INTERVAL may have a fraction)
for v in ROUNDS DURATION CONNS WARMUP IDLE SLOW SETTLE RAMP_TIMEOUT PAUSE TARGET_PCT READY_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
[[ $CACHE_IDLE_MS =~ ^[0-9]*$ ]] || die "CACHE_IDLE_MS must be a number of milliseconds, not '$CACHE_IDLE_MS'"
[[ $INTERVAL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "INTERVAL must be a number of seconds, not '$INTERVAL'"
[ "$ROUNDS" -gt 0 ] && [ "$DURATION" -gt 0 ] || die "ROUNDS and DURATION must be above 0"

# ------------------------------------------------------------------ tools


apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install it"
    if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null; then
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
    fi
}

ensure_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
    PYTHON=$(command -v python3)
}

ensure_strata() {
    if [ -z "$STRATA" ]; then
        STRATA=$ROOT/target/release/strata
        local head_time
        head_time=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
        if [ ! -x "$STRATA" ] || [ "$(stat -c %Y "$STRATA")" -lt "$head_time" ]; then
            log "$STRATA missing or older than the last commit: cargo build --release -p strata"
            (cd "$ROOT" && cargo build --release -p strata)
        fi
    fi
    [ -x "$STRATA" ] || die "$STRATA is not an executable"
    STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
}

# ------------------------------------------------------------------ process bookkeeping

WORK=""
STRATA_PID=""
STRATA_DIR=""
SINK_PID=""
SINK_DIR=""
HOLDER_PID=""
SAMPLER_PID=""
INSTANCE_PIDS_FILE=""


wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

stop_pid() {
    local pid=$1
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 40 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
    wait "$pid" 2>/dev/null || true
}

# stop_node PID DIR: `strata down` in DIR, then signals
stop_node() {
    local pid=$1 dir=$2
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        (cd "$dir" && timeout 30 "$STRATA" down >/dev/null 2>&1) || true
        wait_gone "$pid" 30 || true
        stop_pid "$pid"
    fi
    wait "$pid" 2>/dev/null || true
}

stop_strata() {
    stop_node "$SINK_PID" "$SINK_DIR"
    SINK_PID=""
    stop_node "$STRATA_PID" "$STRATA_DIR"
    STRATA_PID=""
    # safety net: instances strata reported and that still run the same program
    if [ -n "$INSTANCE_PIDS_FILE" ] && [ -s "$INSTANCE_PIDS_FILE" ]; then
        local pid comm now
        while read -r pid comm; do
            now=$(cat "/proc/$pid/comm" 2>/dev/null || true)
            if [ -n "$now" ] && [ "$now" = "$comm" ] && alive "$pid"; then
                log "instance pid $pid ($comm) outlived strata: killing its group"
                kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$INSTANCE_PIDS_FILE"
        : >"$INSTANCE_PIDS_FILE"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SAMPLER_PID" ] && stop_pid "$SAMPLER_PID"
    [ -n "$HOLDER_PID" ] && stop_pid "$HOLDER_PID"
    stop_strata
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports N: N distinct free ports (all bound at once while they are picked)
free_ports() {
    "$PYTHON" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
now() { date +%s.%N; }

# ------------------------------------------------------------------ the app

# nginx config of the upstream instance (bench/lib.sh)
UPSTREAM_CONF=$(nginx_member_conf)

# write_manifest DIR GATEWAY_PORT APP
write_manifest() {
    mkdir -p "$1"
    APP=$3 GW_PORT=$2 NGINX_BIN="$NGINX" CONF="$UPSTREAM_CONF" CACHE_IDLE_MS="$CACHE_IDLE_MS" \
        "$PYTHON" - >"$1/strata.json" <<'PY'
import json, os
e = os.environ
svc = {"run": [e["NGINX_BIN"], "-c", "${TMPDIR}/nginx.conf", "-g", "daemon off;"],
       "files": {"nginx.conf": {"content": e["CONF"]}},
       "instances": {"min": 1, "max": 1}, "routes": ["/"], "health": {"path": "/"}}
doc = {"strata": 1, "app": e["APP"],
       "gateway": {"listen": "127.0.0.1:" + e["GW_PORT"]},
       "services": {"upstream": svc}}
if e["CACHE_IDLE_MS"]:
    doc["cache"] = {"idle_timeout_ms": int(e["CACHE_IDLE_MS"])}
print(json.dumps(doc, indent=2))
PY
}

# the ready instances' ports once one is ready; records their pids for the safety net
strata_ps_ready() {
    local json
    json=$(cd "$1" && "$STRATA" ps --json 2>/dev/null) || return 1
    PIDS_OUT="$INSTANCE_PIDS_FILE" "$PYTHON" -c '
import json, os, sys
doc = json.loads(sys.stdin.read())
insts = [i for s in doc.get("services", []) if s.get("name") == "upstream" for i in s.get("instances", [])]
with open(os.environ["PIDS_OUT"], "a") as f:
    for i in insts:
        if i.get("pid"):
            try:
                f.write("%d %s\n" % (i["pid"], open("/proc/%d/comm" % i["pid"]).read().strip()))
            except OSError:
                pass
ready = [i for i in insts if i.get("state") == "ready"]
if not ready:
    sys.exit(1)
print(" ".join(str(i["port"]) for i in ready))
' <<<"$json"
}

# start_node DIR API_PORT REDIS_PORT: `strata up` in DIR in the background until its
# instance is ready; sets NODE_PID
start_node() {
    local dir=$1 deadline=$((SECONDS + READY_TIMEOUT))
    (cd "$dir" && exec "$STRATA" up strata.json --api-listen "127.0.0.1:$2" \
        --cache-listen "127.0.0.1:$3") >"$dir/strata.log" 2>&1 &
    NODE_PID=$!
    while :; do
        alive "$NODE_PID" || { tail -n 30 "$dir/strata.log" >&2; die "strata up exited early (log above)"; }
        if strata_ps_ready "$dir" >/dev/null; then break; fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$dir/strata.log" >&2; die "the upstream instance is not ready after ${READY_TIMEOUT}s"; }
        sleep 0.2
    done
}

# wait_answer gateway|api|redis PORT: until the port answers (the gateway "hello"; the node API
# any HTTP answer, 401 without the control token included; the Redis port +PONG)
wait_answer() {
    local deadline=$((SECONDS + 20))
    until WHICH=$1 PORT=$2 "$PYTHON" -c '
import os, socket, sys
e = os.environ
which = e["WHICH"]
port = int(e["PORT"])
s = socket.create_connection(("127.0.0.1", port), timeout=2)
if which == "redis":
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(64).startswith(b"+PONG") else 1)
path = "/" if which == "gateway" else "/v1/health"
s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (path.encode(), port))
reply = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
ok = reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello") if which == "gateway" else reply.startswith(b"HTTP/1.1 ")
sys.exit(0 if ok else 1)
' 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "the $1 port does not answer"
        sleep 0.2
    done
}

# ------------------------------------------------------------------ measuring

write_lua() {
    cat >"$1" <<'EOF'
-- prints one machine-readable line after wrk's own --latency report
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT rps=%.2f p50=%d p90=%d p99=%d max=%d requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.requests, e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
}

# samples the strata process's memory every 0.5 s into $1: time VmRSS VmHWM
start_sampler() {
    (while :; do
        printf '%s %s %s\n' "$(now)" "$(rss_kb "$STRATA_PID")" "$(hwm_kb "$STRATA_PID")"
        sleep 0.5
    done) >"$1" 2>/dev/null &
    SAMPLER_PID=$!
}

stop_sampler() {
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
}

# run_wrk MODE ROUND: one wrk run against the gateway, with memory and CPU around it
run_wrk() {
    local mode=$1 round=$2 out line t0 t1 c0 c1 h0=0 h1=0 fd
    out=$WORK/wrk.$mode.$round.txt
    start_sampler "$WORK/mem.$mode.$round.txt"
    c0=$(cpu_ticks "$STRATA_PID")
    if [ -n "$HOLDER_PID" ]; then h0=$(cpu_ticks "$HOLDER_PID"); fi
    t0=$(now)
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$GW_PORT/" >"$out" 2>&1 || true
    t1=$(now)
    c1=$(cpu_ticks "$STRATA_PID")
    if [ -n "$HOLDER_PID" ]; then h1=$(cpu_ticks "$HOLDER_PID"); fi
    fd=$(fds "$STRATA_PID")
    stop_sampler
    line=$(grep '^WRK_RESULT' "$out" || true)
    [ -n "$line" ] || { cat "$out" >&2; die "wrk ($mode, round $round) printed no result"; }
    printf '%s %s %s start=%s end=%s strata_ticks=%s holder_ticks=%s fds=%s\n' "$mode" "$round" \
        "${line#WRK_RESULT }" "$t0" "$t1" "$((c1 - c0))" "$((h1 - h0))" "$fd" >>"$RESULTS"
    log "$(printf '%-6s round %s: %s strata_fds=%s' "$mode" "$round" "${line#WRK_RESULT }" "$fd")"
}

run_loaded() {
    local round=$1 deadline=$((SECONDS + RAMP_TIMEOUT + 5)) ready="" p targets=()
    for p in $PORTS; do
        case $p in
            gateway) targets+=(--target "gateway=127.0.0.1:$HOLD_GW/http") ;;
            api) targets+=(--target "api=127.0.0.1:$HOLD_API/http") ;;
            redis) targets+=(--target "redis=127.0.0.1:$HOLD_REDIS/redis") ;;
        esac
    done
    "$PYTHON" "$HOLDER" "${targets[@]}" --idle "$IDLE" --slow "$SLOW" --interval "$INTERVAL" \
        --ready-timeout "$RAMP_TIMEOUT" --report "$WORK/holder.$round.json" \
        >"$WORK/holder.$round.out" 2>"$WORK/holder.$round.log" &
    HOLDER_PID=$!
    until ready=$(grep -m1 '^READY' "$WORK/holder.$round.out" 2>/dev/null); do
        alive "$HOLDER_PID" || { cat "$WORK/holder.$round.log" >&2; die "the connection holder exited (its log above)"; }
        [ "$SECONDS" -lt "$deadline" ] || die "the connection holder did not report READY"
        sleep 0.2
    done
    log "holder: $ready (strata VmRSS $(rss_kb "$STRATA_PID") kB, $(fds "$STRATA_PID") fds)"
    sleep "$SETTLE"
    run_wrk loaded "$round"
    stop_pid "$HOLDER_PID"
    HOLDER_PID=""
    sed 's/^/[holder] /' "$WORK/holder.$round.log" | grep -v '^\[holder\] \[holder\] held' >&2 || true
    [ -s "$WORK/holder.$round.json" ] || die "the connection holder wrote no report"
    sleep "$PAUSE"
    printf 'released %s rss=%s hwm=%s fds=%s\n' "$round" "$(rss_kb "$STRATA_PID")" \
        "$(hwm_kb "$STRATA_PID")" "$(fds "$STRATA_PID")" >>"$RESULTS"
}

run_quiet() {
    run_wrk quiet "$1"
    sleep "$PAUSE"
}

report() {
    WORK=$WORK RESULTS=$RESULTS ROUNDS=$ROUNDS TARGET_PCT=$TARGET_PCT CONNS=$CONNS DURATION=$DURATION \
        IDLE=$IDLE SLOW=$SLOW PORTS="$PORTS" INTERVAL=$INTERVAL IDLE_RSS=$IDLE_RSS \
        LIMITS="$NOFILE_LIMIT" ELSEWHERE="$ELSEWHERE" TICK=$(getconf CLK_TCK) "$PYTHON" - <<'PY'
import glob, json, os, statistics as st
from collections import Counter
e = os.environ
runs, released = {"quiet": [], "loaded": []}, []
for line in open(e["RESULTS"]):
    words = line.split()
    if words[0] == "released":
        released.append({k: float(v) for k, v in (w.split("=") for w in words[2:])})
        continue
    d = {k: float(v) for k, v in (w.split("=") for w in words[2:])}
    d["round"] = int(words[1])
    mem = [l.split() for l in open(f"{e['WORK']}/mem.{words[0]}.{words[1]}.txt") if len(l.split()) == 3]
    d["rss_peak"] = max((int(m[1]) for m in mem), default=0)
    d["hwm"] = max((int(m[2]) for m in mem), default=0)
    runs[words[0]].append(d)

def med(mode, key):
    return st.median(r[key] for r in runs[mode])

tick, target = float(e["TICK"]), float(e["TARGET_PCT"])
print()
print(f"medians of {e['ROUNDS']} rounds, wrk -t1 -c{e['CONNS']} -d{e['DURATION']}s against the gateway; "
      f"loaded: {e['IDLE']} idle + {e['SLOW']} slowloris connections (a byte every {e['INTERVAL']} s) "
      f"over: {e['PORTS']}"
      + (" of a SECOND node (ELSEWHERE: a control; the measured node serves only wrk)" if e["ELSEWHERE"] else ""))
hdr = f"{'run':<7} {'req/s':>9} {'p50 us':>8} {'p99 us':>8} {'max us':>8} {'errors':>7} {'strata CPU us/req':>18}"
print(hdr)
print("-" * len(hdr))
for mode in ("quiet", "loaded"):
    cpu = st.median(r["strata_ticks"] / tick * 1e6 / max(r["requests"], 1) for r in runs[mode])
    errs = sum(r["errors"] for r in runs[mode])
    print(f"{mode:<7} {med(mode, 'rps'):>9.0f} {med(mode, 'p50'):>8.0f} {med(mode, 'p99'):>8.0f} "
          f"{med(mode, 'max'):>8.0f} {errs:>7.0f} {cpu:>18.1f}")
print()
tput = med("loaded", "rps") / med("quiet", "rps")
p99 = med("loaded", "p99") / med("quiet", "p99")
def verdict(ok, off):
    return f"within {target:.0f} %" if ok else f"OFF by {off:.0f} % (target {target:.0f} %)"
print(f"throughput loaded/quiet: {tput:.3f}   {verdict(tput >= 1 - target / 100, (1 - tput) * 100)}")
print(f"p99        loaded/quiet: {p99:.3f}   {verdict(p99 <= 1 + target / 100, (p99 - 1) * 100)}")
def core_pct(r, key):
    return r[key] / tick / (r["end"] - r["start"]) * 100
print(f"CPU during the wrk runs, % of one core (medians): strata quiet "
      f"{st.median(core_pct(r, 'strata_ticks') for r in runs['quiet']):.0f} %, loaded "
      f"{st.median(core_pct(r, 'strata_ticks') for r in runs['loaded']):.0f} %; the holder "
      f"{st.median(core_pct(r, 'holder_ticks') for r in runs['loaded']):.0f} % (it shares the cores)")
by_round = lambda mode, key, f="{:.0f}": ", ".join(f.format(r[key]) for r in sorted(runs[mode], key=lambda r: r["round"]))
print(f"per round: req/s quiet {by_round('quiet', 'rps')}; loaded {by_round('loaded', 'rps')}")
print(f"           p99 us quiet {by_round('quiet', 'p99')}; loaded {by_round('loaded', 'p99')}")
print()
print("strata process memory (/proc/PID/status; instances not counted):")
print(f"  idle, before any run:                    VmRSS {int(e['IDLE_RSS']):>8} kB")
print(f"  quiet runs, peak VmRSS (median, max):          {med('quiet', 'rss_peak'):>8.0f} kB, "
      f"{max(r['rss_peak'] for r in runs['quiet']):.0f} kB")
print(f"  loaded runs, peak VmRSS (median, max):         {med('loaded', 'rss_peak'):>8.0f} kB, "
      f"{max(r['rss_peak'] for r in runs['loaded']):.0f} kB")
print(f"  loaded peak VmRSS per round:             {by_round('loaded', 'rss_peak')} kB")
print(f"  after the holder let go, VmRSS per round: {', '.join(str(int(r['rss'])) for r in released)} kB")
hwm = max([r["hwm"] for m in runs for r in runs[m]] + [r["hwm"] for r in released])
print(f"  VmHWM (peak since start) at the end:     {hwm:.0f} kB")
print(f"  open descriptors at the end of a run: quiet {med('quiet', 'fds'):.0f}, loaded {med('loaded', 'fds'):.0f} "
      f"(RLIMIT_NOFILE of strata: {e['LIMITS']})")

reports = [json.load(open(p)) for p in sorted(glob.glob(f"{e['WORK']}/holder.*.json"))]
if not reports:
    raise SystemExit
print()
print("connections held and closed by the servers (all loaded runs together):")
windows = [(r["start"], r["end"]) for r in runs["loaded"]]
ready = ", ".join("%.1f" % (rep["ready_at"] - rep["started"]) if rep["ready_at"] else "never" for rep in reports)
hcpu = ", ".join("%.1f" % (r["holder_ticks"] / tick) for r in sorted(runs["loaded"], key=lambda r: r["round"]))
print(f"  all open {ready} s after the holder started; the holder's CPU during the {e['DURATION']} s "
      f"wrk runs: {hcpu} s")
for t in reports[0]["targets"]:
    name = t["name"]
    for k, kind in enumerate(("idle", "slow")):
        held = [per[name][k] for rep in reports for ts, per in rep["timeline"]
                if any(a <= ts <= b for a, b in windows)]
        closes = [c for rep in reports for c in rep["closes"] if c["target"] == name and c["kind"] == kind]
        start = "first_byte" if kind == "slow" else "opened"
        line = (f"  {name:<8} {kind:<4} {t[kind]:>6} each run; held during wrk: "
                f"min {min(held, default=0)}, median {st.median(held) if held else 0:.0f}; ")
        if not closes:
            print(line + "none closed by the server")
            continue
        answered = sorted((c["answered"] or c["closed"]) - (c[start] or c["opened"]) for c in closes)
        shut = sorted(c["closed"] - (c[start] or c["opened"]) for c in closes)
        got = Counter(c["got"] or f"(closed, {c['end']})" for c in closes)
        q = lambda v: f"{v[0]:.1f}/{st.median(v):.1f}/{v[-1]:.1f}"
        print(line + f"{len(closes)} closed by the server")
        print(f"  {'':<8} {'':<4} answered {q(answered)} s, closed {q(shut)} s (min/median/max) after "
              f"{'the first byte' if kind == 'slow' else 'the connect'}; "
              + "; ".join(f"{n}x {g!r}" for g, n in got.most_common(3)))
errors = Counter()
for rep in reports:
    for name, errs in rep["connect_errors"].items():
        for why, n in errs.items():
            errors[(name, why)] += n
for (name, why), n in errors.items():
    print(f"  {name:<8} connect errors: {n}x {why}")
PY
}

# ------------------------------------------------------------------ main

ensure_tools
ensure_strata
[ -f "$HOLDER" ] || die "$HOLDER not found"
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$HARD" -lt $((IDLE + SLOW + 512)) ]; then
    die "IDLE + SLOW = $((IDLE + SLOW)) connections need that many descriptors on each side, and the hard RLIMIT_NOFILE is $HARD: lower IDLE/SLOW or raise it"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-slowloris.XXXXXX")
RESULTS=$WORK/results.txt
: >"$RESULTS"
INSTANCE_PIDS_FILE=$WORK/instance-pids.txt
LUA=$WORK/report.lua
write_lua "$LUA"

read -r GW_PORT API_PORT REDIS_PORT SINK_GW SINK_API SINK_REDIS < <(free_ports 6)

log "strata: $STRATA"
log "work dir: $WORK"
: >"$INSTANCE_PIDS_FILE"
write_manifest "$WORK/app" "$GW_PORT" bench-slowloris
STRATA_DIR=$WORK/app
start_node "$WORK/app" "$API_PORT" "$REDIS_PORT"
STRATA_PID=$NODE_PID
wait_answer gateway "$GW_PORT"
wait_answer api "$API_PORT"
wait_answer redis "$REDIS_PORT"
HOLD_GW=$GW_PORT HOLD_API=$API_PORT HOLD_REDIS=$REDIS_PORT
if [ -n "$ELSEWHERE" ]; then
    write_manifest "$WORK/sink" "$SINK_GW" bench-slowloris-sink
    SINK_DIR=$WORK/sink
    start_node "$WORK/sink" "$SINK_API" "$SINK_REDIS"
    SINK_PID=$NODE_PID
    wait_answer gateway "$SINK_GW"
    wait_answer api "$SINK_API"
    wait_answer redis "$SINK_REDIS"
    HOLD_GW=$SINK_GW HOLD_API=$SINK_API HOLD_REDIS=$SINK_REDIS
    log "ELSEWHERE: the holder's connections go to a second node (pid $SINK_PID), not the measured one"
fi
NOFILE_LIMIT=$(awk '/^Max open files/ {print $4 " soft, " $5 " hard"}' "/proc/$STRATA_PID/limits")
log "gateway 127.0.0.1:$GW_PORT, node API 127.0.0.1:$API_PORT, Redis 127.0.0.1:$REDIS_PORT (strata pid $STRATA_PID, open files: $NOFILE_LIMIT)"

sleep 1
IDLE_RSS=$(rss_kb "$STRATA_PID")
if [ "$WARMUP" -gt 0 ]; then
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$GW_PORT/" >/dev/null 2>&1 || true
fi

for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then
        run_quiet "$r"
        run_loaded "$r"
    else
        run_loaded "$r"
        run_quiet "$r"
    fi
done

report
echo
# strata's own warnings and errors during the whole run (ANSI colours taken out)
sed 's/\x1b\[[0-9;]*m//g' "$WORK/app/strata.log" | grep -E ' (WARN|ERROR) ' >"$WORK/warnings.txt" || true
echo "strata log: $(wc -l <"$WORK/warnings.txt") warnings and errors"
if [ -s "$WORK/warnings.txt" ]; then
    echo "  the most frequent (numbers as N):"
    sed -E 's/^[^ ]+ +(WARN|ERROR) +/\1 /; s/[0-9]+/N/g' "$WORK/warnings.txt" | sort | uniq -c | sort -rn | head -n 5
fi
