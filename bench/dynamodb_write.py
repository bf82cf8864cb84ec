"""BatchWriter throughput, client CPU and retry traffic against dynalite, side by side in one run.

Starts dynalite and a latency proxy (``bench/_proxy.py``, a fixed delay per request), then, each
scenario on a fresh table (a and b run interleaved in ``--rounds`` blocks, so that drift in a
shared machine's speed hits all three alike):

a. ``BatchWriter(concurrency=8)`` vs boto3's ``Table.batch_writer()``, both through the proxy;
b. the server's ceiling: raw ``batch_write_item`` of pre-serialized chunks from 8 threads,
   straight to dynalite (BatchWriter-through-proxy is printed as a share of it);
c. client CPU per item (``time.process_time``; dynalite is another process), straight to
   dynalite: ``BatchWriter(concurrency=1)`` vs a bare loop of ``batch_write_item`` on items
   serialized with boto3's ``TypeSerializer``; then the same against botocore's ``Stubber`` (no
   server, no network: only client work is left), where the loop also runs on items serialized
   before the clock starts;
d. the proxy returning 30% of entries in ``UnprocessedItems``: requests per item written and time
   to drain, ``BatchWriter`` (backoff through the retry core) vs ``Table.batch_writer()``
   (re-sends at once); every item is then counted in the table.

    python bench/dynamodb_write.py [--items 50000] [--rounds 5] [--delay-ms 5] [--unprocessed 0.3]

Columns: wall time, items/s, CPU microseconds per item of this process (the client), of
dynalite and of the proxy (from /proc, Linux only), requests the proxy saw. The last line says
how much CPU other processes took meanwhile: on a shared machine they skew every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from _proxy import LatencyProxy
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.stub import Stubber

from resilient_aws.dynamodb import BatchWriter, item_size, serialize_item
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing.emulators import dynalite

CONCURRENCY = 8
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
CITIES = ("Milan", "Lisbon", "Osaka", "Austin", "Nairobi", "Oslo", "Lima", "Perth")
_tables = iter(range(1, 1_000_000))


def make_items(count: int) -> list[dict[str, Any]]:
    """Orders of 290-450 bytes: a string key, strings, numbers, a list and a map."""
    return [
        {
            "pk": f"order-{i:09d}",
            "customer": f"customer-{i % 9973:05d}",
            "city": CITIES[i % len(CITIES)],
            "status": ("new", "paid", "shipped")[i % 3],
            "total": Decimal(i % 100_000) / 100,
            "quantity": i % 17 + 1,
            "created_at": f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}T12:{i % 60:02d}:00Z",
            "tags": ["priority" if i % 7 == 0 else "standard", CITIES[i % 5].lower()],
            "address": {"street": f"{i % 400} Long Street", "zip": f"{i % 99999:05d}"},
            "note": "gift wrap, leave at the door; " * (4 + i % 6),
        }
        for i in range(count)
    ]


def client(endpoint: str) -> Any:
    config = Config(max_pool_connections=CONCURRENCY * 2)
    return boto3.client("dynamodb", endpoint_url=endpoint, config=config, **CREDENTIALS)


def new_table(direct: Any) -> str:
    name = f"bench-write-{next(_tables)}"
    direct.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def count(direct: Any, table: str) -> int:
    pages = direct.get_paginator("scan").paginate(TableName=table, Select="COUNT")
    return sum(page["Count"] for page in pages)


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds, result) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def child_cpu(comm: str | None = None) -> float:
    """CPU seconds used so far by this process's live children (named ``comm``); Linux only."""
    total = 0.0
    for tasks in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # a thread or child may be gone by now
            for pid in tasks.read_text().split():
                if comm is None or Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_cpu() -> tuple[float, float, float]:
    """(now, CPU seconds of this process tree, CPU seconds the machine was busy); Linux only."""
    times, busy = os.times(), 0.0
    with contextlib.suppress(OSError):
        ticks = [int(x) for x in Path("/proc/stat").read_text().split()[1:8]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
    return time.perf_counter(), sum(times[:4]) + child_cpu(), busy


def print_others(start: tuple[float, float, float]) -> None:
    """How busy other processes kept the machine since ``start`` (they skew every figure)."""
    (t0, mine0, busy0), (t1, mine1, busy1) = start, machine_cpu()
    others = max(0.0, (busy1 - busy0) - (mine1 - mine0)) / (t1 - t0)
    print(f"run time {t1 - t0:.0f} s; other processes used {others:.2f} of {os.cpu_count()} CPUs")


def ours(table: str, endpoint: str, items: list[Any], **options: Any) -> Callable[[], float]:
    """Write ``items`` with a BatchWriter; the run returns the seconds its final flush took."""
    cl = client(endpoint)

    def run() -> float:
        with BatchWriter(table, client=cl, keys="pk", **options) as writer:
            for item in items:
                writer.put(item)
            tail = time.perf_counter()
        return time.perf_counter() - tail

    return run


def boto3_writer(table: str, endpoint: str, items: list[Any]) -> Callable[[], float]:
    resource = boto3.resource("dynamodb", endpoint_url=endpoint, **CREDENTIALS)

    def run() -> float:
        with resource.Table(table).batch_writer() as writer:
            for item in items:
                writer.put_item(Item=item)
            tail = time.perf_counter()
        return time.perf_counter() - tail

    return run


def ceiling(table: str, direct: Any, items: list[Any]) -> Callable[[], object]:
    ser = TypeSerializer()
    wire = [{"PutRequest": {"Item": {k: ser.serialize(v) for k, v in i.items()}}} for i in items]
    chunks = [{table: wire[i : i + 25]} for i in range(0, len(wire), 25)]

    def run() -> None:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            for done in pool.map(lambda c: direct.batch_write_item(RequestItems=c), chunks):
                assert not done["UnprocessedItems"]

    return run


def bare_loop(table: str, direct: Any, items: list[Any]) -> Callable[[], object]:
    def run() -> None:
        ser = TypeSerializer()
        for start in range(0, len(items), 25):
            chunk = [
                {"PutRequest": {"Item": {k: ser.serialize(v) for k, v in item.items()}}}
                for item in items[start : start + 25]
            ]
            direct.batch_write_item(RequestItems={table: chunk})

    return run


def stubbed_cpu(items: list[Any], way: str) -> float:
    """CPU seconds per item of writing ``items`` with a Stubber-backed client, ``way`` being
    ``"ours"`` (BatchWriter), ``"loop"`` (bare loop, serializing) or ``"pre"`` (bare loop on
    items serialized before the clock starts)."""
    cl = boto3.client("dynamodb", **CREDENTIALS)
    stubber = Stubber(cl)
    for _ in range(0, len(items), 25):
        stubber.add_response("batch_write_item", {"UnprocessedItems": {}})
    ser = TypeSerializer()
    wire = [{"PutRequest": {"Item": {k: ser.serialize(v) for k, v in i.items()}}} for i in items]
    chunks = [wire[i : i + 25] for i in range(0, len(wire), 25)]
    with stubber:
        cpu = time.process_time()
        if way == "ours":
            with BatchWriter("stubbed", client=cl, keys="pk") as writer:
                for item in items:
                    writer.put(item)
            written = writer.result.succeeded
        elif way == "loop":
            bare_loop("stubbed", cl, items)()
            written = len(items)
        else:
            for chunk in chunks:
                cl.batch_write_item(RequestItems={"stubbed": chunk})
            written = len(items)
        cpu = time.process_time() - cpu
        stubber.assert_no_pending_responses()  # every stubbed call made, no more
    if written != len(items):
        raise SystemExit(f"stubbed {way}: {written} of {len(items)} items written")
    return cpu / len(items)


def latency_ms(cl: Any, table: str, calls: int = 200) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        cl.get_item(TableName=table, Key={"pk": {"S": "order-000000001"}})
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


class Tally:
    """Wall time, CPU of each process and requests, summed over the blocks of one scenario."""

    def __init__(self, label: str, proxy: LatencyProxy | None = None) -> None:
        self.label, self.proxy = label, proxy
        self.wall, self.cpu, self.requests, self.result = 0.0, [0.0, 0.0, 0.0], 0, None

    def run(self, run: Callable[[], Any]) -> Tally:
        before = time.process_time(), child_cpu("node"), child_cpu("python")
        if self.proxy is not None:
            self.proxy.stats(reset=True)
        wall, _, self.result = timed(run)
        self.wall += wall
        after = time.process_time(), child_cpu("node"), child_cpu("python")
        self.cpu = [c + a - b for c, a, b in zip(self.cpu, after, before, strict=True)]
        if self.proxy is not None:
            self.requests += self.proxy.stats()["BatchWriteItem"]["requests"]
        return self

    def print(self, n: int) -> float:
        us = " ".join(f"{c / n * 1e6:5.0f}" for c in self.cpu)
        reqs = f"{self.requests:6,} requests" if self.proxy else ""
        print(f"  {self.label:<38} {self.wall:6.2f} s {n / self.wall:7,.0f}/s {us}  {reqs}")
        return self.wall


HEADER = f"  {'':<38} {'wall':>8} {'items':>9} CPU us/item: client, dynalite, proxy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--unprocessed", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n, delay, ms = args.items, args.delay_ms / 1000, f"{args.delay_ms:g} ms"
    begin, items = machine_cpu(), make_items(n)
    blocks = [items[i :: args.rounds] for i in range(args.rounds)]
    size = statistics.mean(item_size(serialize_item(i)) for i in items)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{n:,} items, {size:.0f} bytes on average (DynamoDB's size); proxy delay {ms}/request")
    with dynalite() as ddb:
        direct, url = client(ddb.endpoint_url), ddb.endpoint_url
        with LatencyProxy(url, delay=delay) as proxy:
            t = new_table(direct)
            added = latency_ms(client(proxy.endpoint_url), t) - latency_ms(direct, t)
            print(f"GetItem round trip through the proxy minus direct: {added:.2f} ms (median)")
            print(f"a. through the {ms} proxy, b. straight to dynalite ({args.rounds} rounds)")
            print(HEADER)
            tables = [new_table(direct) for _ in range(3)]
            ours_t = Tally(f"a. BatchWriter(concurrency={CONCURRENCY})", proxy)
            boto_t = Tally("a. boto3 Table.batch_writer()", proxy)
            ceil_t = Tally(f"b. raw batch_write_item x{CONCURRENCY} threads")
            for block in blocks:
                ours_t.run(ours(tables[0], proxy.endpoint_url, block, concurrency=CONCURRENCY))
                boto_t.run(boto3_writer(tables[1], proxy.endpoint_url, block))
                ceil_t.run(ceiling(tables[2], direct, block))
            ours_wall, boto_wall, ceil_wall = (t.print(n) for t in (ours_t, boto_t, ceil_t))
            assert [count(direct, t) for t in tables] == [n, n, n]
            share = boto_t.requests * delay / boto_wall
            print(f"  a. ratio {boto_wall / ours_wall:.2f}x (target >= 3x); the added delay is")
            print(f"     {share:.0%} of boto3's time (requests x delay / wall)")
            print(f"  b. BatchWriter via proxy = {ceil_wall / ours_wall:.0%} of it (target >= 75%)")

        print("c. client CPU per item, straight to dynalite, interleaved in blocks of 1,000")
        tables, cpu = [new_table(direct), new_table(direct)], [0.0, 0.0]
        for start in range(0, n, 1000):
            part = items[start : start + 1000]
            cpu[0] += timed(ours(tables[0], url, part, concurrency=1))[1]
            cpu[1] += timed(bare_loop(tables[1], direct, part))[1]
        ours_cpu, bare_cpu = (c / n * 1e6 for c in cpu)
        print(f"  BatchWriter(concurrency=1)                     {ours_cpu:6.1f} us CPU/item")
        print(f"  bare loop: TypeSerializer + batch_write_item   {bare_cpu:6.1f} us CPU/item")
        print(f"  ratio {ours_cpu / bare_cpu:.3f}x  (target <= 1.15x)")
        part = items[: min(n, 10_000)]
        stubbed: dict[str, list[float]] = {"ours": [], "loop": [], "pre": []}
        for _ in range(args.rounds):  # interleaved so that drift hits all three alike
            for way, runs in stubbed.items():
                runs.append(stubbed_cpu(part, way))
        ours_s, loop_s, pre_s = (statistics.median(r) * 1e6 for r in stubbed.values())
        print(
            f"  the same against botocore's Stubber, {len(part):,} items, median of {args.rounds}"
        )
        print(f"  BatchWriter(concurrency=1)                     {ours_s:6.1f} us CPU/item")
        print(f"  bare loop: TypeSerializer + batch_write_item   {loop_s:6.1f} us CPU/item")
        print(f"  bare loop on items serialized beforehand       {pre_s:6.1f} us CPU/item")
        print(f"  ratios {ours_s / loop_s:.3f}x, {ours_s / pre_s:.3f}x (target <= 1.15x)")

        rate = args.unprocessed
        print(f"d. the {ms} proxy returns {rate:.0%} of entries as unprocessed\n{HEADER}")
        policy = RetryPolicy(max_attempts=30, base_delay=0.02, max_delay=1.0)
        walls = []
        for label in (f"BatchWriter(concurrency={CONCURRENCY})", "boto3 Table.batch_writer()"):
            t = new_table(direct)
            with LatencyProxy(url, delay=delay, unprocessed_rate=rate, seed=args.seed) as lossy:
                if label.startswith("BatchWriter"):
                    run = ours(t, lossy.endpoint_url, items, concurrency=CONCURRENCY, policy=policy)
                else:
                    run = boto3_writer(t, lossy.endpoint_url, items)
                tally = Tally(label, lossy).run(run)
                walls.append(tally.print(n))
                stats = lossy.stats()["BatchWriteItem"]
            stored = count(direct, t)
            print(
                f"    {stats['requests'] / n:.4f} requests/item, {stats['entries'] / n:.3f} entries"
                f" sent/item ({stats['withheld']:,} withheld), final flush {tally.result:.2f} s,"
                f" {stored:,}/{n:,} items in the table"
            )
            assert stored == n, f"{label}: {stored} of {n} items in the table"
        print(f"  time to write everything, boto3 / ours: {walls[1] / walls[0]:.2f}x")
        print_others(begin)


if __name__ == "__main__":
    main()
