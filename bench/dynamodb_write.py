"""BatchWriter throughput, client CPU and retry traffic against dynalite, side by side in one run.

Starts dynalite and a latency proxy (``bench/_proxy.py``, a fixed delay per request), then, each
scenario on a fresh table:

a. ``BatchWriter(concurrency=8)`` vs boto3's ``Table.batch_writer()``, both through the proxy;
b. the server's ceiling: raw ``batch_write_item`` of pre-serialized chunks from 8 threads,
   straight to dynalite (BatchWriter-through-proxy is printed as a share of it);
c. client CPU per item (``time.process_time``; dynalite is another process), straight to
   dynalite: ``BatchWriter(concurrency=1)`` vs a bare loop of ``batch_write_item`` on items
   serialized with boto3's ``TypeSerializer``;
d. the proxy returning 30% of entries in ``UnprocessedItems``: requests per item written and time
   to drain, ``BatchWriter`` (backoff through the retry core) vs ``Table.batch_writer()``
   (re-sends at once); every item is then counted in the table.

    python bench/dynamodb_write.py [--items 50000] [--delay-ms 5] [--unprocessed 0.3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
from _proxy import LatencyProxy
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config

from resilient_aws.dynamodb import BatchWriter
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing.emulators import dynalite

CONCURRENCY = 8
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
CITIES = ("Milan", "Lisbon", "Osaka", "Austin", "Nairobi", "Oslo", "Lima", "Perth")
_tables = iter(range(1, 1_000_000))


def make_items(count: int) -> list[dict[str, Any]]:
    """Orders of ~300-450 bytes: a string key, strings, numbers, a list and a map."""
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


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def ours(table: str, endpoint: str, items: list[Any], **options: Any) -> Callable[[], object]:
    cl = client(endpoint)

    def run() -> None:
        with BatchWriter(table, client=cl, keys="pk", **options) as writer:
            for item in items:
                writer.put(item)

    return run


def boto3_writer(table: str, endpoint: str, items: list[Any]) -> Callable[[], object]:
    resource = boto3.resource("dynamodb", endpoint_url=endpoint, **CREDENTIALS)

    def run() -> None:
        with resource.Table(table).batch_writer() as writer:
            for item in items:
                writer.put_item(Item=item)

    return run


def ceiling(table: str, direct: Any, items: list[Any]) -> Callable[[], object]:
    ser = TypeSerializer()
    wire = [{"PutRequest": {"Item": {k: ser.serialize(v) for k, v in i.items()}}} for i in items]
    chunks: Iterator[list[Any]] = iter([wire[i : i + 25] for i in range(0, len(wire), 25)])
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            assert not direct.batch_write_item(RequestItems={table: chunk})["UnprocessedItems"]

    def run() -> None:
        threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

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


def latency_ms(cl: Any, table: str, calls: int = 200) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        cl.get_item(TableName=table, Key={"pk": {"S": "order-000000001"}})
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def row(label: str, n: int, wall: float, extra: str = "") -> None:
    print(f"  {label:<44} {wall:7.2f} s {n / wall:9,.0f} items/s  {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--unprocessed", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n, delay = args.items, args.delay_ms / 1000
    items = make_items(n)
    size = statistics.mean(len(str(i)) for i in items[:1000])
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{n:,} items of ~{size:.0f} bytes (repr); proxy delay {args.delay_ms:g} ms/request")

    with dynalite() as ddb:
        direct = client(ddb.endpoint_url)
        with LatencyProxy(ddb.endpoint_url, delay=delay) as proxy:
            probe = new_table(direct)
            added = latency_ms(client(proxy.endpoint_url), probe) - latency_ms(direct, probe)
            print(f"GetItem round trip through the proxy minus direct: {added:.2f} ms (median)")

            print(f"a. throughput through the {args.delay_ms:g} ms proxy")
            t = new_table(direct)
            proxy.stats(reset=True)
            ours_wall, _ = timed(ours(t, proxy.endpoint_url, items, concurrency=CONCURRENCY))
            reqs = proxy.stats(reset=True)["BatchWriteItem"]["requests"]
            assert count(direct, t) == n
            row(f"BatchWriter(concurrency={CONCURRENCY})", n, ours_wall, f"{reqs} requests")
            t = new_table(direct)
            boto_wall, _ = timed(boto3_writer(t, proxy.endpoint_url, items))
            reqs = proxy.stats(reset=True)["BatchWriteItem"]["requests"]
            assert count(direct, t) == n
            row("boto3 Table.batch_writer()", n, boto_wall, f"{reqs} requests")
            print(f"  ratio {boto_wall / ours_wall:.2f}x  (target >= 3x)")

        print(f"b. server ceiling: raw batch_write_item, {CONCURRENCY} threads, no proxy")
        t = new_table(direct)
        ceil_wall, _ = timed(ceiling(t, direct, items))
        assert count(direct, t) == n
        row(f"raw batch_write_item x{CONCURRENCY} threads", n, ceil_wall)
        print(f"  BatchWriter through proxy = {100 * ceil_wall / ours_wall:.0f}% of it (target >= 75%)")

        print("c. client CPU per item, straight to dynalite (process CPU, dynalite excluded)")
        cpu: dict[str, list[float]] = {"ours": [], "bare": []}
        for _ in range(2):  # interleaved, so that drift hits both alike
            _, used = timed(ours(new_table(direct), ddb.endpoint_url, items, concurrency=1))
            cpu["ours"].append(used)
            _, used = timed(bare_loop(new_table(direct), direct, items))
            cpu["bare"].append(used)
        ours_cpu, bare_cpu = (min(v) / n * 1e6 for v in (cpu["ours"], cpu["bare"]))
        print(f"  BatchWriter(concurrency=1)                   {ours_cpu:7.1f} us CPU/item")
        print(f"  bare loop: TypeSerializer + batch_write_item {bare_cpu:7.1f} us CPU/item")
        print(f"  ratio {ours_cpu / bare_cpu:.3f}x  (target <= 1.15x)")

        rate = args.unprocessed
        print(f"d. proxy returning {rate:.0%} of entries as unprocessed ({args.delay_ms:g} ms)")
        policy = RetryPolicy(max_attempts=30, base_delay=0.02, max_delay=1.0)
        results = {}
        for label in ("BatchWriter(concurrency=8), backoff", "boto3 Table.batch_writer()"):
            t = new_table(direct)
            with LatencyProxy(ddb.endpoint_url, delay=delay, unprocessed_rate=rate) as proxy:
                if label.startswith("BatchWriter"):
                    run = ours(t, proxy.endpoint_url, items, concurrency=CONCURRENCY, policy=policy)
                else:
                    run = boto3_writer(t, proxy.endpoint_url, items)
                wall, _ = timed(run)
                stats = proxy.stats()["BatchWriteItem"]
            stored = count(direct, t)
            results[label] = wall
            extra = (
                f"{stats['requests'] / n:.3f} req/item, {stats['entries'] / n:.2f} entries "
                f"sent/item, {stats['withheld']:,} withheld, {stored:,}/{n:,} stored"
            )
            row(label, n, wall, extra)
            assert stored == n, f"{label}: {stored} of {n} items in the table"
        ours_d, boto_d = results.values()
        print(f"  time to drain, boto3 / ours: {boto_d / ours_d:.2f}x")


if __name__ == "__main__":
    main()
