#!/usr/bin/env bash
# bench/containers.sh: strata's oci driver against runc by hand and podman, same image.
#
# Run from the repository root, as root:   bash bench/containers.sh
# Settings (environment):
#   ROUNDS=5          rounds; each round runs every target once, in a rotating order
#   DURATION=8        seconds per wrk run (-t1 -c$CONNS) through the gateway
#   CONNS=8           connections of those runs (busybox httpd listens with a backlog
#                     of 9: more connections overflow it, and SYN retries add 1 s p99s)
#   SETTLE=1          seconds of pause before each start-to-ready measurement
#   INSTANCES=50      containerised instances for the RSS figure (0: skip)
#   STRATA=target/release/strata   the binary (built with cargo when missing)
#   KEEP=1            keep the work dir (image, bundles, logs, raw output)
# See bench/README.md for what is measured. Not a test: never run under CI.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
CONNS=${CONNS:-8}
SETTLE=${SETTLE:-1}
INSTANCES=${INSTANCES:-50}
STRATA=${STRATA:-target/release/strata}
READY_TIMEOUT=${READY_TIMEOUT:-180}
KEEP=${KEEP:-}

# log, die, free_port
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ------------------------------------------------------------------ tools

[ "$(id -u)" -eq 0 ] || die "the oci driver, runc and rootful podman need root: run it as root"
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/bin/busybox ] || need+=(busybox-static)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
RUNC=$(command -v runc 2>/dev/null || echo /usr/sbin/runc)
PYTHON=$(command -v python3)
if [ ! -x "$STRATA" ]; then
    log "$STRATA not found: building it (cargo build --release -p strata)"
    cargo build --release -p strata
fi
STRATA=$(cd "$(dirname "$STRATA")" && pwd)/$(basename "$STRATA")

# podman is optional: without it (or where it cannot run) its column says why.
PODMAN_WHY=""
if ! command -v podman >/dev/null 2>&1; then
    log "installing podman"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null 2>&1 || PODMAN_WHY="apt-get install podman failed"
fi
if [ -z "$PODMAN_WHY" ] && ! out=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1); then
    PODMAN_WHY="podman info failed: $(printf '%s' "$out" | tail -n 1)"
fi

# ------------------------------------------------------------------ bookkeeping

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-containers.XXXXXX")
chmod 755 "$WORK"
STRATA_PID=""
HAND_IDS=()
PODMAN_NAMES=()
PODMAN_IMAGE=""

alive() { [ -n "$1" ] && [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"; }

cleanup() {
    local rc=$? id
    trap - EXIT INT TERM
    for id in "${HAND_IDS[@]}"; do "$RUNC" delete --force "$id" >/dev/null 2>&1 || true; done
    for id in "${PODMAN_NAMES[@]}"; do podman rm -f -t 0 "$id" >/dev/null 2>&1 || true; done
    [ -n "$PODMAN_IMAGE" ] && podman rmi -f "$PODMAN_IMAGE" >/dev/null 2>&1 || true
    if [ -n "$STRATA_PID" ] && alive "$STRATA_PID"; then
        (cd "$WORK/app" && timeout 60 "$STRATA" down >/dev/null 2>&1) || kill -TERM "$STRATA_PID" 2>/dev/null || true
        wait "$STRATA_PID" 2>/dev/null || true
    fi
    if [ -n "$KEEP" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ------------------------------------------------------------------ the image

# An OCI image layout of busybox-static serving /www (c/hello and healthz), and the same
# layout as an OCI archive for podman. Entrypoint busybox, Cmd httpd on 8080.
"$PYTHON" - "$WORK" <<'PY'
import hashlib, io, json, os, sys, tarfile
work = sys.argv[1]
lay = os.path.join(work, "app", "busybox-layout")
os.makedirs(os.path.join(lay, "blobs", "sha256"))
def blob(media, data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(lay, "blobs", "sha256", d), "wb").write(data)
    return {"mediaType": media, "digest": "sha256:" + d, "size": len(data)}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    def add(name, data=None, mode=0o644, link=None, kind=tarfile.REGTYPE):
        i = tarfile.TarInfo(name); i.mode = mode; i.mtime = 1
        if link: i.type, i.linkname = tarfile.SYMTYPE, link
        elif kind == tarfile.DIRTYPE: i.type, i.mode = tarfile.DIRTYPE, 0o755
        else: i.size = len(data)
        t.addfile(i, io.BytesIO(data) if data is not None else None)
    for d in ["bin", "www", "www/c", "tmp"]:
        add(d, kind=tarfile.DIRTYPE)
    add("bin/busybox", open("/usr/bin/busybox", "rb").read(), 0o755)
    add("bin/sh", link="busybox")
    add("www/healthz", b"ok\n")
    add("www/c/hello", b"hello\n")
    add("www/cu/hello", b"hello\n")
layer = buf.getvalue()
config = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                     "Env": ["PATH=/bin"], "WorkingDir": "/www"},
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob("application/vnd.oci.image.config.v1+json", json.dumps(config).encode()),
            "layers": [blob("application/vnd.oci.image.layer.v1.tar", layer)]}
m = blob("application/vnd.oci.image.manifest.v1+json", json.dumps(manifest).encode())
m["annotations"] = {"org.opencontainers.image.ref.name": "strata-bench-busybox:latest"}
json.dump({"schemaVersion": 2, "manifests": [m]}, open(os.path.join(lay, "index.json"), "w"))
open(os.path.join(lay, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
with tarfile.open(os.path.join(work, "busybox-oci.tar"), "w") as t:
    t.add(lay, arcname=".")
# the same file tree for the process instance: /www/p/hello
os.makedirs(os.path.join(work, "www", "p"))
open(os.path.join(work, "www", "healthz"), "w").write("ok\n")
open(os.path.join(work, "www", "p", "hello"), "w").write("hello\n")
PY
# nginx, a server that keeps its processes (one worker, keep-alive), as the second
# member pair: the same binary and configuration in a container of the `host` image and
# as a process. Every path it writes is under its prefix in $TMPDIR (the container's
# scratch, or the process instance's own directory).
mkdir -p "$WORK/app/ngx"
cat >"$WORK/app/ngx/nginx.conf.tmpl" <<'CONF'
worker_processes 1;
pid nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi; scgi_temp_path scgi;
    server {
        listen 127.0.0.1:@PORT@;
        location = /healthz { return 200 "ok\n"; }
        location / { return 200 "hello\n"; }
    }
}
CONF
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
NGX_RUN="d=\$TMPDIR/ngx-\$PORT && mkdir -p \$d && sed s/@PORT@/\$PORT/ nginx.conf.tmpl > \$d/nginx.conf && exec $NGINX -e stderr -p \$d/ -c \$d/nginx.conf -g 'daemon off;'"
chmod -R a+rX "$WORK"
export STRATA_IMAGES=$WORK/images

# ------------------------------------------------------------------ strata

GW_PORT=$(free_port)
cat >"$WORK/app/strata.json" <<EOF
{"strata": 1, "app": "bench-containers",
 "gateway": {"listen": "127.0.0.1:$GW_PORT"},
 "services": {
  "box": {"run": ["/bin/busybox", "httpd", "-f", "-p", "\${PORT}", "-h", "/www"],
          "driver": "oci", "image": "./busybox-layout",
          "instances": {"min": 1, "max": $((INSTANCES > 2 ? INSTANCES : 2))},
          "routes": ["/c/"], "health": {"path": "/healthz", "interval_ms": 10},
          "stop_grace_ms": 1000},
  "boxfree": {"run": ["/bin/busybox", "httpd", "-f", "-p", "\${PORT}", "-h", "/www"],
              "driver": "oci", "image": "./busybox-layout", "seccomp": "unconfined",
              "routes": ["/cu/"], "health": {"path": "/healthz", "interval_ms": 10},
              "stop_grace_ms": 1000},
  "proc": {"run": ["/usr/bin/busybox", "httpd", "-f", "-p", "\${PORT}", "-h", "$WORK/www"],
           "instances": {"min": 1, "max": $((INSTANCES > 2 ? INSTANCES : 2))},
           "routes": ["/p/"], "health": {"path": "/healthz", "interval_ms": 10}},
  "ngxbox": {"run": ["/bin/sh", "-c", "$NGX_RUN"], "workdir": "ngx",
             "driver": "oci", "image": "host",
             "routes": ["/nc/"], "health": {"path": "/healthz", "interval_ms": 10},
             "stop_grace_ms": 1000},
  "ngxfree": {"run": ["/bin/sh", "-c", "$NGX_RUN"], "workdir": "ngx",
              "driver": "oci", "image": "host", "seccomp": "unconfined",
              "routes": ["/nu/"], "health": {"path": "/healthz", "interval_ms": 10},
              "stop_grace_ms": 1000},
  "ngxproc": {"run": ["/bin/sh", "-c", "$NGX_RUN"], "workdir": "ngx",
              "routes": ["/np/"], "health": {"path": "/healthz", "interval_ms": 10},
              "stop_grace_ms": 1000}}}
EOF

ps_json() { (cd "$WORK/app" && "$STRATA" ps --json 2>/dev/null); }
# ready_count SERVICE: how many of its instances are ready
ready_count() {
    ps_json | SERVICE=$1 "$PYTHON" -c '
import json, os, sys
doc = json.load(sys.stdin)
print(sum(1 for s in doc.get("services", []) if s.get("name") == os.environ["SERVICE"]
          for i in s.get("instances", []) if i.get("state") == "ready"))' 2>/dev/null || echo 0
}
# count SERVICE: how many instances it has that are not stopped
count() {
    ps_json | SERVICE=$1 "$PYTHON" -c '
import json, os, sys
doc = json.load(sys.stdin)
print(sum(1 for s in doc.get("services", []) if s.get("name") == os.environ["SERVICE"]
          for i in s.get("instances", []) if i.get("state") != "stopped"))' 2>/dev/null || echo 99
}
wait_ready() {
    local service=$1 want=$2 deadline=$((SECONDS + READY_TIMEOUT))
    until [ "$(ready_count "$service")" -ge "$want" ]; do
        alive "$STRATA_PID" || { tail -n 30 "$WORK/app/strata.log" >&2; die "strata up exited"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$WORK/app/strata.log" >&2; die "$want instances of $service not ready"; }
        sleep 0.05
    done
}
scale() { (cd "$WORK/app" && "$STRATA" scale "$1" "$2" >/dev/null); }

log "strata: $STRATA; work dir: $WORK"
(cd "$WORK/app" && exec env STRATA_OCI_RUNTIME="$RUNC" "$STRATA" up strata.json --cache-listen 127.0.0.1:0) >"$WORK/app/strata.log" 2>&1 &
STRATA_PID=$!
wait_ready box 1
wait_ready boxfree 1
wait_ready proc 1
wait_ready ngxbox 1
wait_ready ngxfree 1
wait_ready ngxproc 1

# ------------------------------------------------------------------ start to ready

# The poller: runs a command (its own process group, output to a file) and prints the
# ms until GET http://127.0.0.1:PORT/healthz answers 200, polling every 2 ms.
POLL=$WORK/poll.py
cat >"$POLL" <<'PY'
import socket, subprocess, sys, time
port, out, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
subprocess.Popen(argv, stdout=open(out, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                 start_new_session=True)
while time.monotonic() - t0 < 60:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            status = s.recv(64).split(b"\r\n")[0]
            if status.startswith(b"HTTP/1.") and b" 200" in status:
                print("%.1f" % ((time.monotonic() - t0) * 1000)); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.002)
sys.exit("not ready in 60 s: " + " ".join(argv))
PY

# The bundle strata wrote for box-1 is copied once; each hand run gets its own cgroup
# and port in it.
BUNDLE_SRC=$(find "$WORK/app/.strata/run" -name config.json -path '*/box-1.*' | head -n 1)
[ -n "$BUNDLE_SRC" ] || die "no bundle of box-1 under $WORK/app/.strata/run"
BOX1_PORT=$(ps_json | "$PYTHON" -c '
import json, sys
doc = json.load(sys.stdin)
print([i["port"] for s in doc["services"] if s["name"] == "box" for i in s["instances"]][0])')
# hand_bundle DIR PORT ID: strata's config.json with its own port and cgroup
hand_bundle() {
    mkdir -p "$1"
    SRC=$BUNDLE_SRC DIR=$1 PORT=$2 OLD=$BOX1_PORT ID=$3 "$PYTHON" - <<'PY'
import json, os
e = os.environ
c = json.load(open(e["SRC"]))
p = c["process"]
p["args"] = [e["PORT"] if a == e["OLD"] else a for a in p["args"]]
p["env"] = ["PORT=" + e["PORT"] if v.startswith("PORT=") else v for v in p["env"]]
c["linux"]["cgroupsPath"] = e["ID"]
json.dump(c, open(os.path.join(e["DIR"], "config.json"), "w"))
PY
}

if [ -z "$PODMAN_WHY" ]; then
    if loaded=$(podman load -q -i "$WORK/busybox-oci.tar" 2>&1); then
        PODMAN_IMAGE=$(printf '%s\n' "$loaded" | sed -n 's/^Loaded image[s]*: *//p' | head -n 1)
        [ -n "$PODMAN_IMAGE" ] || PODMAN_WHY="podman load printed no image: $loaded"
    else
        PODMAN_WHY="podman load of the OCI archive failed: $(printf '%s' "$loaded" | tail -n 1)"
    fi
fi
[ -z "$PODMAN_WHY" ] && log "podman: image $PODMAN_IMAGE" || log "podman: skipped: $PODMAN_WHY"

STARTS=$WORK/starts.txt
: >"$STARTS"
start_strata() {
    local since ms
    since=$(date +%s%3N)
    scale box 2
    # The figure is strata's own 'ready in N ms': nothing is gained by asking early, and
    # `strata ps` plus python every 50 ms during the launch took the CPU the launch
    # needs on two cores (strata/runc 1.28 with it, 0.96 without, same machine).
    sleep 0.5
    wait_ready box 2
    ms=$( (cd "$WORK/app" && "$STRATA" events --json) | SINCE=$since "$PYTHON" -c '
import json, os, sys
doc = json.load(sys.stdin)
events = doc["events"] if isinstance(doc, dict) else doc
ready = [e for e in events if e.get("kind") == "ready" and e.get("service") == "box"
         and e.get("at", 0) >= int(os.environ["SINCE"])]
print(ready[-1]["message"].split()[2])')
    scale box 1
    until [ "$(count box)" -le 1 ]; do sleep 0.05; done
    echo "$ms"
}
start_runc() {
    local r=$1 port id dir ms
    port=$(free_port); id=strata-bench-hand-$r; dir=$WORK/hand/$r
    hand_bundle "$dir" "$port" "$id"
    HAND_IDS+=("$id")
    ms=$("$PYTHON" "$POLL" "$port" "$WORK/runc.log" "$RUNC" run --bundle "$dir" "$id" || true)
    "$RUNC" kill "$id" KILL >/dev/null 2>&1 || true
    sleep 0.1
    "$RUNC" delete --force "$id" >/dev/null 2>&1 || true
    echo "$ms"
}
start_podman() {
    local r=$1 port name ms
    port=$(free_port); name=strata-bench-podman-$r
    PODMAN_NAMES+=("$name")
    # podman's default rlimits (nofile and nproc of 1048576) are refused here ("error
    # setting rlimit type 7: operation not permitted"): the node's nofile, as strata
    # gives, and nproc 1024, as strata's default pids limit.
    ms=$("$PYTHON" "$POLL" "$port" "$WORK/podman.log" podman run --rm --name "$name" --network host \
        --ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=1024:1024 \
        "$PODMAN_IMAGE" httpd -f -p "$port" -h /www || true)
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    echo "$ms"
}

TARGETS=(strata runc)
[ -z "$PODMAN_WHY" ] && TARGETS+=(podman)
n=${#TARGETS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        t=${TARGETS[$(((i + r - 1) % n))]}
        sleep "$SETTLE" # what the previous target left to do (podman's cleanup) is done
        ms=$("start_$t" "$r")
        [ -n "$ms" ] || { log "start $t round $r: failed (see $WORK/$t.log with KEEP=1)"; continue; }
        echo "$t $r $ms" >>"$STARTS"
        log "$(printf 'start %-6s round %s: %s ms' "$t" "$r" "$ms")"
    done
done

# ------------------------------------------------------------------ throughput

cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT rps=%.2f p50=%d p99=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
LOADS=$WORK/loads.txt
: >"$LOADS"
# the ready member of each service now (scaling down may have stopped box-1)
ready_port() {
    ps_json | SERVICE=$1 "$PYTHON" -c '
import json, os, sys
doc = json.load(sys.stdin)
print([i["port"] for s in doc["services"] if s["name"] == os.environ["SERVICE"]
       for i in s["instances"] if i["state"] == "ready"][0])'
}
BOX_PORT=$(ready_port box)
PROC_PORT=$(ready_port proc)
# through the gateway, and straight to each member (where the difference comes from);
# nginx's pair through the gateway
declare -A URL=([container]="http://127.0.0.1:$GW_PORT/c/hello" [process]="http://127.0.0.1:$GW_PORT/p/hello"
    [container-unconfined]="http://127.0.0.1:$GW_PORT/cu/hello"
    [container-direct]="http://127.0.0.1:$BOX_PORT/c/hello" [process-direct]="http://127.0.0.1:$PROC_PORT/p/hello"
    [nginx-container]="http://127.0.0.1:$GW_PORT/nc/hello" [nginx-process]="http://127.0.0.1:$GW_PORT/np/hello"
    [nginx-unconfined]="http://127.0.0.1:$GW_PORT/nu/hello")
ORDER=(container process container-unconfined container-direct process-direct nginx-container nginx-process nginx-unconfined)
for t in "${ORDER[@]}"; do
    curl -fsS "${URL[$t]}" >/dev/null 2>&1 || "$PYTHON" -c "import urllib.request; urllib.request.urlopen('${URL[$t]}')" \
        || die "${URL[$t]} does not answer"
    wrk -t1 -c"$CONNS" -d2s "${URL[$t]}" >/dev/null 2>&1 || true
done
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < ${#ORDER[@]}; i++)); do
        t=${ORDER[$(((i + r - 1) % ${#ORDER[@]}))]}
        line=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/report.lua" "${URL[$t]}" 2>&1 | grep '^WRK_RESULT' || true)
        [ -n "$line" ] || die "wrk against ${URL[$t]} printed no result"
        echo "$t $r ${line#WRK_RESULT }" >>"$LOADS"
        log "$(printf 'load  %-16s round %s: %s' "$t" "$r" "${line#WRK_RESULT }")"
    done
done

# ------------------------------------------------------------------ memory

RSS1=$(rss_kb "$STRATA_PID")
RSSN=""
RUNC_RSS=""
if [ "$INSTANCES" -gt 0 ]; then
    log "scaling box to $INSTANCES containers"
    scale box "$INSTANCES"
    wait_ready box "$INSTANCES"
    sleep 1
    RSSN=$(rss_kb "$STRATA_PID")
    # the runtimes strata keeps in the foreground, one `runc run` per container
    RUNC_RSS=$(PARENT=$STRATA_PID "$PYTHON" -c '
import os
total = n = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        st = open(f"/proc/{pid}/status").read()
    except OSError:
        continue
    f = dict(l.split(":", 1) for l in st.splitlines() if ":" in l)
    if f.get("PPid", "").strip() == os.environ["PARENT"] and f.get("Name", "").strip() == "runc":
        n += 1
        total += int(f.get("VmRSS", "0 kB").split()[0])
print(n, total)')
    scale box 1
fi

# ------------------------------------------------------------------ report

RUNC_VERSION=$("$RUNC" --version | head -n 1)
STARTS=$STARTS LOADS=$LOADS ROUNDS=$ROUNDS CONNS=$CONNS RSS1=$RSS1 RSSN=$RSSN RUNC_RSS=$RUNC_RSS INSTANCES=$INSTANCES \
    PODMAN_WHY=$PODMAN_WHY RUNC_VERSION=$RUNC_VERSION "$PYTHON" - <<'PY'
import os, statistics
e = os.environ
starts, loads = {}, {}
for line in open(e["STARTS"]):
    t, r, ms = line.split()
    starts.setdefault(t, []).append(float(ms))
by_round = {}
for line in open(e["LOADS"]):
    t, r, *kv = line.split()
    d = {k: float(v) for k, v in (x.split("=") for x in kv)}
    loads.setdefault(t, []).append(d)
    by_round.setdefault(t, {})[r] = d
med = statistics.median


def paired(a, b, key="rps"):
    """a/b round by round (both ran in the same round): the median and the range. The
    machine drifts between rounds; a round's own ratio does not see that drift."""
    rs = sorted(by_round[a][r][key] / by_round[b][r][key] for r in by_round[a] if r in by_round[b])
    under = sum(1 for x in rs if x < 0.95)
    return f"round by round: median {med(rs):.2f}, {rs[0]:.2f}-{rs[-1]:.2f}, under 0.95 in {under} of {len(rs)}"
print()
print(f"medians of {e['ROUNDS']} rounds ({e['RUNC_VERSION']})")
print("start to ready (ms): launch until GET /healthz answers 200")
for t, what in [("strata", "strata oci driver: `strata scale box 2`, its own 'ready in N ms'"),
                ("runc", "runc run of strata's bundle by hand, polled every 2 ms"),
                ("podman", "podman run --rm --network host, same image, polled every 2 ms")]:
    if t in starts:
        v = starts[t]
        print(f"  {t:<7} {med(v):8.1f}   (min {min(v):.1f}, max {max(v):.1f})  {what}")
    else:
        print(f"  {t:<7}      n/a   {e.get('PODMAN_WHY') or 'not run'}")
s, r = med(starts["strata"]), med(starts["runc"])
print(f"  strata/runc:   {s / r:.2f}   (target <= 1.2)")
if "podman" in starts:
    print(f"  strata/podman: {s / med(starts['podman']):.2f}   (lower is better)")
print(f"throughput, wrk -t1 -c{e['CONNS']}: busybox httpd as a container (default seccomp profile, and unconfined) and as a process, through the gateway and direct")
for t in ("container", "process", "container-unconfined", "container-direct", "process-direct"):
    v = loads[t]
    errs = sum(x["errors"] for x in v)
    print(f"  {t:<16} {med([x['rps'] for x in v]):9.0f} req/s   p50 {med([x['p50'] for x in v]):.0f} us"
          f"   p99 {med([x['p99'] for x in v]):.0f} us   errors {errs:.0f}")
ratio = med([x["rps"] for x in loads["container"]]) / med([x["rps"] for x in loads["process"]])
print(f"  container/process: {ratio:.2f}   (target >= 0.95); {paired('container', 'process')}")
free = med([x["rps"] for x in loads["container-unconfined"]]) / med([x["rps"] for x in loads["process"]])
print(f"  container/process (\"seccomp\": \"unconfined\"): {free:.2f}; {paired('container-unconfined', 'process')}")
direct = med([x["rps"] for x in loads["container-direct"]]) / med([x["rps"] for x in loads["process-direct"]])
print(f"  container/process straight to the member, no gateway: {direct:.2f}")
print(f"throughput, wrk -t1 -c{e['CONNS']}: nginx (one worker, keep-alive) in a container of the host image"
      " (with the default seccomp profile, and unconfined) and as a process, through the gateway")
for t in ("nginx-container", "nginx-process", "nginx-unconfined"):
    v = loads[t]
    errs = sum(x["errors"] for x in v)
    print(f"  {t:<16} {med([x['rps'] for x in v]):9.0f} req/s   p50 {med([x['p50'] for x in v]):.0f} us"
          f"   p99 {med([x['p99'] for x in v]):.0f} us   errors {errs:.0f}")
ngx = med([x["rps"] for x in loads["nginx-container"]]) / med([x["rps"] for x in loads["nginx-process"]])
print(f"  container/process (nginx): {ngx:.2f}   (target >= 0.95); {paired('nginx-container', 'nginx-process')}")
free = med([x["rps"] for x in loads["nginx-unconfined"]]) / med([x["rps"] for x in loads["nginx-process"]])
print(f"  container/process (nginx, \"seccomp\": \"unconfined\"): {free:.2f}; {paired('nginx-unconfined', 'nginx-process')}")
print(f"strata's RSS: {int(e['RSS1']) / 1024:.1f} MiB with 1 container + 1 process instance", end="")
if e.get("RSSN"):
    n = int(e["INSTANCES"])
    print(f", {int(e['RSSN']) / 1024:.1f} MiB with {n} containers"
          f" ({(int(e['RSSN']) - int(e['RSS1'])) / max(n - 1, 1):.0f} kB per added container)")
    if e.get("RUNC_RSS"):
        k, kb = map(int, e["RUNC_RSS"].split())
        print(f"  besides: {k} `runc run` processes (one per container, strata's children) hold {kb / 1024:.1f} MiB"
              f" ({kb / max(k, 1) / 1024:.1f} MiB each)")
else:
    print()
PY
