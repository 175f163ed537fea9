"""Tests of strata_client against a live node: STRATA_URL=http://127.0.0.1:PORT.

    STRATA_URL=http://127.0.0.1:7070 python3 -m unittest -v clients/python/test_strata_client.py

Skipped when STRATA_URL is unset. crates/strata/tests/python_client.rs starts a node and
runs them. Each test uses queues of its own (a fresh random suffix), so the tests are
independent and can run against a node that has run them before. With
STRATA_TEST_CALL_SERVICE set to a service running the test member
(crates/strata/tests/fixtures/member.py), call() is tested too.
"""
import os
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from strata_client import Client, Message, StrataError, parse_push  # noqa: E402

STRATA_URL = os.environ.get("STRATA_URL")
CALL_SERVICE = os.environ.get("STRATA_TEST_CALL_SERVICE")


NO_NODE = ("STRATA_URL is not set: these tests need a running strata node "
           "(STRATA_URL=http://127.0.0.1:PORT, the node API of `strata up`)")


@unittest.skipUnless(STRATA_URL, NO_NODE)
class LiveTest(unittest.TestCase):
    """Gives each test a client of the node at STRATA_URL."""

    def setUp(self):
        self.client = Client(STRATA_URL, timeout=15)
        self.addCleanup(self.client.close)

    def assertError(self, status, fn, *args, **kwargs):
        with self.assertRaises(StrataError) as cm:
            fn(*args, **kwargs)
        err = cm.exception
        self.assertEqual(err.status, status, f"expected {status}, got {err.status}: {err.message}")
        self.assertTrue(err.message, "the error carries the server's message")
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
        self.assertError(504, self.client.request, queue, "anyone?", timeout_ms=300)
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
        self.assertError(404, self.client.stats, missing)
        self.assertError(404, self.client.publish, missing, "x")
        self.assertError(404, self.client.fetch, missing, "g")
        self.assertError(404, self.client.ack, missing, "g", [0])

    def test_bad_max_is_400(self):
        queue = self.new_queue()
        self.client.publish(queue, "x")
        self.assertError(400, self.client.fetch, queue, "g", max=0)
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
        self.assertError(413, self.client.publish, queue, b"x" * 17)
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

    def test_call_all_asks_every_member(self):
        replies = self.client.call(CALL_SERVICE, "/hello", mode="all").json()
        self.assertIsInstance(replies, list)
        self.assertTrue(replies and all("instance" in r for r in replies), replies)

    def test_unknown_service_is_404(self):
        err = self.assertError(404, self.client.call, "no-such-service", "/")
        self.assertIn("no-such-service", err.message)


class Offline(unittest.TestCase):
    """What needs no node."""

    def test_parse_push(self):
        body = (b'{"queue": "orders", "group": "fulfil", "messages": ['
                b'{"offset": 3, "deliveries": 2, "timestamp_ms": 1, "body": "a", "reply_to": "inbox:x"},'
                b'{"offset": 4, "deliveries": 1, "timestamp_ms": 2, "body_base64": "/w=="}]}')
        m3, m4 = parse_push(body)
        self.assertEqual((m3.queue, m3.group, m3.offset, m3.deliveries, m3.text, m3.reply_to),
                         ("orders", "fulfil", 3, 2, "a", "inbox:x"))
        self.assertEqual((m4.offset, m4.body, m4.reply_to), (4, b"\xff", None))

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
