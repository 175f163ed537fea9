#!/usr/bin/env bash
# bench/gateway.sh: strata's gateway against nginx as a reverse proxy, same upstream.
#
# Run from the repository root:   bash bench/gateway.sh
# Settings (environment):
#   ROUNDS=3          rounds; each round runs every target once, in a rotating order
#   DURATION=10       seconds per loaded wrk run (-t1 -c$CONNS)
#   LAT_DURATION=$DURATION  seconds per unloaded wrk run (-t1 -c1)
#   CONNS=50          connections of the loaded runs
#   WARMUP=2          seconds of warm-up per target before the first round
#   INSTANCES=50      instances of the idle pool used for the RSS measurement (0: skip)
#   IDLE_KIND=nginx   what those instances run: nginx (one process each) or python
#   STRATA=target/release/strata   the binary (built with cargo when missing)
#   KEEP=1            keep the work dir (configs, logs, raw wrk output) for inspection
#   PROXY_LOG=buffered  the nginx proxy's access log: "buffered" (a line per request,
#                     64 KiB buffer, like strata's own access log) or "off"
#   CACHE=1           the response cache at a 100 % hit rate: the upstream answers with
#                     Cache-Control: max-age=3600, strata's route has a fallback (its
#                     store answers fresh hits), nginx has proxy_cache; every measured
#                     request is a hit on both (checked before the rounds)
#   DASHBOARD=browser the dashboard open and live during strata's runs (loaded and
#                     unloaded): Debian's Chromium, headless, through Playwright for
#                     Python, loads strata's /ui before each and leaves it for
#                     about:blank after (the browser stays up, idle, during the other
#                     targets' runs); DASHBOARD=1 is the same. DASHBOARD=feed: a client
#                     holding the page's live feed (/v1/stream) instead, no browser.
#                     Each run's requests the dashboard counted are logged and reported.
# See bench/README.md for what is measured.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BENCH_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tools

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
LAT_DURATION=${LAT_DURATION:-$DURATION}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-2}
INSTANCES=${INSTANCES:-50}
IDLE_KIND=${IDLE_KIND:-nginx}
STRATA=${STRATA:-target/release/strata}
READY_TIMEOUT=${READY_TIMEOUT:-120}
KEEP=${KEEP:-}
PROXY_LOG=${PROXY_LOG:-buffered}
CACHE=${CACHE:-}
DASHBOARD=${DASHBOARD:-}
[ "$DASHBOARD" = 1 ] && DASHBOARD=browser
case "$DASHBOARD" in ''|browser|feed) ;; *) echo "DASHBOARD=$DASHBOARD: expected browser, 1 or feed" >&2; exit 2 ;; esac


# ------------------------------------------------------------------ tools



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
    if [ "$DASHBOARD" = browser ]; then
        [ -x /usr/bin/chromium ] || { log "installing chromium"; apt_install chromium; }
        "$PYTHON" -c 'import playwright' 2>/dev/null ||
            die "DASHBOARD=browser needs Playwright for Python: python3 -m pip install playwright"
    fi
}

ensure_strata() {
    if [ ! -x "$STRATA" ]; then
        log "$STRATA not found: building it (cargo build --release -p strata)"
        cargo build --release -p strata
    fi
    [ -x "$STRATA" ] || die "$STRATA is not an executable"
    STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")
}

# ------------------------------------------------------------------ process bookkeeping

WORK=""
STRATA_PID=""
STRATA_DIR=""
PROXY_PID=""
DASH_PID=""


# Instance pids reported by `strata ps`, with their command names, so that a
# strata that died without stopping its instances does not leave them behind.
INSTANCE_PIDS_FILE=""

stop_strata() {
    [ -n "$STRATA_PID" ] || return 0
    if alive "$STRATA_PID"; then
        (cd "$STRATA_DIR" && timeout 30 "$STRATA" down >/dev/null 2>&1) || true
        wait_gone "$STRATA_PID" 30 || true
        stop_pid "$STRATA_PID"
    fi
    wait "$STRATA_PID" 2>/dev/null || true
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
    [ -n "$DASH_PID" ] && stop_pid "$DASH_PID"
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

# The private part of the RSS (heap, stacks): VmRSS also counts the pages of the binary
# that are mapped in (about 11 MB of strata's 19 MB of code), shared and clean.
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# ------------------------------------------------------------------ strata apps

# write_manifest DIR APP GATEWAY_PORT SERVICE COUNT DAEMON_DIRECTIVES [python]
write_manifest() {
    mkdir -p "$1"
    local conf
    conf=$(nginx_member_conf "${CACHE:+add_header Cache-Control \"max-age=3600\";}")
    APP=$2 GW_PORT=$3 SERVICE=$4 COUNT=$5 GDIRECTIVES=$6 KIND=${7:-nginx} \
        NGINX_BIN="$NGINX" CONF="$conf" CACHE="$CACHE" "$PYTHON" - >"$1/strata.json" <<'PY'
import json, os
e = os.environ
n = int(e["COUNT"])
if e["KIND"] == "python":
    svc = {"run": ["python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"]}
else:
    svc = {"run": [e["NGINX_BIN"], "-c", "${TMPDIR}/nginx.conf", "-g", e["GDIRECTIVES"]],
           "files": {"nginx.conf": {"content": e["CONF"]}}}
route = "/"
if e["CACHE"]:
    route = {"path": "/", "fallback": {"stale_if_error_s": 60}}
svc.update({"instances": {"min": n, "max": n}, "routes": [route], "health": {"path": "/"}})
doc = {"strata": 1, "app": e["APP"],
       "gateway": {"listen": "127.0.0.1:" + e["GW_PORT"]},
       "services": {e["SERVICE"]: svc}}
print(json.dumps(doc, indent=2))
PY
}

# strata_ps_ready DIR SERVICE COUNT: prints the ready instances' ports when COUNT are ready
strata_ps_ready() {
    local json
    json=$(cd "$1" && "$STRATA" ps --json 2>/dev/null) || return 1
    SERVICE=$2 COUNT=$3 PIDS_OUT="$INSTANCE_PIDS_FILE" "$PYTHON" -c '
import json, os, sys
doc = json.loads(sys.stdin.read())
want = int(os.environ["COUNT"])
insts = [i for s in doc.get("services", []) if s.get("name") == os.environ["SERVICE"]
         for i in s.get("instances", [])]
with open(os.environ["PIDS_OUT"], "a") as f:
    for i in insts:
        pid = i.get("pid")
        if pid:
            try:
                comm = open("/proc/%d/comm" % pid).read().strip()
            except OSError:
                continue
            f.write("%d %s\n" % (pid, comm))
ready = [i for i in insts if i.get("state") == "ready"]
if len(ready) < want:
    sys.exit(1)
print(" ".join(str(i["port"]) for i in ready))
' <<<"$json"
}

# start_strata DIR SERVICE COUNT: runs `strata up` in the background, waits for COUNT ready
start_strata() {
    local dir=$1 service=$2 count=$3 ports="" deadline=$((SECONDS + READY_TIMEOUT))
    STRATA_DIR=$dir
    (cd "$dir" && exec "$STRATA" up strata.json --cache-listen 127.0.0.1:0) >"$dir/strata.log" 2>&1 &
    STRATA_PID=$!
    while :; do
        alive "$STRATA_PID" || { tail -n 30 "$dir/strata.log" >&2; die "strata up exited early (log above)"; }
        : >"$INSTANCE_PIDS_FILE"
        if ports=$(strata_ps_ready "$dir" "$service" "$count"); then break; fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$dir/strata.log" >&2; die "$count instances of $service not ready after ${READY_TIMEOUT}s"; }
        sleep 0.2
    done
    READY_PORTS=$ports
}

# ------------------------------------------------------------------ nginx proxy

start_proxy() {
    local dir=$1 listen_port=$2 upstream_port=$3
    mkdir -p "$dir"
    # strata writes an access line per request, buffered; by default nginx does the same.
    if [ "$PROXY_LOG" = off ]; then
        PROXY_ACCESS_LOG="access_log off;"
    else
        PROXY_ACCESS_LOG="access_log $dir/access.log combined buffer=64k flush=1s;"
    fi
    local cache_path="" cache_use="" cache_user=""
    if [ -n "$CACHE" ]; then
        cache_path="proxy_cache_path $dir/cache keys_zone=responses:10m max_size=64m;"
        # the workers write the cache files: as root, they run as root (else as nobody,
        # who cannot write into the private work dir)
        [ "$(id -u)" -eq 0 ] && cache_user="user root;"
        cache_use="proxy_cache responses; proxy_cache_valid 200 1h; proxy_cache_use_stale error timeout http_502 http_503 http_504; add_header X-Cache-Status \$upstream_cache_status;"
    fi
    cat >"$dir/nginx.conf" <<EOF
$cache_user
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    $PROXY_ACCESS_LOG
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    $cache_path
    upstream member {
        server 127.0.0.1:$upstream_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$listen_port reuseport;
        location / {
            proxy_pass http://member;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $cache_use
        }
    }
}
EOF
    "$NGINX" -t -q -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx proxy config rejected (see $dir/error.log)"
    "$NGINX" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    PROXY_PID=$!
}

# ------------------------------------------------------------------ the dashboard

# start_dashboard DIR SERVICE: the client of bench/tools/dashboard_open.py, on the
# dashboard address `strata up` printed in DIR/strata.log
start_dashboard() {
    local url="" deadline=$((SECONDS + 30))
    until url=$(grep -o 'dashboard http://[^ ]*' "$1/strata.log" | head -n 1) && [ -n "$url" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "strata up printed no dashboard address (see $1/strata.log)"
        sleep 0.2
    done
    coproc DASH { exec "$PYTHON" "$BENCH_TOOLS/dashboard_open.py" "$DASHBOARD" "${url#dashboard }" "$2" 2>"$WORK/dashboard.log"; }
    DASH_PID=$DASH_PID
}

# dashboard COMMAND: sends open or close, sets DASH_REPLY to the answer
dashboard() {
    echo "$1" >&"${DASH[1]}"
    IFS= read -r -t 90 DASH_REPLY <&"${DASH[0]}" ||
        { cat "$WORK/dashboard.log" >&2; die "the dashboard client did not answer '$1' (log above)"; }
}

# ------------------------------------------------------------------ measuring

# wait_http URL: until it answers 200 with body "hello"
wait_http() {
    local url=$1 deadline=$((SECONDS + 20))
    until URL=$url "$PYTHON" -c '
import os, sys, urllib.request
with urllib.request.urlopen(os.environ["URL"], timeout=2) as r:
    sys.exit(0 if r.status == 200 and r.read() == b"hello" else 1)
' 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "$url does not answer 200 'hello'"
        sleep 0.2
    done
}

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

# run_wrk NAME URL MODE ROUND CONNS DURATION
run_wrk() {
    local name=$1 url=$2 mode=$3 round=$4 conns=$5 dur=$6 out line
    out="$WORK/wrk/$name.$mode.$round.txt"
    wrk -t1 -c"$conns" -d"${dur}s" --latency -s "$LUA" "$url" >"$out" 2>&1 || true
    line=$(grep '^WRK_RESULT' "$out" || true)
    [ -n "$line" ] || { cat "$out" >&2; die "wrk against $name ($url) printed no result"; }
    printf '%s %s %s %s\n' "$name" "$mode" "$round" "${line#WRK_RESULT }" >>"$RESULTS"
    log "$(printf '%-7s %-8s round %s: %s' "$name" "$mode" "$round" "${line#WRK_RESULT }")"
}

report() {
    RESULTS=$RESULTS ROUNDS=$ROUNDS CONNS=$CONNS PROXY_LOG=$PROXY_LOG CACHE=$CACHE DASHBOARD=$DASHBOARD \
        DASH_COUNTS=$WORK/dashboard-counts.txt "$PYTHON" - <<'PY'
import os, statistics, sys
rows = {}
for line in open(os.environ["RESULTS"]):
    name, mode, rnd, *kv = line.split()
    d = dict(x.split("=") for x in kv)
    rows.setdefault((name, mode), {})[int(rnd)] = {k: float(v) for k, v in d.items()}

def med(name, mode, key):
    vals = [r[key] for r in rows.get((name, mode), {}).values()]
    return statistics.median(vals) if vals else float("nan")

def med_diff(a, b, mode, key):
    ra, rb = rows.get((a, mode), {}), rows.get((b, mode), {})
    vals = [ra[k][key] - rb[k][key] for k in ra if k in rb]
    return statistics.median(vals) if vals else float("nan")

conns = os.environ["CONNS"]
targets = [("direct", "upstream, no proxy"), ("nginx", "nginx reverse proxy"), ("strata", "strata gateway")]
if os.environ.get("DASHBOARD"):
    targets.append(("dash", "strata gateway, its dashboard open and live"))
print()
if os.environ.get("CACHE"):
    print("\nresponse cache at a 100 % hit rate: strata's route store against nginx proxy_cache")
print(f"medians of {os.environ['ROUNDS']} rounds; latencies in microseconds; "
      f"nginx proxy access log: {os.environ.get('PROXY_LOG', 'buffered')} (strata: buffered, always on)")
dashboard = os.environ.get("DASHBOARD")
if dashboard:
    how = {"browser": "loaded in headless Chromium (Playwright)", "feed": "its live feed (/v1/stream) held by a client"}
    counted = []
    for line in open(os.environ["DASH_COUNTS"]):
        rnd, seen = line.split()
        sent = sum(r["requests"] for m in ("loaded", "unloaded") for k, r in rows.get(("dash", m), {}).items() if k == int(rnd))
        counted.append(f"{int(seen)}/{sent:.0f}")
    print(f"dashboard: open and live during the `dash` runs (strata again), {how[dashboard]}; closed during `strata`'s; "
          f"requests it counted/wrk sent per round: {', '.join(counted)}")
else:
    print("dashboard: not open")
hdr = f"{'target':<8} {'req/s c' + conns:>12} {'p50 c' + conns:>10} {'p99 c' + conns:>10} {'p50 c1':>9} {'p99 c1':>9} {'errors':>7}  what"
print(hdr)
print("-" * len(hdr))
for t, what in targets:
    errs = sum(r["errors"] for m in ("loaded", "unloaded") for r in rows.get((t, m), {}).values())
    print(f"{t:<8} {med(t, 'loaded', 'rps'):>12.0f} {med(t, 'loaded', 'p50'):>10.0f} "
          f"{med(t, 'loaded', 'p99'):>10.0f} {med(t, 'unloaded', 'p50'):>9.0f} "
          f"{med(t, 'unloaded', 'p99'):>9.0f} {errs:>7.0f}  {what}")
print()
tput = med("strata", "loaded", "rps") / med("nginx", "loaded", "rps")
p99 = med("strata", "loaded", "p99") / med("nginx", "loaded", "p99")
add_s = med_diff("strata", "direct", "unloaded", "p50")
add_n = med_diff("nginx", "direct", "unloaded", "p50")
print(f"throughput  strata/nginx: {tput:.2f}   (higher is better)")
print(f"p99 c{conns}     strata/nginx: {p99:.2f}   (lower is better)")
ratio = add_s / add_n if add_n > 0 else float("nan")
print(f"added unloaded p50 over direct: strata {add_s:.0f} us, nginx {add_n:.0f} us, "
      f"strata/nginx {ratio:.2f}   (lower is better)")
if dashboard:
    # Per round (same round, back to back), then the median: drift between rounds cancels.
    per = lambda key: [rows[("dash", "loaded")][k][key] / rows[("strata", "loaded")][k][key]
                       for k in rows.get(("dash", "loaded"), {}) if k in rows.get(("strata", "loaded"), {})]
    t, q = per("rps"), per("p99")
    print(f"dashboard open/closed, same rounds: throughput {statistics.median(t):.3f} "
          f"(per round {', '.join(f'{x:.3f}' for x in t)}), p99 c{conns} {statistics.median(q):.3f} "
          f"(per round {', '.join(f'{x:.3f}' for x in q)})   (target: throughput >= 0.98, p99 <= 1.0)")
PY
}

# ------------------------------------------------------------------ main

ensure_tools
ensure_strata
WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench.XXXXXX")
mkdir -p "$WORK/wrk"
RESULTS=$WORK/results.txt
: >"$RESULTS"
INSTANCE_PIDS_FILE=$WORK/instance-pids.txt
LUA=$WORK/report.lua
write_lua "$LUA"

GW_PORT=$(free_port)
PROXY_PORT=$(free_port)
while [ "$PROXY_PORT" = "$GW_PORT" ]; do PROXY_PORT=$(free_port); done

log "strata: $STRATA"
log "work dir: $WORK"
log "dashboard during strata's runs: ${DASHBOARD:-off}"
write_manifest "$WORK/app" bench-gateway "$GW_PORT" upstream 1 'daemon off;'
start_strata "$WORK/app" upstream 1
UP_PORT=${READY_PORTS%% *}
log "upstream (nginx as a strata instance) on 127.0.0.1:$UP_PORT, strata gateway on 127.0.0.1:$GW_PORT"
if [ -n "$DASHBOARD" ]; then
    start_dashboard "$WORK/app" upstream
    dashboard open && dashboard close
    log "dashboard client ($DASHBOARD) works: $DASH_REPLY"
fi

start_proxy "$WORK/proxy" "$PROXY_PORT" "$UP_PORT"
log "nginx proxy on 127.0.0.1:$PROXY_PORT"

declare -A URL=(
    [direct]="http://127.0.0.1:$UP_PORT/"
    [nginx]="http://127.0.0.1:$PROXY_PORT/"
    [strata]="http://127.0.0.1:$GW_PORT/"
)
for t in direct nginx strata; do wait_http "${URL[$t]}"; done
if [ -n "$CACHE" ]; then
    # Every measured request must be a hit: the second GET of each proxy says so.
    for t in nginx strata; do
        URL=${URL[$t]} "$PYTHON" -c '
import os, sys, urllib.request
for _ in range(2):
    with urllib.request.urlopen(os.environ["URL"], timeout=2) as r:
        how = r.headers.get("x-strata-cache") or r.headers.get("x-cache-status")
sys.exit(0 if how and how.lower() == "hit" else 1)
' || die "$t does not answer from its cache"
    done
    log "both proxies answer from their response caches (hit)"
fi

sleep 1
IDLE_RSS=$(rss_kb "$STRATA_PID")
IDLE_ANON=$(anon_kb "$STRATA_PID")
log "strata idle RSS: ${IDLE_RSS} kB (private ${IDLE_ANON} kB)"

if [ "$WARMUP" -gt 0 ]; then
    for t in direct nginx strata; do
        wrk -t1 -c"$CONNS" -d"${WARMUP}s" "${URL[$t]}" >/dev/null 2>&1 || true
    done
fi

# With DASHBOARD, strata runs twice per round: `strata` with the dashboard closed and
# `dash` with it open and live, so that its cost is a ratio from the same run.
ORDER=(direct nginx strata)
if [ -n "$DASHBOARD" ]; then
    ORDER+=(dash)
    URL[dash]=${URL[strata]}
fi
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#ORDER[@]}; i++)); do
        t=${ORDER[$(((i + r - 1) % ${#ORDER[@]}))]}
        if [ "$t" = dash ]; then
            dashboard open
            opened=${DASH_REPLY#opened requests=}
        fi
        run_wrk "$t" "${URL[$t]}" loaded "$r" "$CONNS" "$DURATION"
        run_wrk "$t" "${URL[$t]}" unloaded "$r" 1 "$LAT_DURATION"
        if [ "$t" = dash ]; then
            dashboard close
            closed=${DASH_REPLY#closed requests=}
            closed=${closed%% *}
            echo "$r $((closed - opened))" >>"$WORK/dashboard-counts.txt"
            log "dashboard round $r: counted $((closed - opened)) requests while open ($DASH_REPLY)"
        fi
    done
done

LOADED_RSS=$(rss_kb "$STRATA_PID")
LOADED_ANON=$(anon_kb "$STRATA_PID")
PEAK_RSS=$(hwm_kb "$STRATA_PID")
if [ -n "$DASH_PID" ]; then
    echo quit >&"${DASH[1]}" || true
    stop_pid "$DASH_PID"
    DASH_PID=""
fi
stop_pid "$PROXY_PID"
PROXY_PID=""
stop_strata

MANY_RSS=""
if [ "$INSTANCES" -gt 0 ]; then
    MANY_PORT=$(free_port)
    if [ "$IDLE_KIND" = python ]; then
        write_manifest "$WORK/many" bench-many "$MANY_PORT" idle "$INSTANCES" '' python
    else
        # one process per instance: no master, one worker inline
        write_manifest "$WORK/many" bench-many "$MANY_PORT" idle "$INSTANCES" 'daemon off; master_process off;'
    fi
    log "starting $INSTANCES idle $IDLE_KIND instances"
    start_strata "$WORK/many" idle "$INSTANCES"
    sleep 2
    MANY_RSS=$(rss_kb "$STRATA_PID")
    MANY_ANON=$(anon_kb "$STRATA_PID")
    stop_strata
fi

report
echo
echo "strata process RSS (VmRSS of the strata process only, instances excluded; private: RssAnon):"
printf '  %-34s %7d kB (private %d kB)\n' "idle, 1 instance, before load:" "$IDLE_RSS" "$IDLE_ANON"
printf '  %-34s %7d kB (private %d kB, peak RSS %d kB)\n' "after the load runs:" "$LOADED_RSS" "$LOADED_ANON" "$PEAK_RSS"
if [ -n "$MANY_RSS" ]; then
    printf '  %-34s %7d kB (private %d kB)\n' "$INSTANCES ready $IDLE_KIND instances:" "$MANY_RSS" "$MANY_ANON"
fi
