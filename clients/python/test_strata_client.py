"""Tests of strata_client's sync Client against a live node: STRATA_URL=http://127.0.0.1:PORT.

    STRATA_URL=http://127.0.0.1:7070 python3 -m unittest -v clients/python/test_strata_client.py

They import the installed package, else the one beside this file (the source tree).
Skipped when STRATA_URL is unset. crates/strata/tests/python_client.rs starts a node and
runs them. Each test uses queues, keys and blobs of its own (a fresh random suffix), so
the tests are independent and can run against a node that has run them before. With
STRATA_TEST_CALL_SERVICE set to a service running the test member
(crates/strata/tests/fixtures/member.py) on 2 or more ready instances, call() is tested
too. The read-through tests use the cache named by STRATA_TEST_CACHE, else the first one
the node's manifest declares under `caches` (python_client.rs declares "hist" over
namespace "history"); they count its loads, so its ttl_ms must outlast a test.
"""
import hashlib
import http.client
import http.server
import io
import json
import os
import socket
import sys
import tempfile
import threading
import time
import unittest
import uuid

try:
    import strata_client
except ImportError:  # not installed: the package beside this file, in the source tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import strata_client

from strata_client import (BlobStream, Client, ConflictError, Entry, Message,  # noqa: E402
                           StrataError, parse_push)

STRATA_URL = os.environ.get("STRATA_URL")
# Where the package must have been imported from (python_client.rs installs it there
# with pip): the tests then check the installed package, not the source tree.
INSTALLED_AT = os.environ.get("STRATA_TEST_CLIENT_INSTALLED_AT")
CALL_SERVICE = os.environ.get("STRATA_TEST_CALL_SERVICE")
READ_THROUGH = os.environ.get("STRATA_TEST_CACHE")


NO_NODE = ("STRATA_URL is not set: these tests need a running strata node "
           "(STRATA_URL=http://127.0.0.1:PORT, the node API of `strata up`)")


@unittest.skipUnless(STRATA_URL, NO_NODE)
class LiveTest(unittest.TestCase):
    """Gives each test a client of the node at STRATA_URL."""

    def setUp(self):
        self.client = Client(STRATA_URL, timeout=15)
        self.addCleanup(self.client.close)

    def assertError(self, status, fn, *args, code=None, **kwargs):
        with self.assertRaises(StrataError) as cm:
            fn(*args, **kwargs)
        err = cm.exception
        self.assertEqual(err.status, status, f"expected {status}, got {err.status}: {err.message}")
        self.assertTrue(err.message, "the error carries the server's message")
        self.assertTrue(err.code, f"the error carries the body's code: {err.body!r}")
        if code is not None:
            self.assertEqual(err.code, code, err.message)
        return err


class QueueTest(LiveTest):
    """Also gives each test fresh queue names."""

    def setUp(self):
        super().setUp()
        self.suffix = uuid.uuid4().hex[:8]

    def name(self, what):
        """A queue or group name of this test alone."""
        return f"py-{what}-{self.suffix}"

    def new_queue(self, what="q", **config):
        queue = self.name(what)
        self.assertTrue(self.client.create_queue(queue, **config), f"{queue} is new")
        return queue

    def group_stats(self, queue, group):
        stats = self.client.stats(queue)
        for g in stats.get("groups", []):
            if g["name"] == group:
                return g
        self.fail(f"no group {group} in the stats of {queue}: {stats}")


class Basics(QueueTest):
    def test_create_is_idempotent_and_listed(self):
        queue = self.new_queue(lease_ms=5000)
        self.assertFalse(self.client.create_queue(queue), "a second create finds it")
        stats = self.client.stats(queue)
        self.assertEqual(stats["name"], queue)
        self.assertEqual(stats["messages"], 0)
        self.assertEqual(stats["next_offset"], stats["first_offset"])
        self.assertIn(queue, [q["name"] for q in self.client.queues()])

    def test_publish_fetch_ack_round_trip(self):
        queue, group = self.new_queue(), self.name("g")
        binary = bytes(range(256))  # not UTF-8: travels as body_base64
        p1 = self.client.publish(queue, "hello")
        p2 = self.client.publish(queue, binary, reply_to="queue:elsewhere", correlation_id="c-1")
        p3 = self.client.publish(queue, {"order": 17, "item": "B0001"})
        self.assertFalse(p1.duplicate)
        self.assertEqual([p2.offset, p3.offset], [p1.offset + 1, p1.offset + 2])

        msgs = self.client.fetch(queue, group, max=10)
        self.assertEqual([m.offset for m in msgs], [p1.offset, p2.offset, p3.offset])
        for m in msgs:
            self.assertIsInstance(m, Message)
            self.assertEqual(m.deliveries, 1)
            self.assertIsInstance(m.timestamp_ms, int)
            self.assertLess(abs(m.timestamp_ms - time.time() * 1000), 600_000, "a wall-clock time in ms")
        self.assertEqual(msgs[0].body, b"hello")
        self.assertEqual(msgs[0].text, "hello")
        self.assertIsNone(msgs[0].reply_to)
        self.assertIsNone(msgs[0].correlation_id)
        self.assertEqual(msgs[1].body, binary)
        self.assertEqual(msgs[1].reply_to, "queue:elsewhere")
        self.assertEqual(msgs[1].correlation_id, "c-1")
        self.assertEqual(msgs[2].json(), {"order": 17, "item": "B0001"})

        self.assertEqual(self.group_stats(queue, group)["leased"], 3)
        answer = self.client.ack(queue, group, msgs)
        self.assertEqual(answer["acked"], 3)
        self.assertEqual(self.client.fetch(queue, group, max="all"), [], "nothing left for the group")
        g = self.group_stats(queue, group)
        self.assertEqual((g["unread"], g["leased"], g["backlog"]), (0, 0, 0))

    def test_groups_read_independently(self):
        queue = self.new_queue()
        self.client.publish(queue, "one")
        a, b = self.name("a"), self.name("b")
        (ma,) = self.client.fetch(queue, a)
        self.client.ack(queue, a, [ma])
        (mb,) = self.client.fetch(queue, b)
        self.assertEqual((mb.offset, mb.body, mb.deliveries), (ma.offset, b"one", 1),
                         "another group still gets the message its neighbour deleted")

    def test_fetch_max_and_max_bytes(self):
        queue, group = self.new_queue(), self.name("g")
        published = self.client.publish_batch(queue, [f"m{i}" * 100 for i in range(10)])
        self.assertEqual(len(published.offsets), 10)
        first = self.client.fetch(queue, group, max=3)
        self.assertEqual([m.offset for m in first], published.offsets[:3])
        small = self.client.fetch(queue, group, max="all", max_bytes=1)
        self.assertEqual([m.offset for m in small], published.offsets[3:4],
                         "max_bytes below one message still hands out one")
        rest = self.client.fetch(queue, group, max="all")
        self.assertEqual([m.offset for m in rest], published.offsets[4:])

    def test_publish_batch(self):
        queue, group = self.new_queue(), self.name("g")
        self.client.publish(queue, "first", dedupe_id="d-1")
        answer = self.client.publish_batch(queue, [
            "text", b"\xff\xfe bytes",
            {"body": {"json": True}, "correlation_id": "c-7"},
            {"body": "again", "dedupe_id": "d-1"},
        ])
        self.assertEqual(answer.duplicates, 1)
        self.assertEqual(len(answer.offsets), 4)
        msgs = self.client.fetch(queue, group, max="all")
        self.assertEqual([m.body for m in msgs], [b"first", b"text", b"\xff\xfe bytes", b'{"json":true}'])
        self.assertEqual(msgs[3].correlation_id, "c-7")
        self.assertEqual(answer.offsets[3], msgs[0].offset, "the duplicate answers the original's offset")

    def test_long_poll_wakes_on_publish(self):
        queue, group = self.new_queue(), self.name("g")
        publisher = Client(STRATA_URL)
        self.addCleanup(publisher.close)
        timer = threading.Timer(0.3, publisher.publish, (queue, "late"))
        timer.start()
        self.addCleanup(timer.cancel)
        started = time.monotonic()
        msgs = self.client.fetch(queue, group, wait_ms=5000)
        took = time.monotonic() - started
        self.assertEqual([m.body for m in msgs], [b"late"])
        self.assertLess(took, 4.5, "the fetch returned when the message came, not at its deadline")
        self.assertEqual(self.client.fetch(queue, group, wait_ms=200), [], "an empty long poll ends empty")

    def test_reconnects_after_a_dropped_connection(self):
        queue = self.new_queue()
        before = self.client.publish(queue, "before")
        sock = self.client._conn.sock
        self.assertIsNotNone(sock, "the connection is kept alive between calls")
        sock.shutdown(socket.SHUT_RDWR)  # as if the node had closed it while idle
        after = self.client.publish(queue, "after")
        self.assertEqual(after.offset, before.offset + 1, "nothing was published twice")
        self.assertIsNot(self.client._conn.sock, sock, "on a new connection")
        self.assertEqual(self.client.stats(queue)["messages"], 2)


class Delivery(QueueTest):
    def test_out_of_order_acks(self):
        queue, group = self.new_queue(), self.name("g")
        offsets = [self.client.publish(queue, f"m{i}").offset for i in range(5)]
        msgs = self.client.fetch(queue, group, max="all")
        self.assertEqual([m.offset for m in msgs], offsets)

        answer = self.client.ack(queue, group, [offsets[4], offsets[1], offsets[3]])
        self.assertEqual(answer["acked"], 3)
        g = self.group_stats(queue, group)
        self.assertEqual((g["leased"], g["backlog"]), (2, 2))

        again = self.client.ack(queue, group, [offsets[1], offsets[0]])
        self.assertEqual(again["acked"], 1, "offset 0 is deleted; offset 1 was already")
        self.assertEqual(again.get("ignored"), 1)
        self.assertEqual(self.client.delete(queue, group, offsets[2])["acked"], 1)
        g = self.group_stats(queue, group)
        self.assertEqual((g["unread"], g["leased"], g["backlog"]), (0, 0, 0))
        self.assertEqual(self.client.fetch(queue, group, max="all"), [])

    def test_nack_redelivers_with_a_raised_count(self):
        queue, group = self.new_queue(), self.name("g")
        offset = self.client.publish(queue, "work").offset
        (m1,) = self.client.fetch(queue, group)
        self.assertEqual((m1.offset, m1.deliveries), (offset, 1))
        self.assertEqual(self.client.nack(queue, group, [m1])["nacked"], 1)
        (m2,) = self.client.fetch(queue, group)
        self.assertEqual((m2.offset, m2.deliveries, m2.body), (offset, 2, b"work"))
        self.client.ack(queue, group, [m2])
        self.assertEqual(self.client.fetch(queue, group), [])

    def test_a_dead_letter_says_where_it_came_from(self):
        queue, group = self.new_queue(max_deliveries=1), self.name("g")
        offset = self.client.publish(queue, "poison").offset
        (m1,) = self.client.fetch(queue, group)
        self.assertIsNone(m1.dead_letter)
        self.client.nack(queue, group, [m1])
        self.assertEqual(self.client.fetch(queue, group), [], "moved to the dead-letter queue")
        (dead,) = self.client.fetch(queue + ".dlq", self.name("audit"))
        self.assertEqual(dead.body, b"poison")
        self.assertEqual(dead.dead_letter, {"group": group, "offset": offset,
                                            "timestamp_ms": m1.timestamp_ms, "deliveries": 1})

    def test_redeliveries_come_first(self):
        queue, group = self.new_queue(), self.name("g")
        offsets = [self.client.publish(queue, f"m{i}").offset for i in range(3)]
        self.client.fetch(queue, group, max=2)
        self.client.nack(queue, group, [offsets[1], offsets[0]])
        msgs = self.client.fetch(queue, group, max="all")
        self.assertEqual([(m.offset, m.deliveries) for m in msgs],
                         [(offsets[0], 2), (offsets[1], 2), (offsets[2], 1)])

    def test_an_expired_lease_is_redelivered(self):
        queue, group = self.new_queue(), self.name("g")
        offset = self.client.publish(queue, "slow").offset
        (m1,) = self.client.fetch(queue, group, lease_ms=200)
        self.assertEqual(m1.deliveries, 1)
        deadline = time.monotonic() + 10
        while True:
            msgs = self.client.fetch(queue, group, wait_ms=500)
            if msgs:
                break
            self.assertLess(time.monotonic(), deadline, "the message came back after its lease")
        self.assertEqual((msgs[0].offset, msgs[0].deliveries), (offset, 2))

    def test_dedupe_answers_the_original_offset(self):
        queue, group = self.new_queue(), self.name("g")
        first = self.client.publish(queue, "order 17", dedupe_id="order-17")
        again = self.client.publish(queue, "order 17, sent again", dedupe_id="order-17")
        self.assertFalse(first.duplicate)
        self.assertTrue(again.duplicate)
        self.assertEqual(again.offset, first.offset)
        other = self.client.publish(queue, "order 18", dedupe_id="order-18")
        self.assertEqual(other.offset, first.offset + 1, "the duplicate stored nothing")
        self.assertEqual([m.body for m in self.client.fetch(queue, group, max="all")],
                         [b"order 17", b"order 18"])


class Replies(QueueTest):
    def consumer(self, queue, group, handle, count=1):
        """A thread with its own client that answers `count` messages of the queue."""
        errors = []

        def run():
            try:
                with Client(STRATA_URL) as c:
                    deadline = time.monotonic() + 15
                    done = 0
                    while done < count and time.monotonic() < deadline:
                        for m in c.fetch(queue, group, wait_ms=500):
                            handle(c, m)
                            c.ack(queue, group, [m])
                            done += 1
            except Exception as e:  # reported by the test
                errors.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, errors

    def test_request_reply_round_trip(self):
        queue, group = self.new_queue(), self.name("g")
        seen = []

        def handle(c, m):
            seen.append(m)
            c.reply(m, m.text.upper())

        t, errors = self.consumer(queue, group, handle, count=2)
        r1 = self.client.request(queue, "ping", timeout_ms=10000)
        r2 = self.client.request(queue, b"pong", timeout_ms=10000, correlation_id="mine-2")
        t.join(20)
        self.assertEqual(errors, [])
        self.assertEqual((r1.body, r1.text), (b"PING", "PING"))
        self.assertEqual(r2.text, "PONG")
        self.assertEqual(r2.correlation_id, "mine-2", "a correlation id given is kept")
        self.assertTrue(r1.correlation_id, "strata made one up")
        self.assertEqual([m.offset for m in seen], [r1.offset, r2.offset])
        self.assertTrue(seen[0].reply_to.startswith("inbox:"), seen[0].reply_to)
        self.assertEqual(seen[0].correlation_id, r1.correlation_id)

    def test_request_without_a_consumer_times_out_and_stays_published(self):
        queue, group = self.new_queue(), self.name("g")
        started = time.monotonic()
        self.assertError(504, self.client.request, queue, "anyone?", timeout_ms=300, code="no_reply")
        self.assertLess(time.monotonic() - started, 10)
        (m,) = self.client.fetch(queue, group)
        self.assertEqual(m.body, b"anyone?")
        self.assertTrue(m.reply_to.startswith("inbox:"))
        self.assertError(404, self.client.reply, m, "too late")

    def test_reply_to_a_queue(self):
        queue, results, group = self.new_queue("work"), self.new_queue("results"), self.name("g")
        self.client.publish(queue, "job", reply_to=f"queue:{results}", correlation_id="c-9")
        t, errors = self.consumer(queue, group, lambda c, m: c.reply(m, b"done"))
        t.join(20)
        self.assertEqual(errors, [])
        (r,) = self.client.fetch(results, group, wait_ms=2000)
        self.assertEqual((r.body, r.correlation_id), (b"done", "c-9"))

    def test_reply_needs_a_reply_to(self):
        with self.assertRaises(ValueError):
            self.client.reply(Message(offset=1, body=b"x"), "nobody asked")


class Errors(QueueTest):
    def test_unknown_queue_is_404(self):
        missing = self.name("missing")
        err = self.assertError(404, self.client.stats, missing, code="not_found")
        self.assertIn(str(err.status), str(err))
        self.assertIn("not_found", str(err))
        self.assertError(404, self.client.publish, missing, "x", code="not_found")
        self.assertError(404, self.client.fetch, missing, "g")
        self.assertError(404, self.client.ack, missing, "g", [0])

    def test_a_token_the_node_did_not_give_out_is_401(self):
        with Client(STRATA_URL, timeout=15, token="0" * 64) as stranger:
            err = self.assertError(401, stranger.stats, self.name("q"), code="unauthorized")
        self.assertIn("token", err.message)

    def test_bad_max_is_400(self):
        queue = self.new_queue()
        self.client.publish(queue, "x")
        self.assertError(400, self.client.fetch, queue, "g", max=0, code="bad_request")
        self.assertError(400, self.client.fetch, queue, "g", max=-1)
        self.assertError(400, self.client.fetch, queue, "g", max="lots")

    def test_bad_ids_are_400(self):
        queue = self.new_queue()
        self.assertError(400, self.client.ack, queue, "g", ["twelve"])
        self.assertError(400, self.client.delete, queue, "g", "twelve")

    def test_delete_of_an_offset_not_leased_is_404(self):
        queue, group = self.new_queue(), self.name("g")
        offset = self.client.publish(queue, "x").offset
        self.assertError(404, self.client.delete, queue, group, offset)  # never fetched
        self.client.fetch(queue, group)
        self.assertEqual(self.client.delete(queue, group, offset)["acked"], 1)
        self.assertError(404, self.client.delete, queue, group, offset)  # already deleted

    def test_a_body_over_max_message_bytes_is_413(self):
        queue, group = self.new_queue(max_message_bytes=16), self.name("g")
        self.assertEqual(self.client.publish(queue, b"x" * 16).offset, self.client.stats(queue)["first_offset"])
        self.assertError(413, self.client.publish, queue, b"x" * 17, code="payload_too_large")
        self.assertError(413, self.client.publish_batch, queue, ["ok", "y" * 100])
        self.assertEqual([m.body for m in self.client.fetch(queue, group, max="all")], [b"x" * 16],
                         "a refused batch stores none of its messages")

    def test_a_bad_queue_config_is_400(self):
        self.assertError(400, self.client.create_queue, self.name("bad"), max_message_bytes=0)
        self.assertError(400, self.client.create_queue, self.name("bad"), no_such_field=1)
        self.assertError(400, self.client.create_queue, "Not A Queue Name")


@unittest.skipUnless(CALL_SERVICE, "STRATA_TEST_CALL_SERVICE names no service to call")
class Calls(LiveTest):
    def test_call_reaches_a_member(self):
        r = self.client.call(CALL_SERVICE, "/hello?x=1")
        self.assertEqual(r.status, 200)
        doc = r.json()
        self.assertEqual((doc["method"], doc["path"]), ("GET", "/hello?x=1"))
        r = self.client.call(CALL_SERVICE, "/echo", method="POST", body={"a": 1})
        self.assertEqual((r.json()["method"], r.json()["body_bytes"]), ("POST", len(b'{"a": 1}')))

    def ready_members(self, service):
        """The ids of the service's ready instances, from /v1/ps."""
        ps = self.client._json("GET", "/v1/ps")
        (svc,) = [s for s in ps["services"] if s["name"] == service]
        return sorted(i["id"] for i in svc["instances"] if i["state"] == "ready")

    def test_call_all_asks_every_member_once(self):
        members = self.ready_members(CALL_SERVICE)
        self.assertGreaterEqual(len(members), 2, f"{CALL_SERVICE} needs 2 or more ready members "
                                                 f"to show each is asked once: {members}")
        request_id = f"py-all-{uuid.uuid4().hex[:8]}"
        replies = self.client.call(CALL_SERVICE, "/hello", mode="all",
                                   headers={"X-Request-Id": request_id}).json()
        self.assertIsInstance(replies, list)
        self.assertEqual(sorted(r["instance"] for r in replies), members,
                         f"one reply from each ready member, none twice: {replies}")
        for r in replies:
            self.assertEqual(r["status"], 200, r)
            seen = json.loads(r["body"])  # what the member itself says it answered
            self.assertEqual((seen["instance"], seen["request_id"], seen["path"]),
                             (r["instance"], request_id, "/hello"), r)

    def test_unknown_service_is_404(self):
        err = self.assertError(404, self.client.call, "no-such-service", "/", code="not_found")
        self.assertIn("no-such-service", err.message)


def new_trace():
    """A fresh trace id and a span id of the caller's, and the traceparent naming them."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def spans_of(client, trace_id, n):
    """The spans the node keeps of trace `trace_id`, once there are `n` or more (or
    after 10 s, whatever there is), in the order the node lists them."""
    deadline = time.monotonic() + 10
    while True:
        try:
            spans = client._json("GET", f"/v1/traces?id={trace_id}")["answer"][0]["spans"]
        except StrataError as e:
            if e.status != 404:
                raise
            spans = []
        if len(spans) >= n or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def span_parts(traceparent):
    """(trace id, span id) of a traceparent."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


class Traces(QueueTest):
    """A traced view's calls are spans of the caller's trace (docs/traces.md)."""

    @unittest.skipUnless(CALL_SERVICE, "STRATA_TEST_CALL_SERVICE names no service to call")
    def test_a_traced_call_is_a_span_of_the_callers_trace(self):
        trace_id, caller, traceparent = new_trace()
        traced = self.client.traced(traceparent, tracestate="vendor=abc")
        self.assertEqual(traced.trace, strata_client.Trace(traceparent, "vendor=abc"))
        self.assertEqual(traced.call(CALL_SERVICE, "/hello").status, 200)
        (call,) = spans_of(self.client, trace_id, 1)
        self.assertEqual((call["kind"], call["service"], call["parent_id"]), ("call", CALL_SERVICE, caller), call)
        # The client it was made from is not traced, and the two share one connection.
        self.assertIsNone(self.client.trace)
        self.assertIs(traced._conn, self.client._conn)
        self.client.call(CALL_SERVICE, "/hello")
        self.client.traced(None).call(CALL_SERVICE, "/hello")
        traced.kv_put(self.name("ns"), "k", "v")
        spans = spans_of(self.client, trace_id, 2)
        self.assertEqual([s["kind"] for s in spans], ["call", "store"], spans)
        self.assertEqual(spans[1]["parent_id"], caller)

    def test_traced_from_a_members_request_headers(self):
        trace_id, caller, traceparent = new_trace()
        queue = self.new_queue()
        for headers in ({"Traceparent": traceparent}, [("TRACEPARENT", traceparent)],
                        http.client.parse_headers(io.BytesIO(f"traceparent: {traceparent}\r\n\r\n".encode()))):
            self.client.traced_from(headers).publish(queue, "x")
        spans = spans_of(self.client, trace_id, 3)
        self.assertEqual([(s["kind"], s["parent_id"]) for s in spans], [("publish", caller)] * 3, spans)
        for untraced in ({}, {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"},
                         {"traceparent": traceparent.upper()}):
            self.assertIsNone(self.client.traced_from(untraced).trace, untraced)

    def test_a_traced_publish_carries_the_trace_to_the_fetched_message(self):
        trace_id, caller, traceparent = new_trace()
        queue, group = self.new_queue(), self.name("g")
        self.client.traced(traceparent).publish(queue, "traced")
        self.client.publish(queue, "not traced")
        m1, m2 = self.client.fetch(queue, group, max=2)
        self.assertIsNone(m2.traceparent, "a publish without a trace carries none")
        self.assertEqual(span_parts(m1.traceparent)[0], trace_id, m1.traceparent)
        (publish,) = spans_of(self.client, trace_id, 1)
        self.assertEqual((publish["kind"], publish["service"], publish["parent_id"]), ("publish", queue, caller))
        self.assertEqual(span_parts(m1.traceparent)[1], publish["span_id"], "the message names the publish span")
        # The consumer continues the message's trace: its ack is a child of the publish.
        self.client.traced(m1.traceparent).ack(queue, group, [m1, m2])
        spans = spans_of(self.client, trace_id, 2)
        self.assertEqual([(s["kind"], s["parent_id"]) for s in spans],
                         [("publish", caller), ("ack", publish["span_id"])], spans)

    def test_a_reply_to_a_traced_request_carries_the_trace_back(self):
        trace_id, caller, traceparent = new_trace()
        queue, group = self.new_queue(), self.name("g")
        t, errors = Replies.consumer(self, queue, group, lambda c, m: c.reply(m, m.text.upper()))
        r = self.client.traced(traceparent).request(queue, "ping", timeout_ms=10000)
        t.join(20)
        self.assertEqual(errors, [])
        self.assertEqual(r.text, "PING")
        publish, reply = spans_of(self.client, trace_id, 2)
        self.assertEqual((publish["kind"], publish["parent_id"]), ("publish", caller))
        # The consumer's client was not traced: reply() passed the message's traceparent.
        self.assertEqual((reply["kind"], reply["parent_id"]), ("reply", publish["span_id"]), reply)
        self.assertEqual(r.traceparent, f"00-{trace_id}-{reply['span_id']}-01", "the reply names its span")
        untraced = Replies.consumer(self, queue, group, lambda c, m: c.reply(m, "pong"))
        self.assertIsNone(self.client.request(queue, "ping", timeout_ms=10000).traceparent)
        untraced[0].join(20)

    def test_a_malformed_traceparent_is_refused_before_sending(self):
        good = new_trace()[2]
        for bad in ("", "junk", good.upper(), good[:-1], "ff" + good[2:], good + "-more",
                    "00-" + "0" * 32 + good[35:], good[:36] + "0" * 16 + good[52:], 17):
            with self.assertRaises(ValueError, msg=repr(bad)):
                self.client.traced(bad)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            self.client.traced(good, tracestate="a=1\r\nX-Injected: 1")
        with self.assertRaises(ValueError):
            self.client.traced(None, tracestate="a=1")
        self.assertEqual(self.client.traced("01" + good[2:] + "-future").trace.traceparent,
                         "01" + good[2:] + "-future", "a later version may carry more")


class StateTest(LiveTest):
    """Gives each test a namespace and keys of its own."""

    def setUp(self):
        super().setUp()
        self.suffix = uuid.uuid4().hex[:8]
        self.ns = f"py-{self.suffix}"

    def key(self, what="k"):
        return f"{what}-{self.suffix}"


class KeyValue(StateTest):
    def test_put_get_delete_round_trip(self):
        binary = bytes(range(256))
        v1 = self.client.kv_put(self.ns, "bin", binary)
        self.assertIsInstance(v1, int)
        got = self.client.kv_get(self.ns, "bin")
        self.assertIsInstance(got, Entry)
        value, version = got  # unpacks as a tuple
        self.assertEqual((value, version), (binary, v1))

        v2 = self.client.kv_put(self.ns, "doc", {"items": [1, 2]})
        self.assertGreater(v2, v1, "versions come from one counter: they strictly increase")
        self.assertEqual(self.client.kv_get(self.ns, "doc").json(), {"items": [1, 2]})
        self.client.kv_put(self.ns, "text", "héllo")
        self.assertEqual(self.client.kv_get(self.ns, "text").text, "héllo")

        self.assertTrue(self.client.kv_delete(self.ns, "bin"))
        self.assertIsNone(self.client.kv_get(self.ns, "bin"), "gone once deleted")
        self.assertFalse(self.client.kv_delete(self.ns, "bin"), "a second delete finds nothing")
        self.assertIsNone(self.client.kv_get(self.ns, "never-written"))

    def test_keys_with_slashes_and_spaces(self):
        key = "carts/alice smith/ü?#&"
        version = self.client.kv_put(self.ns, key, b"x")
        self.assertEqual(self.client.kv_get(self.ns, key), (b"x", version))
        self.assertEqual([i["key"] for i in self.client.kv_iter(self.ns)], [key])
        self.assertTrue(self.client.kv_delete(self.ns, key))

    def test_namespaces_are_apart(self):
        other = self.ns + "-other"
        self.client.kv_put(self.ns, "k", b"mine")
        self.assertIsNone(self.client.kv_get(other, "k"))
        self.client.kv_put(other, "k", b"theirs")
        self.assertEqual(self.client.kv_get(self.ns, "k").value, b"mine")

    def test_compare_and_set(self):
        v1 = self.client.kv_put(self.ns, "counter", b"1")
        v2 = self.client.kv_put(self.ns, "counter", b"2", if_version=v1)
        self.assertGreater(v2, v1)
        with self.assertRaises(ConflictError) as cm:
            self.client.kv_put(self.ns, "counter", b"stale", if_version=v1)
        err = cm.exception
        self.assertIsInstance(err, StrataError)
        self.assertEqual((err.status, err.code, err.current), (412, "condition_failed", v2), err.message)
        self.assertEqual(self.client.kv_get(self.ns, "counter"), (b"2", v2), "a failed CAS writes nothing")

        with self.assertRaises(ConflictError) as cm:
            self.client.kv_put(self.ns, "missing", b"x", if_version=v2)
        self.assertIsNone(cm.exception.current, "no such key: current is None")
        self.assertIsNone(self.client.kv_get(self.ns, "missing"))

        with self.assertRaises(ConflictError) as cm:
            self.client.kv_delete(self.ns, "counter", if_version=v1)
        self.assertEqual(cm.exception.current, v2)
        self.assertTrue(self.client.kv_delete(self.ns, "counter", if_version=v2))
        with self.assertRaises(ValueError):
            self.client.kv_put(self.ns, "counter", b"x", if_version=v2, if_absent=True)

    def test_if_absent_creates_once(self):
        v = self.client.kv_put(self.ns, "once", b"first", if_absent=True)
        with self.assertRaises(ConflictError) as cm:
            self.client.kv_put(self.ns, "once", b"second", if_absent=True)
        self.assertEqual(cm.exception.current, v)
        self.assertEqual(self.client.kv_get(self.ns, "once"), (b"first", v))

    def test_concurrent_increments_with_cas_lose_nothing(self):
        self.client.kv_put(self.ns, "n", b"0")
        errors, conflicts = [], []

        def bump(times):
            try:
                with Client(STRATA_URL) as c:
                    for _ in range(times):
                        while True:
                            value, version = c.kv_get(self.ns, "n")
                            try:
                                c.kv_put(self.ns, "n", str(int(value) + 1), if_version=version)
                                break
                            except ConflictError:
                                conflicts.append(1)
            except Exception as e:  # reported by the test
                errors.append(e)

        threads = [threading.Thread(target=bump, args=(10,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(self.client.kv_get(self.ns, "n").value, b"40",
                         f"every increment counted ({len(conflicts)} conflicts retried)")

    def test_listing_in_pages(self):
        keys = [f"item-{i:02d}" for i in range(25)]
        for k in keys:
            self.client.kv_put(self.ns, k, k.encode())
        self.client.kv_put(self.ns, "other", b"not in the prefix")

        pages, after = [], None
        while True:
            page = self.client.kv_list(self.ns, prefix="item-", after=after, limit=10)
            pages.append([i["key"] for i in page["items"]])
            after = page["next"]
            if after is None:
                break
            self.assertLess(len(pages), 10, "the listing ends")
        self.assertEqual([len(p) for p in pages], [10, 10, 5])
        self.assertEqual(sum(pages, []), keys, "every key once, in byte order")
        item = self.client.kv_list(self.ns, prefix="item-", limit=1)["items"][0]
        self.assertEqual((item["key"], item["size"]), ("item-00", 7))
        self.assertIsInstance(item["version"], int)
        self.assertIsInstance(item["updated_ms"], int)

        self.assertEqual([i["key"] for i in self.client.kv_iter(self.ns, prefix="item-", page_size=10)], keys)
        self.assertEqual(len(list(self.client.kv_iter(self.ns))), 26)
        self.assertEqual(list(self.client.kv_iter(self.ns, prefix="nothing")), [])

    def test_bad_input_is_400(self):
        self.assertError(400, self.client.kv_list, self.ns, limit=0)


class Blobs(StateTest):
    def test_streams_a_5_mib_file_both_ways(self):
        body = os.urandom(5 << 20)
        with tempfile.TemporaryFile() as f:
            f.write(body)
            f.seek(0)
            meta = self.client.blob_put(self.ns, "big.bin", f, content_type="application/x-test")
        digest = hashlib.sha256(body).hexdigest()
        self.assertEqual((meta["size"], meta["etag"], meta["content_type"]),
                         (len(body), digest, "application/x-test"))
        self.assertIsInstance(meta["version"], int)

        got_meta, data = self.client.blob_get(self.ns, "big.bin")
        self.assertEqual(data, body)
        self.assertEqual(got_meta, {"size": len(body), "etag": digest,
                                    "content_type": "application/x-test", "version": meta["version"]})

        h, sizes = hashlib.sha256(), []
        with self.client.blob_open(self.ns, "big.bin") as stream:
            self.assertIsInstance(stream, BlobStream)
            self.assertEqual(stream.meta["etag"], digest)
            for block in stream.chunks(1 << 20):
                h.update(block)
                sizes.append(len(block))
        self.assertTrue(stream.closed)
        self.assertEqual(h.hexdigest(), digest)
        self.assertEqual(sum(sizes), len(body))
        self.assertGreater(len(sizes), 1, "read in pieces")

    def test_bodies_of_every_kind(self):
        cases = {
            "bytes": b"plain bytes",
            "str": "text, sent as UTF-8: ü",
            "bytesio": io.BytesIO(b"xx-from a seekable file object"),
            "generator": (bytes([i]) * 1000 for i in range(50)),  # sent chunked
            "unsized": Unsized(b"z" * 300_000),  # a file object of unknown size: chunked
        }
        cases["bytesio"].read(3)  # the body starts where the file is
        expected = {
            "bytes": b"plain bytes",
            "str": "text, sent as UTF-8: ü".encode(),
            "bytesio": b"from a seekable file object",
            "generator": b"".join(bytes([i]) * 1000 for i in range(50)),
            "unsized": b"z" * 300_000,
        }
        for name, data in cases.items():
            meta = self.client.blob_put(self.ns, name, data)
            want = expected[name]
            self.assertEqual((meta["size"], meta["etag"]), (len(want), hashlib.sha256(want).hexdigest()), name)
            self.assertEqual(meta["content_type"], "application/octet-stream")
            self.assertEqual(self.client.blob_get(self.ns, name)[1], want, name)
        with self.assertRaises(TypeError):
            self.client.blob_put(self.ns, "text-file", io.StringIO("not binary"))

    def test_replace_list_delete(self):
        first = self.client.blob_put(self.ns, "a.txt", b"one", content_type="text/plain")
        second = self.client.blob_put(self.ns, "a.txt", b"two", content_type="text/plain",
                                      if_version=first["version"])
        self.assertGreater(second["version"], first["version"])
        with self.assertRaises(ConflictError) as cm:
            self.client.blob_put(self.ns, "a.txt", b"three", if_absent=True)
        self.assertEqual(cm.exception.current, second["version"])
        self.assertEqual(self.client.blob_get(self.ns, "a.txt")[1], b"two")

        for i in range(3):
            self.client.blob_put(self.ns, f"dir/{i}.bin", bytes([i]) * i)
        page = self.client.blob_list(self.ns, prefix="dir/", limit=2)
        self.assertEqual([b["name"] for b in page["items"]], ["dir/0.bin", "dir/1.bin"])
        self.assertEqual(page["items"][1]["etag"], hashlib.sha256(b"\x01").hexdigest())
        rest = self.client.blob_list(self.ns, prefix="dir/", after=page["next"])
        self.assertEqual([b["name"] for b in rest["items"]], ["dir/2.bin"])
        self.assertIsNone(rest["next"])
        self.assertEqual([b["name"] for b in self.client.blob_iter(self.ns)],
                         ["a.txt", "dir/0.bin", "dir/1.bin", "dir/2.bin"])

        self.assertTrue(self.client.blob_delete(self.ns, "a.txt"))
        self.assertFalse(self.client.blob_delete(self.ns, "a.txt"))
        self.assertIsNone(self.client.blob_get(self.ns, "a.txt"))
        self.assertIsNone(self.client.blob_open(self.ns, "a.txt"))
        self.assertEqual(self.client.kv_get(self.ns, "a.txt"), None, "blobs and values are apart")

    def test_a_reader_keeps_the_body_it_opened(self):
        old, new = b"o" * (2 << 20), b"n" * 1000
        self.client.blob_put(self.ns, "swap", old)
        with self.client.blob_open(self.ns, "swap") as stream:
            first = stream.read(1000)
            self.client.blob_put(self.ns, "swap", new)
            rest = stream.read()
        self.assertEqual(first + rest, old)
        self.assertEqual(self.client.blob_get(self.ns, "swap")[1], new)

    def test_a_dropped_connection_resends_only_what_can_be_rewound(self):
        self.client.kv_put(self.ns, "warm", b"x")  # a kept-alive connection
        self.client._conn.sock.shutdown(socket.SHUT_RDWR)  # as if the node had closed it
        f = io.BytesIO(b"rewound and sent again")
        self.assertEqual(self.client.blob_put(self.ns, "seekable", f)["size"], 22)
        self.assertEqual(self.client.blob_get(self.ns, "seekable")[1], b"rewound and sent again")

        self.client._conn.sock.shutdown(socket.SHUT_RDWR)
        with self.assertRaises(OSError):
            self.client.blob_put(self.ns, "unsized", Unsized(b"read once"))
        self.assertIsNone(self.client.blob_get(self.ns, "unsized"), "nothing half-written")
        self.assertEqual(self.client.kv_get(self.ns, "warm").value, b"x", "the next call reconnects")


class Unsized:
    """A binary file object that knows neither its size nor how to seek."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def read(self, n=-1):
        return self._f.read(n)


class Cache(StateTest):
    def test_set_get_delete(self):
        key = self.key("raw")
        self.assertIsNone(self.client.cache_get(key))
        self.client.cache_set(key, b"\x00value")
        self.assertEqual(self.client.cache_get(key), b"\x00value")
        self.client.cache_set(key, {"json": 1})
        self.assertEqual(self.client.cache_get(key), b'{"json":1}')
        self.assertTrue(self.client.cache_delete(key))
        self.assertFalse(self.client.cache_delete(key))
        self.assertIsNone(self.client.cache_get(key))

    def test_ttl_expiry(self):
        key, keep = self.key("ttl"), self.key("keep")
        started = time.monotonic()
        self.client.cache_set(key, "soon gone", ttl_ms=1000)
        self.client.cache_set(keep, "stays")
        self.assertEqual(self.client.cache_get(key), b"soon gone")
        time.sleep(max(0.0, started + 1.2 - time.monotonic()))
        self.assertIsNone(self.client.cache_get(key), "a key read after its TTL is gone")
        self.assertEqual(self.client.cache_get(keep), b"stays", "no TTL: no expiry")
        self.assertError(400, self.client.cache_set, key, "x", ttl_ms=0)

    def test_stats_count_hits_and_misses(self):
        key = self.key("stats")
        before = self.client.cache_stats()
        self.client.cache_set(key, b"v")
        self.client.cache_get(key)
        self.client.cache_get(self.key("absent"))
        after = self.client.cache_stats()
        self.assertGreaterEqual(after["total"]["hits"], before["total"]["hits"] + 1)
        self.assertGreaterEqual(after["total"]["misses"], before["total"]["misses"] + 1)
        self.assertTrue(after["shards"], "one entry per shard")
        self.assertEqual(sum(s["keys"] for s in after["shards"]), after["total"]["keys"])


class ReadThrough(StateTest):
    def setUp(self):
        super().setUp()
        declared = self.client.cache_stats().get("read_through", {})
        name = READ_THROUGH or next(iter(sorted(declared)), None)
        if name is None:
            self.skipTest("the node's manifest declares no read-through cache (`caches`)")
        self.assertIn(name, declared, f"STRATA_TEST_CACHE={name} is declared")
        self.cache, self.cache_ns = name, declared[name]["namespace"]

    def loads(self):
        return self.client.cache_stats()["read_through"][self.cache]["loads"]

    def test_reads_through_and_sees_its_own_writes(self):
        key = self.key("customer")
        self.assertIsNone(self.client.cached(self.cache, key), "the store has no such key")
        v1 = self.client.kv_put(self.cache_ns, key, {"orders": ["o-1"]})
        loads = self.loads()
        self.assertEqual(self.client.cached(self.cache, key), b'{"orders":["o-1"]}')
        self.assertEqual(self.loads(), loads + 1, "a miss loads the key from the store")

        self.client.kv_put(self.cache_ns, key, {"orders": ["o-1", "o-2"]}, if_version=v1)
        self.assertEqual(self.client.cached(self.cache, key), b'{"orders":["o-1","o-2"]}',
                         "a write through the node API drops the cached copy")
        self.client.kv_delete(self.cache_ns, key)
        self.assertIsNone(self.client.cached(self.cache, key), "and so does a delete")

    def test_refills_after_a_shard_is_lost(self):
        key = self.key("drill")
        self.client.kv_put(self.cache_ns, key, b"durable")
        loads = self.loads()
        self.assertEqual(self.client.cached(self.cache, key), b"durable")
        self.assertEqual(self.loads(), loads + 1, "the first read loads the key from the store")
        self.assertEqual(self.client.cached(self.cache, key), b"durable")
        self.assertEqual(self.loads(), loads + 1, "the next read is served from the cache")
        dropped = sum(self.client.cache_drop_shard(n)["dropped_keys"]
                      for n in range(len(self.client.cache_stats()["shards"])))
        self.assertGreaterEqual(dropped, 1, "the cached copy was in a dropped shard")
        self.assertEqual(self.client.cached(self.cache, key), b"durable")
        self.assertEqual(self.loads(), loads + 2, "with its shard gone, the key was loaded again from the store")

    def test_an_unknown_cache_is_an_error_not_a_miss(self):
        err = self.assertError(404, self.client.cached, "no-such-cache", "k")
        self.assertIn("no-such-cache", err.message)


class Offline(unittest.TestCase):
    """What needs no node."""

    def test_parse_push(self):
        body = (b'{"queue": "orders", "group": "fulfil", "messages": ['
                b'{"offset": 3, "deliveries": 2, "timestamp_ms": 1, "body": "a", "reply_to": "inbox:x"},'
                b'{"offset": 4, "deliveries": 1, "timestamp_ms": 2, "body_base64": "/w==",'
                b' "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}]}')
        m3, m4 = parse_push(body)
        self.assertEqual((m3.traceparent, m4.traceparent),
                         (None, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        self.assertEqual((m3.queue, m3.group, m3.offset, m3.deliveries, m3.text, m3.reply_to),
                         ("orders", "fulfil", 3, 2, "a", "inbox:x"))
        self.assertEqual((m4.offset, m4.body, m4.reply_to), (4, b"\xff", None))

    def test_conflict_error_is_a_strata_error(self):
        err = ConflictError(412, "version moved", b"", current=7)
        self.assertIsInstance(err, StrataError)
        self.assertEqual((err.status, err.current), (412, 7))

    def test_a_value_is_bytes_str_or_json(self):
        c = Client("http://127.0.0.1:9")
        with self.assertRaises(TypeError):
            c.kv_put("ns", "k", 17)
        with self.assertRaises(TypeError):
            c.blob_put("ns", "b", 17)

    def test_error_code_from_the_body(self):
        body = b'{"error": "no queue named \\"x\\"", "status": 404, "code": "not_found"}'
        err = strata_client.errors.error_from_answer(404, body)
        self.assertEqual((type(err), err.status, err.code, err.message),
                         (StrataError, 404, "not_found", 'no queue named "x"'))
        plain = strata_client.errors.error_from_answer(502, b"upstream fell over")
        self.assertEqual((plain.code, plain.message), (None, "upstream fell over"), "no JSON body: no code")
        conflict = strata_client.errors.error_from_answer(
            412, b'{"error": "moved", "status": 412, "code": "condition_failed", "current": 9}')
        self.assertIsInstance(conflict, ConflictError)
        self.assertEqual((conflict.code, conflict.current), ("condition_failed", 9))

    def test_the_package_is_typed(self):
        here = os.path.dirname(strata_client.__file__)
        self.assertTrue(os.path.exists(os.path.join(here, "py.typed")), f"py.typed is in {here}")
        if INSTALLED_AT:
            self.assertEqual(os.path.realpath(os.path.dirname(here)), os.path.realpath(INSTALLED_AT),
                             "the tests import the package pip installed, not the source tree")

    def test_the_token_goes_with_every_call(self):
        seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                seen.append((self.headers.get("Authorization"), self.headers.get("X-Strata-Token")))
                body = b'{"name": "q"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        saved = os.environ.get("STRATA_TOKEN")
        try:
            with Client(url, token="t0k") as c:
                c.stats("q")
                c.call("web", "/x", headers={"Authorization": "Basic dXNlcg=="})
            os.environ["STRATA_TOKEN"] = "from-env"
            with Client(url) as c:
                c.stats("q")
            del os.environ["STRATA_TOKEN"]
            with Client(url) as c:
                c.stats("q")
        finally:
            server.shutdown()
            server.server_close()
            if saved is not None:
                os.environ["STRATA_TOKEN"] = saved
        self.assertEqual(seen, [("Bearer t0k", None),
                                ("Basic dXNlcg==", "t0k"),  # the call's own Authorization goes on
                                ("Bearer from-env", None),
                                (None, None)])

    def test_a_traced_view_sends_the_trace_with_every_call(self):
        seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append((self.command, self.headers.get("traceparent"), self.headers.get("tracestate")))
                body = b'{"name": "q", "offset": 1, "version": 1}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = answer

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        mine = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
        try:
            with Client(f"http://127.0.0.1:{server.server_address[1]}") as c:
                t = c.traced(tp, "v=1")
                t.stats("q")
                t.kv_put("ns", "k", "v")
                t.call("web", "/x", headers={"Traceparent": mine})  # a call's own wins
                c.stats("q")
                t.reply(Message(1, b"", reply_to="inbox:x", traceparent=mine), "ok")
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(seen, [("GET", tp, "v=1"), ("PUT", tp, "v=1"), ("GET", mine, None),
                                ("GET", None, None), ("POST", mine, None)])

    def test_url_is_required(self):
        saved = os.environ.pop("STRATA_URL", None)
        try:
            with self.assertRaises(ValueError):
                Client()
        finally:
            if saved is not None:
                os.environ["STRATA_URL"] = saved


if __name__ == "__main__":
    unittest.main()
