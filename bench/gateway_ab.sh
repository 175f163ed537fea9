#!/usr/bin/env bash
# bench/gateway_ab.sh: two strata builds, A and B, relaying HTTP side by side in one run
# (rounds alternate A B, then B A, ...), each `strata up` with its own nginx member
# answering a 5-byte 200, to tell a change to the gateway from the noise of a shared
# machine (gateway.sh measures one build against nginx; nginx's own rate moves by 10 %
# between runs, more than the changes being weighed).
#
#   bash bench/gateway_ab.sh OLD_STRATA NEW_STRATA
#
# Settings (environment):
#   ROUNDS=6        rounds; each runs A and B once
#   DURATION=5      seconds per wrk run (-t1 -c$CONNS)
#   CONNS=50        connections
#   CACHE=1         the response cache at a 100 % hit rate (as gateway.sh's CACHE=1): the
#                   member answers with Cache-Control: max-age=3600 and the route has a
#                   fallback, so every measured request is a fresh hit
#   KEEP=1          keep the work dir (manifests, logs, raw lines)
# Prints per round the requests per second and strata's CPU time per request (user +
# system from /proc/PID/stat, the strata process only), then the medians, the ratios
# B/A and in how many rounds B spent less CPU per request than A.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

A=${1:?usage: bench/gateway_ab.sh A_STRATA B_STRATA}
B=${2:?usage: bench/gateway_ab.sh A_STRATA B_STRATA}
A=$(cd "$(dirname "$A")" && pwd)/$(basename "$A")
B=$(cd "$(dirname "$B")" && pwd)/$(basename "$B")
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
KEEP=${KEEP:-}
CACHE=${CACHE:-}

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ "${#missing[@]}" -eq 0 ] || { log "installing ${missing[*]}"; apt_install "${missing[@]}"; }
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-gateway-ab.XXXXXX")
OUT=$WORK/results.txt
declare -A PID DIR PORT BIN=([A]="$A" [B]="$B")

ab_traps

# start WHICH: `strata up` of build WHICH with one nginx member (as in gateway.sh)
start() {
    local w=$1 deadline=$((SECONDS + 60))
    DIR[$w]=$WORK/$w
    PORT[$w]=$(free_port)
    mkdir -p "${DIR[$w]}"
    NGINX_BIN=$NGINX W=${w,,} GW_PORT=${PORT[$w]} CACHE=$CACHE \
        CONF=$(nginx_member_conf "${CACHE:+add_header Cache-Control \"max-age=3600\";}") \
        python3 - >"${DIR[$w]}/strata.json" <<'PY'
import json, os
e = os.environ
conf = e["CONF"]
route = {"path": "/", "fallback": {"stale_if_error_s": 60}} if e["CACHE"] else "/"
svc = {"run": [e["NGINX_BIN"], "-c", "${TMPDIR}/nginx.conf", "-g", "daemon off;"],
       "files": {"nginx.conf": {"content": conf}},
       "instances": {"min": 1, "max": 1}, "routes": [route], "health": {"path": "/"}}
print(json.dumps({"strata": 1, "app": "bench-gateway-ab-" + e["W"],
                  "gateway": {"listen": "127.0.0.1:" + e["GW_PORT"]},
                  "services": {"up": svc}}, indent=2))
PY
    (cd "${DIR[$w]}" && exec "${BIN[$w]}" up strata.json --cache-listen 127.0.0.1:0) >"${DIR[$w]}/strata.log" 2>&1 &
    PID[$w]=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$w]}/" 2>/dev/null)" = 200 ] &&
        { [ -z "$CACHE" ] || curl -si "http://127.0.0.1:${PORT[$w]}/" 2>/dev/null | grep -qi '^x-strata-cache: hit'; }; do
        alive "${PID[$w]}" || { tail -n 20 "${DIR[$w]}/strata.log" >&2; die "strata $w exited early"; }
        [ "$SECONDS" -lt "$deadline" ] || die "strata $w did not relay a request within 60 s"
        sleep 0.3
    done
}

TICK=$(getconf CLK_TCK)

start A
start B
log "A: $A (pid ${PID[A]}), B: $B (pid ${PID[B]}); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for w in A B; do
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$w]}/" >/dev/null 2>&1 || true
done
for round in $(seq "$ROUNDS"); do
    order="A B"
    [ $((round % 2)) -eq 0 ] && order="B A"
    for w in $order; do
        before=$(cpu_ticks "${PID[$w]}")
        out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$w]}/")
        after=$(cpu_ticks "${PID[$w]}")
        line=$(python3 -c '
import re, sys
out = sys.argv[1]
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
us = (int(sys.argv[3]) - int(sys.argv[2])) * 1e6 / int(sys.argv[4]) / max(reqs, 1)
print("%.0f %.2f %d" % (rps, us, errs + (int(bad.group(1)) if bad else 0)))' "$out" "$before" "$after" "$TICK")
        echo "$round $w $line" | tee -a "$OUT"
    done
done

echo
echo "medians over $ROUNDS rounds, c$CONNS: requests per second, strata CPU us per request; ratios B/A"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'EOF'
import collections, statistics, sys
rate = collections.defaultdict(list)
cpu = collections.defaultdict(list)
errors = collections.Counter()
for line in open(sys.argv[1]):
    _, which, r, us, errs = line.split()
    rate[which].append(float(r))
    cpu[which].append(float(us))
    errors[which] += int(errs)
ra, rb = (statistics.median(rate[w]) for w in "AB")
ca, cb = (statistics.median(cpu[w]) for w in "AB")
ahead = sum(b < a for a, b in zip(cpu["A"], cpu["B"]))
faster = sum(b > a for a, b in zip(rate["A"], rate["B"]))
print(f"  per s A {ra:>8.0f} B {rb:>8.0f} B/A {rb / ra:.3f} (B faster in {faster}/{len(rate['A'])} rounds)   "
      f"cpu us A {ca:6.2f} B {cb:6.2f} B/A {cb / ca:.3f} (B cheaper in {ahead}/{len(cpu['A'])} rounds)   "
      f"errors A {errors['A']} B {errors['B']}")
EOF
