"""A latency proxy for the DynamoDB benchmarks: adds a fixed delay to every request.

It listens on a free 127.0.0.1 port and forwards each request to an upstream DynamoDB endpoint
(dynalite) on 127.0.0.1 after sleeping ``delay`` seconds, keeping connections alive both ways.
Two ways to put ``BatchWriteItem`` under pressure, alone or together (random first):

* ``unprocessed_rate``: withholds that fraction of the write requests of every
  ``BatchWriteItem`` (seeded) and returns them in ``UnprocessedItems``, as DynamoDB does under
  throttling;
* ``capacity``: a write capacity in items per second per table, a token bucket shared by every
  connection (one item, one token, whatever its size). Each ``BatchWriteItem`` forwards as many
  write requests as the table's bucket holds when it arrives (after the delay) and returns the
  rest in ``UnprocessedItems``; when it can forward none, it answers HTTP 400
  ``ProvisionedThroughputExceededException`` as DynamoDB does (botocore retries that one itself).
  The bucket holds at most ``burst`` seconds of capacity and starts full. DynamoDB banks up to
  300 s of unused capacity, which would absorb a whole benchmark run at 1,000 items/s and
  measure nothing; the default 0.1 s models a table whose burst is already spent (sustained
  load), so the limit bites from the first request and the run measures how a writer retries
  at a steady ceiling. Keep ``capacity * burst`` at 25 or more (one full batch) or a writer that
  paces itself perfectly still cannot get a full batch through at once. Other operations are
  not metered.

It counts per operation: requests, entries sent, entries ``withheld`` (returned in
``UnprocessedItems``) and ``throttled`` requests (answered 400); :meth:`LatencyProxy.stats`
reads them.

The proxy runs in a child process (asyncio, stdlib only), so that it competes with neither the
GIL nor the CPU accounting of the benchmarked client::

    with LatencyProxy(ddb.endpoint_url, delay=0.005) as proxy:
        client = boto3.client("dynamodb", endpoint_url=proxy.endpoint_url, ...)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import random
import subprocess
import sys
import time
import uuid
import zlib
from collections import defaultdict
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOST = "127.0.0.1"
_STATS = "/__proxy/stats"
Head = tuple[str, list[tuple[str, str]]]


class LatencyProxy:
    """Context manager running the proxy process; ``endpoint_url`` points boto3 at it."""

    def __init__(
        self,
        upstream: str,
        *,
        delay: float = 0.005,
        unprocessed_rate: float = 0.0,
        seed: int = 1,
        capacity: float | None = None,
        burst: float = 0.1,
    ) -> None:
        if urlsplit(upstream).hostname != _HOST:
            raise ValueError(f"the proxy only forwards to {_HOST}, got {upstream}")
        if capacity is not None and not (capacity > 0 and capacity * burst >= 1):
            raise ValueError(f"capacity x burst must hold one item, got {capacity} x {burst}")
        self.upstream, self.delay, self.rate, self.seed = upstream, delay, unprocessed_rate, seed
        self.capacity, self.burst = capacity or 0.0, burst
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def __enter__(self) -> LatencyProxy:
        args = [self.upstream, str(self.delay), str(self.rate), str(self.seed)]
        args += [str(self.capacity), str(self.burst)]
        self._proc = subprocess.Popen(
            [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("listening "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()

    def stats(self, reset: bool = False) -> dict[str, dict[str, int]]:
        """``{operation: {"requests": n, "entries": n, "withheld": n, "throttled": n}}`` since
        the last reset; an operation not seen is absent, a count still 0 may be too."""
        conn = http.client.HTTPConnection(_HOST, self.port, timeout=10)
        try:
            conn.request("GET", _STATS + ("?reset=1" if reset else ""))
            return dict(json.loads(conn.getresponse().read()))
        finally:
            conn.close()


# -- the proxy process ----------------------------------------------------------------------------


async def _read_head(reader: asyncio.StreamReader) -> Head:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:] if h)]
    return lines[0], headers


async def _read_body(
    reader: asyncio.StreamReader, headers: list[tuple[str, str]], response: bool = False
) -> bytes:
    """The body by Content-Length or chunks; a response with neither runs to end of stream."""
    fields = {k.lower(): v for k, v in headers}
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return body
    if "content-length" not in fields:
        return await reader.read() if response else b""
    length = int(fields["content-length"])
    return await reader.readexactly(length) if length else b""


def _encode(first: str, headers: list[tuple[str, str]], body: bytes, fixed: bool) -> bytes:
    """Head and body on the wire; ``fixed`` recomputes Content-Length (and the CRC32 if sent).

    Hop-by-hop headers are dropped: the proxy keeps its client connection alive on its own.
    """
    skip = {"connection", "keep-alive"}
    if fixed:
        skip |= {"content-length", "transfer-encoding", "x-amz-crc32"}
    kept = [(k, v) for k, v in headers if k.lower() not in skip]
    if fixed:
        kept.append(("Content-Length", str(len(body))))
        if any(k.lower() == "x-amz-crc32" for k, _ in headers):  # botocore checks DynamoDB's
            kept.append(("x-amz-crc32", str(zlib.crc32(body))))
    head = "\r\n".join([first, *(f"{k}: {v}" for k, v in kept), "", ""])
    return head.encode("latin-1") + body


def _reply(status: str, body: dict[str, Any]) -> bytes:
    """A response made up by the proxy, framed as DynamoDB frames its own (CRC32 included)."""
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amz-crc32", "")]
    headers.append(("x-amzn-RequestId", uuid.uuid4().hex))
    if "__type" in body:
        headers.append(("x-amzn-ErrorType", str(body["__type"]).rpartition("#")[2] + ":"))
    return _encode(status, headers, json.dumps(body).encode(), True)


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``size``, starting full."""

    def __init__(self, rate: float, size: float) -> None:
        self.rate, self.size, self.tokens, self.at = rate, size, size, time.monotonic()

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` whole tokens; return how many were taken."""
        now = time.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        taken = min(wanted, int(self.tokens))
        self.tokens -= taken
        return taken


_THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}


class _Proxy:
    def __init__(
        self, upstream: str, delay: float, rate: float, seed: int, capacity: float, burst: float
    ) -> None:
        parts = urlsplit(upstream)
        self.port = parts.port or 80
        self.delay, self.rate, self.rng = delay, rate, random.Random(seed)
        self.capacity, self.burst = capacity, burst
        self.buckets: dict[str, _Bucket] = {}  # per table, shared by every connection
        self.counts: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                first, headers = await _read_head(reader)
                body = await _read_body(reader, headers)
                if first.split()[1].startswith(_STATS):
                    writer.write(self._stats(first))
                else:
                    upstream, out = await self._handle(first, headers, body, upstream)
                    writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()

    def _stats(self, first: str) -> bytes:
        body = json.dumps(self.counts).encode()
        if "reset=1" in first:
            self.counts.clear()
        return _encode("HTTP/1.1 200 OK", [("Content-Type", "application/json")], body, True)

    async def _handle(
        self,
        first: str,
        headers: list[tuple[str, str]],
        body: bytes,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, bytes]:
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        operation = target.rpartition(".")[2] or "?"
        counts = self.counts[operation]
        counts["requests"] += 1
        withheld: dict[str, list[Any]] = {}
        if operation == "BatchWriteItem":
            request = json.loads(body)
            counts["entries"] += sum(len(r) for r in request["RequestItems"].values())
            if self.rate:
                withheld = self._withhold(request["RequestItems"])
        await asyncio.sleep(self.delay)
        if operation == "BatchWriteItem" and self.capacity:
            # Metered when the request reaches the table, after the delay.
            over = self._over_capacity(request["RequestItems"])
            if over and not request["RequestItems"]:  # nothing left to forward: throttled
                counts["throttled"] += 1
                return upstream, _reply("HTTP/1.1 400 Bad Request", _THROTTLED)
            for table, requests in over.items():
                withheld.setdefault(table, []).extend(requests)
        if withheld:
            counts["withheld"] += sum(len(r) for r in withheld.values())
            body = json.dumps(request).encode()
        if withheld and not request["RequestItems"]:  # nothing left to forward
            return upstream, _reply("HTTP/1.1 200 OK", {"UnprocessedItems": withheld})
        upstream, (status, rheaders, rbody) = await self._forward(first, headers, body, upstream)
        if withheld and status.split()[1] == "200":
            reply = json.loads(rbody)
            unprocessed = reply.setdefault("UnprocessedItems", {})
            for table, requests in withheld.items():
                unprocessed.setdefault(table, []).extend(requests)
            return upstream, _encode(status, rheaders, json.dumps(reply).encode(), True)
        framed = {k.lower(): v.lower() for k, v in rheaders}
        rewrap = "content-length" not in framed or framed.get("transfer-encoding") == "chunked"
        return upstream, _encode(status, rheaders, rbody, fixed=rewrap)

    def _over_capacity(self, items: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Keep in ``items`` what each table's bucket holds now; return the rest."""
        over: dict[str, list[Any]] = {}
        for table in list(items):
            bucket = self.buckets.get(table)
            if bucket is None:
                bucket = self.buckets[table] = _Bucket(self.capacity, self.capacity * self.burst)
            taken = bucket.take(len(items[table]))
            if taken < len(items[table]):
                over[table] = items[table][taken:]
                if taken:
                    items[table] = items[table][:taken]
                else:
                    del items[table]
        return over

    def _withhold(self, items: dict[str, list[Any]]) -> dict[str, list[Any]]:
        withheld: dict[str, list[Any]] = {}
        for table in list(items):
            keep = []
            for request in items[table]:
                if self.rng.random() < self.rate:
                    withheld.setdefault(table, []).append(request)
                else:
                    keep.append(request)
            if keep:
                items[table] = keep
            else:
                del items[table]
        return withheld

    async def _forward(
        self,
        first: str,
        headers: list[tuple[str, str]],
        body: bytes,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, tuple[str, Any, bytes]]:
        data = _encode(first, headers, body, fixed=True)
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed idle
            reused = upstream is not None
            if upstream is None:
                upstream = await asyncio.open_connection(_HOST, self.port)
            try:
                upstream[1].write(data)
                await upstream[1].drain()
                status, rheaders = await _read_head(upstream[0])
                rbody = await _read_body(upstream[0], rheaders, response=True)
            except (asyncio.IncompleteReadError, ConnectionError):
                upstream[1].close()
                upstream = None
                if not reused or attempt == 2:
                    raise
                continue
            fields = {k.lower(): v.lower() for k, v in rheaders}
            if fields.get("connection") == "close" or status.startswith("HTTP/1.0"):
                upstream[1].close()  # the next request opens a new upstream connection
                return None, ("HTTP/1.1" + status[8:], rheaders, rbody)
            return upstream, (status, rheaders, rbody)
        raise AssertionError("unreachable")


async def _main(
    upstream: str, delay: float, rate: float, seed: int, capacity: float, burst: float
) -> None:
    proxy = _Proxy(upstream, delay, rate, seed, capacity, burst)
    server = await asyncio.start_server(proxy.serve, _HOST, 0, backlog=256)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="latency proxy (started by LatencyProxy)")
    parser.add_argument("upstream")
    parser.add_argument("delay", type=float)
    parser.add_argument("rate", type=float)
    parser.add_argument("seed", type=int)
    parser.add_argument("capacity", type=float, help="items/s per table; 0: unlimited")
    parser.add_argument("burst", type=float, help="seconds of capacity the bucket holds")
    ns = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(ns.upstream, ns.delay, ns.rate, ns.seed, ns.capacity, ns.burst))
