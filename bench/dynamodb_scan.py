"""parallel_scan throughput against dynalite behind a latency proxy, side by side in one run.

Starts dynalite, loads a table (``BatchWriter(concurrency=8)`` straight to dynalite), starts the
latency proxy (``bench/_proxy.py``, a fixed delay per request) and reads the whole table:

a. ``parallel_scan(table, segments=8)`` vs boto3's scan paginator, both through the proxy; both
   hand out plain Python values (the paginator's pages go through boto3's ``TypeDeserializer``,
   as users of the paginator do), and both counts must equal the items loaded;
b. the server's ceiling: 8 threads each scanning one raw segment (``TotalSegments=8``, wire
   items, no deserialization) straight to dynalite; parallel_scan-through-proxy is printed as a
   share of it.

Each variant runs ``--rounds`` times, interleaved; the median is printed with every round, the
CPU microseconds per item of this process (the client), of dynalite and of the proxy (from
/proc, Linux only), and at the end how much CPU other processes took meanwhile.

    python bench/dynamodb_scan.py [--items 100000] [--rounds 3] [--delay-ms 5] [--segments 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _proxy import LatencyProxy
from boto3.dynamodb.types import TypeDeserializer
from dynamodb_write import (
    child_cpu,
    client,
    machine_cpu,
    make_items,
    new_table,
    print_others,
    timed,
)

from resilient_aws.dynamodb import BatchWriter, parallel_scan
from resilient_aws.testing.emulators import dynalite


def ours(table: str, endpoint: str, segments: int) -> Callable[[], int]:
    cl = client(endpoint)

    def run() -> int:
        return sum(1 for _ in parallel_scan(table, segments=segments, client=cl))

    return run


def paginator(table: str, endpoint: str) -> Callable[[], int]:
    cl, des = client(endpoint), TypeDeserializer()

    def run() -> int:
        seen = 0
        for page in cl.get_paginator("scan").paginate(TableName=table):
            items = [{k: des.deserialize(v) for k, v in i.items()} for i in page["Items"]]
            seen += len(items)
        return seen

    return run


def ceiling(table: str, endpoint: str, segments: int) -> Callable[[], int]:
    cl = client(endpoint)
    counts = [0] * segments

    def segment(number: int) -> None:
        request: dict[str, Any] = {"TableName": table, "Segment": number}
        while True:
            page = cl.scan(TotalSegments=segments, **request)
            counts[number] += len(page["Items"])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def run() -> int:
        counts[:] = [0] * segments
        threads = [threading.Thread(target=segment, args=(s,)) for s in range(segments)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts)

    return run


class Samples:
    """Rounds of one variant: wall time, CPU per process, and requests seen by the proxy."""

    def __init__(self, label: str, run: Callable[[], int], proxy: LatencyProxy | None) -> None:
        self.label, self.run, self.proxy = label, run, proxy
        self.walls: list[float] = []
        self.cpus: list[tuple[float, float, float]] = []
        self.requests = 0

    def take(self, n: int) -> None:
        before = child_cpu("node"), child_cpu("python")
        if self.proxy is not None:
            self.proxy.stats(reset=True)
        wall, cpu, seen = timed(self.run)
        assert seen == n, f"{self.label}: {seen:,} items read, {n:,} expected"
        after = child_cpu("node"), child_cpu("python")
        self.walls.append(wall)
        self.cpus.append((cpu, after[0] - before[0], after[1] - before[1]))
        if self.proxy is not None:
            self.requests = self.proxy.stats()["Scan"]["requests"]

    def print(self, n: int) -> float:
        wall = statistics.median(self.walls)
        us = " ".join(
            f"{statistics.median(c) / n * 1e6:5.0f}" for c in zip(*self.cpus, strict=True)
        )
        each = ", ".join(f"{w:.2f}" for w in self.walls)
        print(f"  {self.label:<40} {wall:6.2f} s {n / wall:8,.0f}/s {us}   rounds: {each} s")
        return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--segments", type=int, default=8)
    args = parser.parse_args()
    n, segments, rounds, ms = args.items, args.segments, args.rounds, f"{args.delay_ms:g} ms"
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    begin = machine_cpu()
    with dynalite() as ddb:
        direct = client(ddb.endpoint_url)
        table = new_table(direct)
        start = time.perf_counter()
        with BatchWriter(table, client=direct, keys="pk", concurrency=8) as writer:
            writer.put_many(make_items(n))
        print(f"loaded {n:,} items in {time.perf_counter() - start:.1f} s (BatchWriter x8, direct)")

        with LatencyProxy(ddb.endpoint_url, delay=args.delay_ms / 1000) as proxy:
            url, raw = proxy.endpoint_url, ceiling(table, ddb.endpoint_url, segments)
            variants = [
                Samples(
                    f"a. parallel_scan(segments={segments})", ours(table, url, segments), proxy
                ),
                Samples("a. boto3 paginator + TypeDeserializer", paginator(table, url), proxy),
                Samples(f"b. raw scan x{segments} segments", raw, None),
            ]
            for _ in range(rounds):
                for variant in variants:
                    variant.take(n)
        print(f"a. full scan through the {ms} proxy; b. straight to dynalite; {rounds} rounds")
        print(f"  {'':<40} {'median':>8} {'items':>10} CPU us/item: client, dynalite, proxy")
        ours_wall, boto_wall, ceil_wall = (v.print(n) for v in variants)
        pages, boto_pages = variants[0].requests, variants[1].requests
        share = boto_pages * args.delay_ms / 1000 / boto_wall
        print(f"  Scan requests per read: parallel_scan {pages}, paginator {boto_pages}")
        print(f"  a. ratio {boto_wall / ours_wall:.2f}x (target >= 3x); the added delay is")
        print(f"     {share:.1%} of the paginator's time (requests x delay / wall)")
        print(f"  b. parallel_scan via proxy = {ceil_wall / ours_wall:.0%} of it (target >= 75%)")
        print_others(begin)


if __name__ == "__main__":
    main()
