"""Tests of strata_client's AsyncClient: against a live node (STRATA_URL=http://127.0.0.1:PORT),
and, with no node, against a small scripted HTTP server on a port of its own.

    STRATA_URL=http://127.0.0.1:7070 python3 -m unittest -v clients/python/test_strata_client_aio.py

They import the installed package, else the one beside this file (the source tree). The
live tests are skipped when STRATA_URL is unset; the environment is the one of
test_strata_client.py (STRATA_TEST_CALL_SERVICE, STRATA_TEST_CACHE), and so is the
style: each test uses queues, keys and blobs of its own (a fresh random suffix).
"""
import asyncio
import gc
import hashlib
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
import warnings

try:
    import strata_client
except ImportError:  # not installed: the package beside this file, in the source tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import strata_client

from strata_client import (AsyncBlobStream, AsyncClient, ConflictError, Entry, Message,  # noqa: E402
                           StrataError)

STRATA_URL = os.environ.get("STRATA_URL")
CALL_SERVICE = os.environ.get("STRATA_TEST_CALL_SERVICE")
READ_THROUGH = os.environ.get("STRATA_TEST_CACHE")

NO_NODE = ("STRATA_URL is not set: these tests need a running strata node "
           "(STRATA_URL=http://127.0.0.1:PORT, the node API of `strata up`)")


@unittest.skipUnless(STRATA_URL, NO_NODE)
class LiveTest(unittest.IsolatedAsyncioTestCase):
    """Gives each test an AsyncClient of the node at STRATA_URL, and names of its own."""

    async def asyncSetUp(self):
        self.client = AsyncClient(STRATA_URL, timeout=15)
        self.suffix = uuid.uuid4().hex[:8]
        self.ns = f"py-aio-{self.suffix}"

    async def asyncTearDown(self):
        await self.client.close()

    def name(self, what):
        """A queue, group or key name of this test alone."""
        return f"py-aio-{what}-{self.suffix}"

    async def new_queue(self, what="q", **config):
        queue = self.name(what)
        self.assertTrue(await self.client.create_queue(queue, **config), f"{queue} is new")
        return queue

    async def group_stats(self, queue, group):
        stats = await self.client.stats(queue)
        for g in stats.get("groups", []):
            if g["name"] == group:
                return g
        self.fail(f"no group {group} in the stats of {queue}: {stats}")

    async def assertError(self, status, code, awaitable):
        with self.assertRaises(StrataError) as cm:
            await awaitable
        err = cm.exception
        self.assertEqual((err.status, err.code), (status, code), err.message)
        self.assertTrue(err.message, "the error carries the server's message")
        return err

    def idle_socket(self):
        """The socket of the client's kept-alive idle connection."""
        self.assertEqual(len(self.client._conns.idle), 1, "one kept-alive connection after one call")
        return self.client._conns.idle[-1].socket


class Queues(LiveTest):
    async def test_create_is_idempotent_and_listed(self):
        queue = await self.new_queue(lease_ms=5000)
        self.assertFalse(await self.client.create_queue(queue), "a second create finds it")
        stats = await self.client.stats(queue)
        self.assertEqual((stats["name"], stats["messages"]), (queue, 0))
        self.assertIn(queue, [q["name"] for q in await self.client.queues()])

    async def test_publish_fetch_ack_round_trip(self):
        queue, group = await self.new_queue(), self.name("g")
        binary = bytes(range(256))
        p1 = await self.client.publish(queue, "hello")
        p2 = await self.client.publish(queue, binary, reply_to="queue:elsewhere", correlation_id="c-1")
        p3 = await self.client.publish(queue, {"order": 17})
        self.assertEqual([p2.offset, p3.offset], [p1.offset + 1, p1.offset + 2])
        msgs = await self.client.fetch(queue, group, max=10)
        self.assertEqual([m.offset for m in msgs], [p1.offset, p2.offset, p3.offset])
        self.assertTrue(all(isinstance(m, Message) and m.deliveries == 1 for m in msgs))
        self.assertEqual((msgs[0].text, msgs[1].body, msgs[1].reply_to, msgs[1].correlation_id),
                         ("hello", binary, "queue:elsewhere", "c-1"))
        self.assertEqual(msgs[2].json(), {"order": 17})
        self.assertEqual((await self.client.ack(queue, group, msgs))["acked"], 3)
        self.assertEqual(await self.client.fetch(queue, group, max="all"), [])
        g = await self.group_stats(queue, group)
        self.assertEqual((g["unread"], g["leased"], g["backlog"]), (0, 0, 0))

    async def test_publish_batch_and_dedupe(self):
        queue, group = await self.new_queue(), self.name("g")
        first = await self.client.publish(queue, "first", dedupe_id="d-1")
        again = await self.client.publish(queue, "first, again", dedupe_id="d-1")
        self.assertEqual((again.offset, again.duplicate), (first.offset, True))
        answer = await self.client.publish_batch(queue, ["text", b"\xff bytes", {"body": "again", "dedupe_id": "d-1"}])
        self.assertEqual((len(answer.offsets), answer.duplicates), (3, 1))
        msgs = await self.client.fetch(queue, group, max="all")
        self.assertEqual([m.body for m in msgs], [b"first", b"text", b"\xff bytes"])

    async def test_nack_delete_and_out_of_order_acks(self):
        queue, group = await self.new_queue(), self.name("g")
        offsets = [(await self.client.publish(queue, f"m{i}")).offset for i in range(4)]
        await self.client.fetch(queue, group, max="all")
        self.assertEqual((await self.client.nack(queue, group, [offsets[0]]))["nacked"], 1)
        self.assertEqual((await self.client.ack(queue, group, [offsets[3], offsets[1]]))["acked"], 2)
        self.assertEqual((await self.client.delete(queue, group, offsets[2]))["acked"], 1)
        await self.assertError(404, "not_found", self.client.delete(queue, group, offsets[2]))
        (m,) = await self.client.fetch(queue, group)
        self.assertEqual((m.offset, m.deliveries), (offsets[0], 2), "a nacked message comes back, counted")

    async def test_a_long_poll_does_not_hold_up_other_calls(self):
        queue, group = await self.new_queue(), self.name("g")
        started = time.monotonic()
        poll = asyncio.ensure_future(self.client.fetch(queue, group, wait_ms=5000))
        await asyncio.sleep(0.2)
        self.assertFalse(poll.done(), "the long poll waits for a message")
        # The same client publishes meanwhile, on another connection.
        published = await self.client.publish(queue, "late")
        msgs = await poll
        self.assertEqual([(m.offset, m.body) for m in msgs], [(published.offset, b"late")])
        self.assertLess(time.monotonic() - started, 4.5, "the poll returned when the message came")
        self.assertEqual(await self.client.fetch(queue, group, wait_ms=200), [], "an empty long poll ends empty")

    async def test_a_cancelled_long_poll_closes_its_connection(self):
        queue, group = await self.new_queue(), self.name("g")
        await self.client.stats(queue)
        (conn,) = self.client._conns.idle
        poll = asyncio.ensure_future(self.client.fetch(queue, group, wait_ms=10000))
        await asyncio.sleep(0.2)
        self.assertEqual(self.client._conns.idle, [], "the long poll took the kept-alive connection")
        poll.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await poll
        self.assertTrue(conn.closed, "the cancelled call closed its connection")
        self.assertEqual(self.client._conns.idle, [], "and did not give it back")
        self.assertEqual((await self.client.stats(queue))["messages"], 0, "the client goes on working")

    async def test_many_calls_at_once_share_a_bounded_pool(self):
        client = AsyncClient(STRATA_URL, max_connections=3)
        try:
            queue = self.name("many")
            await client.create_queue(queue)
            answers = await asyncio.gather(*(client.publish(queue, f"m{i}") for i in range(30)))
            offsets = sorted(a.offset for a in answers)
            self.assertEqual(offsets, list(range(offsets[0], offsets[0] + 30)), "thirty messages, thirty offsets")
            self.assertLessEqual(len(client._conns.idle), 3, "never more connections than max_connections")
            self.assertEqual((await client.stats(queue))["messages"], 30)
        finally:
            await client.close()

    async def test_reconnects_after_a_dropped_connection(self):
        queue = await self.new_queue()
        before = await self.client.publish(queue, "before")
        sock = self.idle_socket()
        sock.shutdown(socket.SHUT_RDWR)  # as if the node had closed it while idle
        after = await self.client.publish(queue, "after")
        self.assertEqual(after.offset, before.offset + 1, "nothing was published twice")
        self.assertIsNot(self.idle_socket(), sock, "on a new connection")
        self.assertEqual((await self.client.stats(queue))["messages"], 2)


class Replies(LiveTest):
    async def consume(self, queue, group, handle, count):
        """Answers `count` messages of the queue, as a consumer task on the same client."""
        done = 0
        deadline = time.monotonic() + 15
        while done < count and time.monotonic() < deadline:
            for m in await self.client.fetch(queue, group, wait_ms=500):
                await handle(m)
                await self.client.ack(queue, group, [m])
                done += 1

    async def test_request_reply_round_trip(self):
        queue, group = await self.new_queue(), self.name("g")
        seen = []

        async def handle(m):
            seen.append(m)
            await self.client.reply(m, m.text.upper())

        consumer = asyncio.ensure_future(self.consume(queue, group, handle, 2))
        r1 = await self.client.request(queue, "ping", timeout_ms=10000)
        r2 = await self.client.request(queue, b"pong", timeout_ms=10000, correlation_id="mine-2")
        await asyncio.wait_for(consumer, 20)
        self.assertEqual((r1.text, r2.text, r2.correlation_id), ("PING", "PONG", "mine-2"))
        self.assertEqual([m.offset for m in seen], [r1.offset, r2.offset])
        self.assertTrue(seen[0].reply_to.startswith("inbox:"), seen[0].reply_to)

    async def test_request_without_a_consumer_is_no_reply(self):
        queue, group = await self.new_queue(), self.name("g")
        await self.assertError(504, "no_reply", self.client.request(queue, "anyone?", timeout_ms=300))
        (m,) = await self.client.fetch(queue, group)
        self.assertEqual(m.body, b"anyone?", "the message stays published")
        await self.assertError(404, "not_found", self.client.reply(m, "too late"))

    async def test_reply_to_a_queue(self):
        queue, results, group = await self.new_queue("work"), await self.new_queue("results"), self.name("g")
        await self.client.publish(queue, "job", reply_to=f"queue:{results}", correlation_id="c-9")

        async def handle(m):
            await self.client.reply(m, b"done")

        await self.consume(queue, group, handle, 1)
        (r,) = await self.client.fetch(results, group, wait_ms=2000)
        self.assertEqual((r.body, r.correlation_id), (b"done", "c-9"))


def new_trace():
    """A fresh trace id and a span id of the caller's, and the traceparent naming them."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


class Traces(LiveTest):
    """A traced view's calls are spans of the caller's trace (docs/traces.md)."""

    async def spans_of(self, trace_id, n):
        """The node's spans of trace `trace_id`, once there are `n` or more (or after 10 s)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                spans = (await self.client._json("GET", f"/v1/traces?id={trace_id}"))["answer"][0]["spans"]
            except StrataError as e:
                if e.status != 404:
                    raise
                spans = []
            if len(spans) >= n or time.monotonic() > deadline:
                return spans
            await asyncio.sleep(0.05)

    @unittest.skipUnless(CALL_SERVICE, "STRATA_TEST_CALL_SERVICE names no service to call")
    async def test_a_traced_call_is_a_span_of_the_callers_trace(self):
        trace_id, caller, traceparent = new_trace()
        traced = self.client.traced_from({"traceparent": traceparent, "tracestate": "v=1"})
        self.assertEqual(traced.trace, strata_client.Trace(traceparent, "v=1"))
        self.assertIs(traced._conns, self.client._conns, "the view shares the client's connections")
        self.assertEqual((await traced.call(CALL_SERVICE, "/hello")).status, 200)
        await self.client.call(CALL_SERVICE, "/hello")  # the client itself is not traced
        (call,) = await self.spans_of(trace_id, 1)
        self.assertEqual((call["kind"], call["service"], call["parent_id"]), ("call", CALL_SERVICE, caller), call)
        self.assertEqual(len(self.client._conns.idle), 1, "both calls took turns on one connection")

    async def test_a_traced_publish_reaches_the_consumer_and_the_reply_comes_back(self):
        trace_id, caller, traceparent = new_trace()
        queue, group = await self.new_queue(), self.name("g")
        seen = []

        async def consume():
            (m,) = await self.client.fetch(queue, group, wait_ms=5000)
            seen.append(m)
            await self.client.reply(m, "pong")  # continues the message's trace
            await self.client.ack(queue, group, [m])

        consumer = asyncio.ensure_future(consume())
        r = await self.client.traced(traceparent).request(queue, "ping", timeout_ms=10000)
        await asyncio.wait_for(consumer, 20)
        publish, reply = await self.spans_of(trace_id, 2)
        self.assertEqual((publish["kind"], publish["service"], publish["parent_id"]), ("publish", queue, caller))
        self.assertEqual(seen[0].traceparent, f"00-{trace_id}-{publish['span_id']}-01",
                         "the fetched message carries the publish span")
        self.assertEqual((reply["kind"], reply["parent_id"]), ("reply", publish["span_id"]), reply)
        self.assertEqual((r.text, r.traceparent), ("pong", f"00-{trace_id}-{reply['span_id']}-01"))

    async def test_a_malformed_traceparent_is_refused_before_sending(self):
        with self.assertRaises(ValueError):
            self.client.traced("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")
        self.assertIsNone(self.client.traced_from({"traceparent": "nonsense"}).trace)


class Errors(LiveTest):
    async def test_a_token_the_node_did_not_give_out_is_401(self):
        async with AsyncClient(STRATA_URL, timeout=15, token="0" * 64) as stranger:
            await self.assertError(401, "unauthorized", stranger.stats(self.name("q")))

    async def test_codes(self):
        missing = self.name("missing")
        err = await self.assertError(404, "not_found", self.client.stats(missing))
        self.assertIn(missing, err.message)
        await self.assertError(404, "not_found", self.client.publish(missing, "x"))
        queue = await self.new_queue(max_message_bytes=16)
        await self.assertError(400, "bad_request", self.client.fetch(queue, "g", max=0))
        await self.assertError(413, "payload_too_large", self.client.publish(queue, b"x" * 17))
        await self.assertError(400, "bad_request", self.client.create_queue(self.name("bad"), max_message_bytes=0))
        with self.assertRaises(ValueError):
            await self.client.reply(Message(offset=1, body=b"x"), "nobody asked")


@unittest.skipUnless(CALL_SERVICE, "STRATA_TEST_CALL_SERVICE names no service to call")
class Calls(LiveTest):
    async def test_call_any(self):
        r = await self.client.call(CALL_SERVICE, "/hello?x=1")
        self.assertEqual((r.status, r.json()["method"], r.json()["path"]), (200, "GET", "/hello?x=1"))
        r = await self.client.call(CALL_SERVICE, "/echo", method="POST", body={"a": 1})
        self.assertEqual((r.json()["method"], r.json()["body_bytes"]), ("POST", len(b'{"a": 1}')))

    async def test_call_all_asks_every_member_once(self):
        ps = await self.client._json("GET", "/v1/ps")
        (svc,) = [s for s in ps["services"] if s["name"] == CALL_SERVICE]
        members = sorted(i["id"] for i in svc["instances"] if i["state"] == "ready")
        self.assertGreaterEqual(len(members), 2, f"{CALL_SERVICE} needs 2 or more ready members")
        request_id = f"py-aio-all-{self.suffix}"
        replies = (await self.client.call(CALL_SERVICE, "/hello", mode="all",
                                          headers={"X-Request-Id": request_id})).json()
        self.assertEqual(sorted(r["instance"] for r in replies), members, f"each member once: {replies}")
        for r in replies:
            seen = json.loads(r["body"])
            self.assertEqual((r["status"], seen["request_id"], seen["path"]), (200, request_id, "/hello"), r)

    async def test_unknown_service_is_404(self):
        await self.assertError(404, "not_found", self.client.call("no-such-service", "/"))


class KeyValue(LiveTest):
    async def test_put_get_delete_and_compare_and_set(self):
        v1 = await self.client.kv_put(self.ns, "doc", {"items": [1]})
        got = await self.client.kv_get(self.ns, "doc")
        self.assertIsInstance(got, Entry)
        self.assertEqual((got.json(), got.version), ({"items": [1]}, v1))
        v2 = await self.client.kv_put(self.ns, "doc", b"two", if_version=v1)
        self.assertGreater(v2, v1)
        with self.assertRaises(ConflictError) as cm:
            await self.client.kv_put(self.ns, "doc", b"stale", if_version=v1)
        self.assertEqual((cm.exception.code, cm.exception.current), ("condition_failed", v2))
        with self.assertRaises(ConflictError) as cm:
            await self.client.kv_put(self.ns, "doc", b"again", if_absent=True)
        self.assertEqual(cm.exception.current, v2)
        self.assertEqual(await self.client.kv_get(self.ns, "doc"), (b"two", v2), "a failed CAS writes nothing")
        self.assertTrue(await self.client.kv_delete(self.ns, "doc", if_version=v2))
        self.assertIsNone(await self.client.kv_get(self.ns, "doc"))
        self.assertFalse(await self.client.kv_delete(self.ns, "doc"))

    async def test_concurrent_increments_with_cas_lose_nothing(self):
        await self.client.kv_put(self.ns, "n", b"0")
        conflicts = []

        async def bump(times):
            for _ in range(times):
                while True:
                    value, version = await self.client.kv_get(self.ns, "n")
                    try:
                        await self.client.kv_put(self.ns, "n", str(int(value) + 1), if_version=version)
                        break
                    except ConflictError:
                        conflicts.append(1)

        await asyncio.gather(*(bump(10) for _ in range(4)))
        self.assertEqual((await self.client.kv_get(self.ns, "n")).value, b"40",
                         f"every increment counted ({len(conflicts)} conflicts retried)")

    async def test_listing_in_pages(self):
        keys = [f"item-{i:02d}" for i in range(25)]
        await asyncio.gather(*(self.client.kv_put(self.ns, k, k) for k in keys))
        page = await self.client.kv_list(self.ns, prefix="item-", limit=10)
        self.assertEqual([i["key"] for i in page["items"]], keys[:10])
        self.assertEqual([i["key"] async for i in self.client.kv_iter(self.ns, prefix="item-", page_size=10)], keys)
        self.assertEqual([i async for i in self.client.kv_iter(self.ns, prefix="nothing")], [])


class Blobs(LiveTest):
    async def test_streams_a_5_mib_file_both_ways(self):
        body = os.urandom(5 << 20)
        digest = hashlib.sha256(body).hexdigest()
        with tempfile.TemporaryFile() as f:
            f.write(body)
            f.seek(0)
            meta = await self.client.blob_put(self.ns, "big.bin", f, content_type="application/x-test")
        self.assertEqual((meta["size"], meta["etag"], meta["content_type"]), (len(body), digest, "application/x-test"))
        got_meta, data = await self.client.blob_get(self.ns, "big.bin")
        self.assertEqual((data, got_meta["etag"], got_meta["version"]), (body, digest, meta["version"]))

        h, sizes = hashlib.sha256(), []
        async with await self.client.blob_open(self.ns, "big.bin") as stream:
            self.assertIsInstance(stream, AsyncBlobStream)
            self.assertEqual(stream.meta["size"], len(body))
            async for block in stream.chunks(1 << 20):
                h.update(block)
                sizes.append(len(block))
        self.assertTrue(stream.closed)
        self.assertEqual((h.hexdigest(), sum(sizes)), (digest, len(body)))
        self.assertGreater(len(sizes), 1, "read in pieces")

    async def test_bodies_of_every_kind(self):
        async def agen():
            for i in range(40):
                yield bytes([i]) * 1000
                await asyncio.sleep(0)

        seekable = io.BytesIO(b"xx-from a seekable file object")
        seekable.read(3)  # the body starts where the file is
        cases = {
            "bytes": (b"plain", b"plain"),
            "str": ("ü text", "ü text".encode()),
            "bytesio": (seekable, b"from a seekable file object"),
            "generator": ((bytes([i]) * 1000 for i in range(50)), b"".join(bytes([i]) * 1000 for i in range(50))),
            "async-generator": (agen(), b"".join(bytes([i]) * 1000 for i in range(40))),
        }
        for name, (data, want) in cases.items():
            meta = await self.client.blob_put(self.ns, name, data)
            self.assertEqual((meta["size"], meta["etag"]), (len(want), hashlib.sha256(want).hexdigest()), name)
            self.assertEqual((await self.client.blob_get(self.ns, name))[1], want, name)
        with self.assertRaises(TypeError):
            await self.client.blob_put(self.ns, "text-file", io.StringIO("not binary"))
        with self.assertRaises(TypeError):
            await self.client.blob_put(self.ns, "number", 17)

    async def test_replace_list_delete_and_a_reader_keeps_its_body(self):
        first = await self.client.blob_put(self.ns, "a.txt", b"o" * (1 << 20), content_type="text/plain")
        stream = await self.client.blob_open(self.ns, "a.txt")
        head = await stream.read(1000)
        second = await self.client.blob_put(self.ns, "a.txt", b"two", if_version=first["version"])
        rest = await stream.readall()
        await stream.close()
        self.assertEqual(head + rest, b"o" * (1 << 20), "the reader kept the body it opened")
        with self.assertRaises(ConflictError) as cm:
            await self.client.blob_put(self.ns, "a.txt", b"three", if_absent=True)
        self.assertEqual(cm.exception.current, second["version"])
        for i in range(3):
            await self.client.blob_put(self.ns, f"dir/{i}.bin", bytes([i]) * i)
        page = await self.client.blob_list(self.ns, prefix="dir/", limit=2)
        self.assertEqual([b["name"] for b in page["items"]], ["dir/0.bin", "dir/1.bin"])
        self.assertEqual([b["name"] async for b in self.client.blob_iter(self.ns)],
                         ["a.txt", "dir/0.bin", "dir/1.bin", "dir/2.bin"])
        self.assertTrue(await self.client.blob_delete(self.ns, "a.txt"))
        self.assertFalse(await self.client.blob_delete(self.ns, "a.txt"))
        self.assertIsNone(await self.client.blob_get(self.ns, "a.txt"))
        self.assertIsNone(await self.client.blob_open(self.ns, "a.txt"))

    async def test_a_dropped_connection_resends_a_seekable_body(self):
        await self.client.kv_put(self.ns, "warm", b"x")
        self.idle_socket().shutdown(socket.SHUT_RDWR)
        f = io.BytesIO(b"rewound and sent again")
        self.assertEqual((await self.client.blob_put(self.ns, "seekable", f))["size"], 22)
        self.assertEqual((await self.client.blob_get(self.ns, "seekable"))[1], b"rewound and sent again")


class Cache(LiveTest):
    async def test_set_get_delete_ttl(self):
        key, soon = self.name("raw"), self.name("ttl")
        self.assertIsNone(await self.client.cache_get(key))
        await self.client.cache_set(key, b"\x00value")
        self.assertEqual(await self.client.cache_get(key), b"\x00value")
        self.assertTrue(await self.client.cache_delete(key))
        self.assertFalse(await self.client.cache_delete(key))
        started = time.monotonic()
        await self.client.cache_set(soon, "soon gone", ttl_ms=500)
        self.assertEqual(await self.client.cache_get(soon), b"soon gone")
        await asyncio.sleep(max(0.0, started + 0.7 - time.monotonic()))
        self.assertIsNone(await self.client.cache_get(soon), "a key read after its TTL is gone")
        await self.assertError(400, "bad_request", self.client.cache_set(key, "x", ttl_ms=0))
        stats = await self.client.cache_stats()
        self.assertEqual(sum(s["keys"] for s in stats["shards"]), stats["total"]["keys"])


class ReadThrough(LiveTest):
    async def asyncSetUp(self):
        await super().asyncSetUp()
        declared = (await self.client.cache_stats()).get("read_through", {})
        name = READ_THROUGH or next(iter(sorted(declared)), None)
        if name is None:
            self.skipTest("the node's manifest declares no read-through cache (`caches`)")
        self.cache, self.cache_ns = name, declared[name]["namespace"]

    async def loads(self):
        return (await self.client.cache_stats())["read_through"][self.cache]["loads"]

    async def test_reads_through_sees_its_own_writes_and_refills(self):
        key = self.name("customer")
        self.assertIsNone(await self.client.cached(self.cache, key), "the store has no such key")
        v1 = await self.client.kv_put(self.cache_ns, key, {"orders": ["o-1"]})
        loads = await self.loads()
        self.assertEqual(await self.client.cached(self.cache, key), b'{"orders":["o-1"]}')
        self.assertEqual(await self.loads(), loads + 1, "a miss loads the key from the store")
        self.assertEqual(await self.client.cached(self.cache, key), b'{"orders":["o-1"]}')
        self.assertEqual(await self.loads(), loads + 1, "the next read is served from the cache")
        await self.client.kv_put(self.cache_ns, key, {"orders": ["o-1", "o-2"]}, if_version=v1)
        self.assertEqual(await self.client.cached(self.cache, key), b'{"orders":["o-1","o-2"]}',
                         "a write through the node API drops the cached copy")
        shards = len((await self.client.cache_stats())["shards"])
        dropped = sum([(await self.client.cache_drop_shard(n))["dropped_keys"] for n in range(shards)])
        self.assertGreaterEqual(dropped, 1)
        loads = await self.loads()
        self.assertEqual(await self.client.cached(self.cache, key), b'{"orders":["o-1","o-2"]}')
        self.assertEqual(await self.loads(), loads + 1, "with its shard gone, loaded again from the store")
        await self.assertError(404, "not_found", self.client.cached("no-such-cache", "k"))


class ScriptedNode:
    """An HTTP/1.1 server on 127.0.0.1, port 0, whose answers a test writes:
    `answer(conn_no, request_no, method, target, body)` returns the raw bytes to send,
    None to close the connection without answering, or an awaitable of them. Every
    request read is kept in `requests` as (conn_no, method, target, body); `closed`
    lists the connections the client closed."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.headers = []  # the headers of each request (lower-case names), in order
        self.closed = []
        self.conns = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def serve(self, reader, writer):
        self.conns += 1
        conn_no, n = self.conns, 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    chunks = []
                    while True:
                        size = int((await reader.readline()).split(b";")[0].strip(), 16)
                        if size == 0:
                            await reader.readline()  # the blank line after the last chunk
                            break
                        chunks.append((await reader.readexactly(size + 2))[:-2])
                    body = b"".join(chunks)
                n += 1
                self.requests.append((conn_no, method, target, body))
                self.headers.append(headers)
                out = self.answer(conn_no, n, method, target, body)
                if asyncio.iscoroutine(out):
                    out = await out
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if b"\r\nConnection: close\r\n" in out:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.append(conn_no)
        except asyncio.CancelledError:
            pass  # the server closes with the test
        finally:
            writer.close()


def ok_json(doc, extra=""):
    body = json.dumps(doc).encode()
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


class Offline(unittest.IsolatedAsyncioTestCase):
    """The HTTP/1.1 side of AsyncClient, against a scripted server: no node needed."""

    async def test_chunked_answers_and_1xx_on_one_kept_alive_connection(self):
        def answer(conn, n, method, target, body):
            return (b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                    b"5;ext=1\r\n{\"n\":\r\n" + f"{len(str(n)) + 1:x}\r\n {n}\r\n".encode() + b"3\r\n}  \r\n0\r\nX-T: 1\r\n\r\n")

        async with ScriptedNode(answer) as node:
            async with AsyncClient(node.url) as c:
                self.assertEqual(await c._json("GET", "/a"), {"n": 1})
                self.assertEqual(await c._json("POST", "/b", {"x": 1}), {"n": 2})
        self.assertEqual([(r[0], r[1], r[2]) for r in node.requests], [(1, "GET", "/a"), (1, "POST", "/b")],
                         "both on the first connection")
        self.assertEqual(node.requests[1][3], b'{"x":1}')

    async def test_the_token_goes_with_every_call(self):
        async with ScriptedNode(lambda *a: ok_json({"name": "q"})) as node:
            async with AsyncClient(node.url, token="t0k") as c:
                await c.stats("q")
                await c.call("web", "/x", headers={"Authorization": "Basic dXNlcg=="})
            async with AsyncClient(node.url) as c:
                await c.stats("q")
        seen = [(h.get("authorization"), h.get("x-strata-token")) for h in node.headers]
        expected_default = ("Bearer " + os.environ["STRATA_TOKEN"]) if os.environ.get("STRATA_TOKEN") else None
        self.assertEqual(seen, [("Bearer t0k", None),
                                ("Basic dXNlcg==", "t0k"),  # the call's own Authorization goes on
                                (expected_default, None)])

    async def test_a_traced_view_sends_the_trace_with_every_call(self):
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with ScriptedNode(lambda *a: ok_json({"name": "q", "version": 1})) as node:
            async with AsyncClient(node.url) as c:
                t = c.traced(tp, "v=1")
                await t.stats("q")
                await t.kv_put("ns", "k", "v")
                await c.stats("q")
                await t.traced(None).stats("q")
        seen = [(h.get("traceparent"), h.get("tracestate")) for h in node.headers]
        self.assertEqual(seen, [(tp, "v=1"), (tp, "v=1"), (None, None), (None, None)])

    async def test_a_body_up_to_the_close(self):
        async with ScriptedNode(lambda *a: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it") as node:
            async with AsyncClient(node.url) as c:
                self.assertEqual(await c.cache_get("k"), b"all of it")
                self.assertEqual(c._conns.idle, [], "a connection the node closes is not kept")
                self.assertEqual(await c.cache_get("k"), b"all of it")
        self.assertEqual([r[0] for r in node.requests], [1, 2])

    async def test_error_bodies_give_status_code_and_message(self):
        def answer(conn, n, method, target, body):
            body = b'{"error": "no queue named \\"q\\"", "status": 404, "code": "not_found"}'
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

        async with ScriptedNode(answer) as node:
            async with AsyncClient(node.url) as c:
                with self.assertRaises(StrataError) as cm:
                    await c.stats("q")
        self.assertEqual((cm.exception.status, cm.exception.code, cm.exception.message),
                         (404, "not_found", 'no queue named "q"'))

    async def test_a_dropped_kept_alive_connection_resends_only_what_can_be_sent_again(self):
        # The first request of each connection is answered; the second finds the
        # connection closed, as when the node closed it while idle.
        def answer(conn, n, method, target, body):
            return ok_json({"version": 7}) if n == 1 else None

        async def once():
            yield b"read "
            yield b"once"

        async with ScriptedNode(answer) as node:
            async with AsyncClient(node.url) as c:
                self.assertEqual(await c.kv_put("ns", "a", b"first"), 7)
                self.assertEqual(await c.kv_put("ns", "a", b"sent twice"), 7, "sent again on a new connection")
                self.assertEqual([(r[0], r[3]) for r in node.requests],
                                 [(1, b"first"), (1, b"sent twice"), (2, b"sent twice")])
                with self.assertRaises(ConnectionError):
                    await c.blob_put("ns", "b", once())
                self.assertEqual([(r[0], r[3]) for r in node.requests[3:]], [(2, b"read once")],
                                 "a body that cannot be read again is not sent again")
                f = io.BytesIO(b"seekable")
                await c.blob_put("ns", "c", f)
                self.assertEqual([(r[0], r[3]) for r in node.requests[4:]], [(3, b"seekable")])

    async def test_a_call_past_its_timeout_is_a_timeout_error(self):
        async def answer(conn, n, method, target, body):
            if n == 1 and conn == 1:
                await asyncio.sleep(5)
            return ok_json({"queues": []})

        async with ScriptedNode(answer) as node:
            async with AsyncClient(node.url, timeout=0.3) as c:
                started = time.monotonic()
                with self.assertRaises(TimeoutError) as cm:
                    await c.queues()
                self.assertIsInstance(cm.exception, OSError, "a network failure, as for the sync client")
                self.assertLess(time.monotonic() - started, 3)
                self.assertEqual(await c.queues(), [], "the next call opens a new connection")

    async def test_cancelling_a_call_closes_its_connection(self):
        async def answer(conn, n, method, target, body):
            await asyncio.sleep(5)
            return ok_json({"messages": []})

        async with ScriptedNode(answer) as node:
            async with AsyncClient(node.url) as c:
                call = asyncio.ensure_future(c.fetch("q", "g", wait_ms=10000))
                while not node.requests:
                    await asyncio.sleep(0.01)
                call.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await call
                self.assertEqual(c._conns.idle, [])


class OfflineLoops(unittest.TestCase):
    """A client used from one event loop, then another (as two asyncio.run calls do)."""

    def test_a_client_moves_to_another_event_loop(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive: the first loop leaves a connection idle

            def do_GET(self):
                body = b'{"queues": [{"name": "q"}]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        c = AsyncClient(f"http://127.0.0.1:{server.server_address[1]}")
        self.assertEqual(asyncio.run(c.queues()), [{"name": "q"}])
        self.assertEqual(len(c._conns.idle), 1, "a kept-alive connection, of the first loop")

        async def again():
            try:
                return await c.queues()
            finally:
                await c.close()

        with warnings.catch_warnings():
            # The first loop's idle connection, dropped unclosed: that loop is gone.
            warnings.simplefilter("ignore", ResourceWarning)
            self.assertEqual(asyncio.run(again()), [{"name": "q"}], "a second loop starts afresh")
            gc.collect()  # the dropped connection's transport, now, while its warning is ignored

    def test_bad_input_is_refused_before_sending(self):
        with self.assertRaises(ValueError):
            AsyncClient("ftp://example")
        with self.assertRaises(ValueError):
            AsyncClient("http://127.0.0.1:9", max_connections=0)


if __name__ == "__main__":
    unittest.main()
