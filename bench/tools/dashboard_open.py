#!/usr/bin/env python3
"""Keeps strata's dashboard open and live while a benchmark runs (bench/gateway.sh,
DASHBOARD=browser or DASHBOARD=feed).

    dashboard_open.py browser|feed URL SERVICE

URL is the dashboard's address as `strata up` prints it (http://API/ui#token=...),
SERVICE the service whose requests the benchmark sends. One command a line on stdin, one
answer a line on stdout:

  open   browser: Debian's Chromium (headless, through Playwright for Python, started
         once) loads the page and waits until it is live and draws SERVICE's request
         chart; feed: a client opens the page's live feed (GET /v1/stream with the
         token) and reads it on a thread, waiting for the first snapshot.
         Answers `opened requests=N` (the service's relayed requests so far).
  close  answers `closed requests=N snapshots=S`: the service's relayed requests as the
         page last drew them (browser) or the last snapshot said (feed), and for the feed
         the snapshots read while open; then leaves the page for about:blank (the browser
         stays, idle) or closes the feed.
  quit   ends.

So the benchmark can show that the dashboard was live during the run: the requests it
counted while open match what the load generator sent, less at most its last second.
"""

import http.client
import json
import socket
import sys
import threading
import urllib.parse

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def answer(line):
    print(line, flush=True)


class Browser:
    def __init__(self, url, service):
        from playwright.sync_api import sync_playwright

        self.url, self.service = url, service
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 1000})
        self.chart = f'figure[data-service="{service}"]'

    def open(self):
        # The token leaves the address once read; the tab keeps it, so each open is the
        # address as printed.
        self.page.goto(self.url)
        self.page.wait_for_selector('#link[data-state="live"]', timeout=30_000)
        self.page.wait_for_selector(self.chart, timeout=30_000)
        return f"opened requests={self.page.get_attribute(self.chart, 'data-requests')}"

    def close(self):
        requests = self.page.get_attribute(self.chart, "data-requests")
        self.page.goto("about:blank")
        return f"closed requests={requests} snapshots=-"

    def quit(self):
        self.browser.close()
        self.playwright.stop()


class Feed:
    def __init__(self, url, service):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.token = urllib.parse.parse_qs(parts.fragment)["token"][0]
        self.service = service
        self.conn = None

    def open(self):
        self.snapshots, self.requests = 0, None
        self.first = threading.Event()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self.conn.request("GET", "/v1/stream", headers={"Authorization": "Bearer " + self.token})
        self.sock = self.conn.sock
        reply = self.conn.getresponse()
        if reply.status != 200:
            raise SystemExit(f"the stream answered {reply.status}: {reply.read()[:200]!r}")
        self.thread = threading.Thread(target=self.read, args=(reply,), daemon=True)
        self.thread.start()
        if not self.first.wait(30):
            raise SystemExit("no snapshot within 30 s")
        return f"opened requests={self.requests}"

    def read(self, reply):
        event = None
        try:
            for raw in reply:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "snapshot":
                    relayed = json.loads(line[6:])["relay"].get(self.service)
                    self.requests = sum(relayed["classes"]) + relayed["unanswered"] if relayed else 0
                    self.snapshots += 1
                    self.first.set()
        except Exception:  # noqa: BLE001 - the socket shut by `close`, mid-read
            pass

    def close(self):
        line = f"closed requests={self.requests} snapshots={self.snapshots}"
        self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.thread.join(5)
        return line

    def quit(self):
        pass


def main():
    kind, url, service = sys.argv[1], sys.argv[2], sys.argv[3]
    client = Browser(url, service) if kind == "browser" else Feed(url, service)
    for line in sys.stdin:
        command = line.strip()
        if command == "open":
            answer(client.open())
        elif command == "close":
            answer(client.close())
        elif command == "quit":
            break
    client.quit()


if __name__ == "__main__":
    main()
