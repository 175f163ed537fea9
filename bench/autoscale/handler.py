"""The autoscale bench's service: a sleep-based HTTP handler, Python standard library only.

GET /healthz answers 200 at once; any other GET sleeps SLEEP_MS (default 50) and answers
200 with a small body. At most SLOTS (default 4) requests sleep at a time; the others wait
for a slot, so one instance serves 4 requests at a time. HTTP/1.1 keep-alive with
Content-Length. Listens on 127.0.0.1:$PORT. Few imports, so that it starts fast.
"""
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["PORT"])
SLEEP = int(os.environ.get("SLEEP_MS", "50")) / 1000.0
SLOTS = threading.BoundedSemaphore(int(os.environ.get("SLOTS", "4")))
BODY = ("served by port %d\n" % PORT).encode()
HEALTHY = b"ok\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are two writes: without TCP_NODELAY, Nagle holds the body back
    # until the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(HEALTHY)
            return
        with SLOTS:
            time.sleep(SLEEP)
        self.reply(BODY)

    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # the default backlog of 5 drops SYNs when the gateway opens many connections at once
    request_queue_size = 1024


Server(("127.0.0.1", PORT), Handler).serve_forever()
