#!/usr/bin/env python3
"""Holds idle and slowloris connections open against TCP ports (bench/slowloris.sh).

    conn_holder.py --target gateway=127.0.0.1:8080/http --target redis=127.0.0.1:6379/redis \
                   --idle 10000 --slow 1000 [--interval 3] [--report FILE] [--hold SECONDS]

Standard library only. The IDLE and SLOW connections are spread evenly over the targets.
An idle connection sends nothing. A slowloris connection trickles a request that never
ends, one byte every INTERVAL seconds (its first byte at a random point of the first
interval, so that the server's timers do not all fire together): for `http` a GET head
followed by header lines without end, for `redis` a RESP command whose last argument
announces 1 MiB and never arrives. Every connection the server closes (or that fails) is
recorded, with when it was opened, when its first byte went out, when the server first
answered, what it answered (the first line) and when it closed, and is then opened again,
so that the pressure stays constant for as long as the holder runs.

The soft RLIMIT_NOFILE is raised to the hard limit first. Once every connection has been
open at least once (or after --ready-timeout), one line `READY held=N of=TOTAL` goes to
stdout. The holder runs until SIGTERM or SIGINT (or --hold seconds), then closes
everything and writes a JSON report (--report, default stdout): the targets, a timeline of
the open counts every --sample seconds, every close, the connect errors and its own CPU
time. A readable summary goes to stderr.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import sys
import time
from collections import Counter, defaultdict

KINDS = ("idle", "slow")


def http_trickle():
    """A request head that never ends."""
    yield from b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
    i = 0
    while True:
        yield from b"X-Slow-%d: v\r\n" % i
        i += 1


def redis_trickle():
    """A RESP command whose last argument never arrives whole."""
    yield from b"*2\r\n$3\r\nGET\r\n$1048576\r\n"
    while True:
        yield ord("a")


TRICKLES = {"http": http_trickle, "redis": redis_trickle}

# how often the trickler wakes up (seconds)
TICK = 0.05


def parse_target(text):
    """NAME=HOST:PORT/PROTO, PROTO being http or redis."""
    try:
        name, rest = text.split("=", 1)
        addr, proto = rest.rsplit("/", 1)
        host, port = addr.rsplit(":", 1)
        port = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"target {text!r}: expected NAME=HOST:PORT/PROTO, for example api=127.0.0.1:9000/http")
    if proto not in TRICKLES:
        raise argparse.ArgumentTypeError(f"target {text!r}: protocol {proto!r} is not one of {', '.join(TRICKLES)}")
    if not name or not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"target {text!r}: needs a name and a port in 1-65535")
    return {"name": name, "host": host, "port": port, "proto": proto}


def spread(total, n):
    """total split over n parts, the first ones taking the remainder."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < needed:
        sys.exit(f"conn_holder: {needed} descriptors needed, but RLIMIT_NOFILE allows {soft} "
                 f"(hard limit {hard}): lower --idle/--slow or raise the hard limit (ulimit -Hn)")
    return soft, hard


class Trickled:
    """A slowloris connection in the trickler's wheel (hashed by identity)."""
    __slots__ = ("rec", "writer", "stream")

    def __init__(self, rec, writer, stream):
        self.rec, self.writer, self.stream = rec, writer, stream


class Holder:
    def __init__(self, args):
        self.args = args
        self.targets = args.target
        self.total = args.idle + args.slow
        self.open = {t["name"]: {k: 0 for k in KINDS} for t in self.targets}
        self.assigned = {t["name"]: {} for t in self.targets}
        for kind, total in (("idle", args.idle), ("slow", args.slow)):
            for t, n in zip(self.targets, spread(total, len(self.targets))):
                self.assigned[t["name"]][kind] = n
        self.closes = []
        self.connect_errors = defaultdict(Counter)
        self.timeline = []
        self.opened = 0
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.gate = asyncio.Semaphore(args.connect_concurrency)
        self.writers = set()
        # slowloris connections by when their next byte is due: bucket i every TICK
        self.wheel = [set() for _ in range(max(1, round(args.interval / TICK)))]
        self.started = time.time()
        self.ready_at = None

    def held(self):
        return sum(v for per in self.open.values() for v in per.values())

    async def slot(self, target, kind):
        """One connection of `kind`, opened again whenever it ends, until stopping."""
        name = target["name"]
        while not self.stopping.is_set():
            try:
                async with self.gate:
                    if self.stopping.is_set():
                        return
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(target["host"], target["port"]), 10)
            except (OSError, asyncio.TimeoutError) as e:
                why = type(e).__name__ if not isinstance(e, OSError) else (os.strerror(e.errno) if e.errno else str(e))
                self.connect_errors[name][why] += 1
                await self.pause(1.0)
                continue
            if self.stopping.is_set():
                writer.transport.abort()
                return
            rec = {"target": name, "kind": kind, "opened": time.time(), "first_byte": None,
                   "answered": None, "closed": None, "sent": 0, "got": "", "end": ""}
            self.writers.add(writer)
            self.open[name][kind] += 1
            self.opened += 1
            if not self.ready.is_set() and self.held() >= self.total:
                self.ready_at = time.time()
                self.ready.set()
            try:
                if kind == "slow":
                    await self.trickle(rec, reader, writer, TRICKLES[target["proto"]]())
                else:
                    await self.wait_end(rec, reader)
            except (ConnectionError, OSError) as e:
                rec["end"] = type(e).__name__
            finally:
                self.open[name][kind] -= 1
                self.writers.discard(writer)
                writer.close()
            if self.stopping.is_set():
                return
            rec["closed"] = time.time()
            self.closes.append(rec)

    async def pause(self, seconds):
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def wait_end(self, rec, reader):
        """Reads until the server ends the connection, noting its first answer."""
        while True:
            data = await reader.read(4096)
            if not data:
                rec["end"] = "eof"
                return
            if rec["answered"] is None:
                rec["answered"] = time.time()
                rec["got"] = data.split(b"\r\n", 1)[0][:80].decode("latin-1")

    async def trickle(self, rec, reader, writer, stream):
        """Joins the trickler's wheel at a random place, and waits for the server's end."""
        entry = Trickled(rec, writer, stream)
        bucket = self.wheel[random.randrange(len(self.wheel))]
        bucket.add(entry)
        try:
            await self.wait_end(rec, reader)
        finally:
            bucket.discard(entry)

    async def trickler(self):
        """Every TICK, one byte to each slowloris connection of the wheel's next bucket: each
        gets a byte every --interval seconds, with one timer for all of them."""
        tick = self.args.interval / len(self.wheel)
        at, i = time.monotonic(), 0
        while not self.stopping.is_set():
            for t in list(self.wheel[i]):
                if t.writer.is_closing():
                    continue
                t.writer.write(bytes([next(t.stream)]))
                t.rec["sent"] += 1
                if t.rec["first_byte"] is None:
                    t.rec["first_byte"] = time.time()
            i = (i + 1) % len(self.wheel)
            at += tick
            await asyncio.sleep(max(0.0, at - time.monotonic()))

    async def sample(self):
        last_status = time.monotonic()
        while not self.stopping.is_set():
            self.timeline.append([round(time.time(), 3),
                                  {n: [per["idle"], per["slow"]] for n, per in self.open.items()}])
            if time.monotonic() - last_status >= self.args.status_every:
                last_status = time.monotonic()
                status = ", ".join(f"{n} {per['idle']} idle + {per['slow']} slow" for n, per in self.open.items())
                print(f"[holder] held {self.held()}: {status}; closed by the servers so far: {len(self.closes)}",
                      file=sys.stderr, flush=True)
            await self.pause(self.args.sample)

    async def run(self):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        tasks = [asyncio.create_task(self.slot(t, kind))
                 for t in self.targets for kind in KINDS
                 for _ in range(self.assigned[t["name"]][kind])]
        sampler = asyncio.create_task(self.sample())
        trickler = asyncio.create_task(self.trickler())
        if self.total == 0:
            self.ready_at = time.time()
            self.ready.set()
        try:
            await asyncio.wait_for(self.ready.wait(), self.args.ready_timeout)
        except asyncio.TimeoutError:
            pass
        if not self.stopping.is_set():
            print(f"READY held={self.held()} of={self.total}", flush=True)
        if self.args.hold is not None:
            await self.pause(self.args.hold)
            self.stopping.set()
        await self.stopping.wait()
        stopped = time.time()
        for w in list(self.writers):
            w.transport.abort()
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        sampler.cancel()
        trickler.cancel()
        return stopped

    def report(self, stopped, nofile):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "targets": [dict(t, **self.assigned[t["name"]]) for t in self.targets],
            "interval_s": self.args.interval,
            "started": self.started,
            "ready_at": self.ready_at,
            "stopped": stopped,
            "total": self.total,
            "opened": self.opened,
            "rlimit_nofile": list(nofile),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "max_rss_kb": usage.ru_maxrss,
            "timeline": self.timeline,
            "closes": self.closes,
            "connect_errors": {n: dict(c) for n, c in self.connect_errors.items()},
        }


def summary(rep):
    """A few lines for people: how many were held, and what the servers closed and when."""
    lines = []
    ready = rep["ready_at"]
    took = f"{ready - rep['started']:.1f} s" if ready else "never (short of the total)"
    peak = max((sum(sum(v) for v in per.values()) for _, per in rep["timeline"]), default=0)
    lines.append(f"held up to {peak} of {rep['total']} connections (all open after {took}); "
                 f"{rep['opened']} opened in {rep['stopped'] - rep['started']:.1f} s; CPU {rep['cpu_s']} s")
    for t in rep["targets"]:
        for kind in KINDS:
            mine = [c for c in rep["closes"] if c["target"] == t["name"] and c["kind"] == kind]
            if not mine:
                lines.append(f"  {t['name']:<8} {kind}: {t[kind]} held, none closed by the server")
                continue
            start = "first_byte" if kind == "slow" else "opened"
            ages = sorted((c["answered"] or c["closed"]) - (c[start] or c["opened"]) for c in mine)
            got = Counter(c["got"] or f"(nothing, {c['end']})" for c in mine)
            what = "; ".join(f"{n}x {g!r}" for g, n in got.most_common(3))
            lines.append(f"  {t['name']:<8} {kind}: {t[kind]} held, {len(mine)} closed by the server, "
                         f"{ages[0]:.1f}/{ages[len(ages) // 2]:.1f}/{ages[-1]:.1f} s (min/median/max) "
                         f"after their {'first byte' if kind == 'slow' else 'connect'}: {what}")
    for name, errs in rep["connect_errors"].items():
        lines.append(f"  {name:<8} connect errors: {errs}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=parse_target, action="append", required=True,
                   help="NAME=HOST:PORT/PROTO (http or redis); repeat for each port")
    p.add_argument("--idle", type=int, default=10000, help="idle connections, spread over the targets")
    p.add_argument("--slow", type=int, default=1000, help="slowloris connections, spread over the targets")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between two trickled bytes")
    p.add_argument("--connect-concurrency", type=int, default=256, help="connects under way at once")
    p.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for every connection")
    p.add_argument("--hold", type=float, default=None, help="stop after this many seconds once ready")
    p.add_argument("--sample", type=float, default=0.5, help="seconds between timeline samples")
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines on stderr")
    p.add_argument("--report", default="-", help="where the JSON report goes (- for stdout)")
    args = p.parse_args()
    if args.idle < 0 or args.slow < 0 or args.interval <= 0 or args.connect_concurrency < 1:
        p.error("--idle and --slow must be >= 0, --interval > 0, --connect-concurrency >= 1")
    nofile = raise_nofile(args.idle + args.slow + 64)
    holder = Holder(args)
    stopped = asyncio.run(holder.run())
    rep = holder.report(stopped, nofile)
    print(summary(rep), file=sys.stderr, flush=True)
    text = json.dumps(rep)
    if args.report == "-":
        print(text, flush=True)
    else:
        with open(args.report, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
