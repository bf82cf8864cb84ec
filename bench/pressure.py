"""Retry under pressure (issue 12): BatchWriter vs boto3's Table.batch_writer(), throttled.

Starts dynalite and a latency proxy (``bench/_proxy.py``, ``--delay-ms`` per request) and writes
``--items`` items (those of ``bench/dynamodb_write.py``) in two scenarios:

a. capacity: the proxy meters each table at ``--capacity`` items/s, a token bucket holding
   ``--burst`` seconds of it, shared by every connection; each ``BatchWriteItem`` gets the excess
   back in ``UnprocessedItems``, and one it can forward nothing of gets HTTP 400
   ``ProvisionedThroughputExceededException``;
b. unprocessed: the proxy returns ``--unprocessed`` of the entries (random) in
   ``UnprocessedItems``.

Each scenario runs ``--rounds`` interleaved rounds (the order rotates each round) of three
writers, each run on a fresh table and through a fresh proxy (a full bucket; in b, the writers of
a round draw from the same seed, ``--seed`` + the round's index, so rounds are not replays):

* boto3 ``Table.batch_writer()`` on the default botocore config, whose retries take
  ``ProvisionedThroughputExceededException`` by themselves (botocore's attempts reach the proxy);
* ``BatchWriter(table, client=..., concurrency=C, policy=RetryPolicy(), keys="pk")`` with the
  default policy and a client built with ``RetryPolicy().botocore_config(max_pool_connections=..)``
  (the README's pattern), for ``C = --concurrency`` and for ``C = 1``. ``keys`` spares a
  ``DescribeTable``; every request the proxy saw is counted anyway.

Per run: wall time, requests the proxy saw (of every operation), entries sent, entries withheld
(returned in ``UnprocessedItems``), requests throttled (400), entries that finally failed
(BatchWriter: ``result.failed``; boto3 reports none, it raises: the error is printed) and items
in the table afterwards, counted straight from dynalite. Then per scenario the median over rounds
of BatchWriter(C) / boto3 for requests and for wall time, against issue 12's targets:

a. requests <= 0.7x, wall time <= 1.0x, nothing failed or missing in any round;
b. requests <= 1.2x, wall time <= 1.0x, nothing failed or missing in any round.

    python bench/pressure.py [--items 10000] [--rounds 3] [--concurrency 8] [--delay-ms 5]
        [--capacity 1000] [--burst 0.1] [--unprocessed 0.3] [--seed 7] [--scenarios ab] [--check]

``--check`` exits with status 1 when a target is missed (by default it only prints the verdict).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore
from _proxy import LatencyProxy
from botocore.config import Config
from dynamodb_write import count, make_items, new_table

from resilient_aws.dynamodb import BatchWriter
from resilient_aws.errors import BatchWriteError
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing.emulators import dynalite

BOTO3 = "boto3 Table.batch_writer()"
CREDENTIALS: dict[str, Any] = {
    "region_name": "us-east-1",
    "aws_access_key_id": "x",
    "aws_secret_access_key": "x",
}
# A writer: built (clients included) before the clock starts; writes items to a table and
# returns how many entries it reports as finally failed.
Write = Callable[[str, list[dict[str, Any]]], int]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    proxy: dict[str, Any]  # LatencyProxy options besides upstream and delay
    max_requests: float  # targets for BatchWriter(C) / boto3
    max_wall: float


@dataclass(frozen=True)
class Run:
    label: str
    wall: float
    requests: int
    entries: int
    withheld: int
    throttled: int
    failed: int
    stored: int
    error: str = ""


def boto3_writer(endpoint: str) -> Write:
    resource = boto3.resource("dynamodb", endpoint_url=endpoint, **CREDENTIALS)

    def write(table: str, items: list[dict[str, Any]]) -> int:
        with resource.Table(table).batch_writer() as writer:
            for item in items:
                writer.put_item(Item=item)
        return 0  # it retries UnprocessedItems without end and reports nothing: it raises

    return write


def batch_writer(concurrency: int) -> Callable[[str], Write]:
    return lambda endpoint: _batch_writer(endpoint, concurrency)


def ours_config(concurrency: int) -> Config:
    """The README's pattern: botocore's retries fitted under the policy's."""
    return RetryPolicy().botocore_config(max_pool_connections=max(10, 2 * concurrency))


def retries(client: Any) -> Any:
    """What botocore resolved for a client's retries (mode, attempts in all)."""
    return client.meta.config.retries


def _batch_writer(endpoint: str, concurrency: int) -> Write:
    config = ours_config(concurrency)
    client = boto3.client("dynamodb", endpoint_url=endpoint, config=config, **CREDENTIALS)

    def write(table: str, items: list[dict[str, Any]]) -> int:
        writer = BatchWriter(
            table, client=client, concurrency=concurrency, policy=RetryPolicy(), keys="pk"
        )
        try:
            with writer:
                for item in items:
                    writer.put(item)
        except BatchWriteError:
            pass  # counted from the result
        return len(writer.result.failed)

    return write


def measure(
    direct: Any,
    upstream: str,
    delay: float,
    scenario: Scenario,
    label: str,
    writer: Callable[[str], Write],
    items: list[Any],
    seed: int,
) -> Run:
    """One run on a fresh table through a fresh proxy; an exception is reported, not raised."""
    table = new_table(direct)
    with LatencyProxy(upstream, delay=delay, seed=seed, **scenario.proxy) as proxy:
        write = writer(proxy.endpoint_url)
        error, failed = "", 0
        start = time.perf_counter()
        try:
            failed = write(table, items)
        except Exception as exc:  # one failed run must not hide the others
            error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - start
        stats = proxy.stats()
    stored = count(direct, table)
    direct.delete_table(TableName=table)
    writes = stats.get("BatchWriteItem", {})
    return Run(
        label,
        wall,
        sum(op.get("requests", 0) for op in stats.values()),
        writes.get("entries", 0),
        writes.get("withheld", 0),
        writes.get("throttled", 0),
        failed,
        stored,
        error,
    )


def print_run(number: int, run: Run, n: int) -> None:
    failed = "raised" if run.error else f"{run.failed:,}"
    print(
        f"  {number:>5}  {run.label:<28} {run.wall:7.2f} {run.requests:9,} {run.entries:8,}"
        f" {run.withheld:9,} {run.throttled:10,} {failed:>7} {f'{run.stored:,}/{n:,}':>15}"
    )
    if run.error:
        print(f"         {run.error[:300]}")


HEADER = (
    f"  {'round':>5}  {'writer':<28} {'wall s':>7} {'requests':>9} {'entries':>8}"
    f" {'withheld':>9} {'throttled':>10} {'failed':>7} {'in table':>15}"
)


def verdict(scenario: Scenario, runs: list[list[Run]], label: str, n: int, targets: bool) -> bool:
    """Print the median ratios of ``label`` to boto3 over the rounds and, with ``targets``,
    whether they meet the scenario's; True unless they miss them."""
    pairs = [
        (next(r for r in rnd if r.label == label), next(r for r in rnd if r.label == BOTO3))
        for rnd in runs
    ]
    requests = statistics.median(ours.requests / max(1, boto.requests) for ours, boto in pairs)
    wall = statistics.median(ours.wall / boto.wall for ours, boto in pairs)
    failed = sum(ours.failed for ours, _ in pairs)
    missing = sum(n - ours.stored for ours, _ in pairs)
    errors = sum(bool(ours.error) for ours, _ in pairs)
    boto_bad = sum(bool(boto.error) or boto.stored != n for _, boto in pairs)
    text = (
        f"  {label} / boto3, median of {len(pairs)}: requests {requests:.2f}x, wall {wall:.2f}x;"
        f" {failed:,} failed, {missing:,} missing in all"
        + (f", {errors} run(s) raised" if errors else "")
    )
    if boto_bad:
        text += f" (boto3 raised or lost items in {boto_bad} round(s))"
    print(text)
    if not targets:
        return True
    ok = (
        requests <= scenario.max_requests
        and wall <= scenario.max_wall
        and not failed + missing + errors
    )
    print(
        f"    targets: requests <= {scenario.max_requests:.2f}x, wall <= {scenario.max_wall:.2f}x,"
        f" nothing failed or missing: {'MET' if ok else 'MISSED'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--capacity", type=float, default=1000.0, help="items/s per table")
    parser.add_argument("--burst", type=float, default=0.1, help="seconds of capacity banked")
    parser.add_argument("--unprocessed", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenarios", default="ab", help="a: capacity, b: unprocessed")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    n, delay = args.items, args.delay_ms / 1000
    items = make_items(n)
    ours = f"BatchWriter(concurrency={args.concurrency})"  # the one issue 12's targets are for
    writers = {BOTO3: boto3_writer, ours: batch_writer(args.concurrency)}
    writers.setdefault("BatchWriter(concurrency=1)", batch_writer(1))
    labels = list(writers)
    attempts = RetryPolicy().max_attempts
    scenarios = [
        Scenario(
            "a",
            f"capacity {args.capacity:,.0f} items/s per table (bucket of {args.burst:g} s)",
            {"capacity": args.capacity, "burst": args.burst},
            max_requests=0.7,
            max_wall=1.0,
        ),
        Scenario(
            "b",
            f"{args.unprocessed:.0%} of entries returned unprocessed (random); an entry sent"
            f" {attempts} times is withheld every time with p = {args.unprocessed:g}^{attempts}:"
            f" {n * args.unprocessed**attempts:.2f} of {n:,} expected",
            {"unprocessed_rate": args.unprocessed},
            max_requests=1.2,
            max_wall=1.0,
        ),
    ]
    boto3_retries = retries(boto3.client("dynamodb", **CREDENTIALS))
    ours_retries = retries(boto3.client("dynamodb", config=ours_config(1), **CREDENTIALS))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"boto3 {boto3.__version__}, botocore {botocore.__version__}; {RetryPolicy()}")
    print(f"botocore retries: boto3's client {boto3_retries}, BatchWriter's client {ours_retries}")
    floor = max(0.0, n / args.capacity - args.burst)
    print(f"{n:,} items, proxy delay {args.delay_ms:g} ms/request")
    print(f"floors: {-(-n // 25):,} requests (25 items each), {floor:.1f} s at capacity (a)")
    begin = time.perf_counter()
    met = True
    with dynalite() as ddb:
        direct = boto3.client("dynamodb", endpoint_url=ddb.endpoint_url, **CREDENTIALS)
        for scenario in (s for s in scenarios if s.key in args.scenarios):
            print(f"{scenario.key}. {scenario.title}, {args.rounds} rounds\n{HEADER}")
            runs: list[list[Run]] = []
            for number in range(1, args.rounds + 1):
                shift = (number - 1) % len(labels)
                order = labels[shift:] + labels[:shift]
                runs.append([])
                for label in order:
                    writer, seed = writers[label], args.seed + number - 1
                    run = measure(
                        direct, ddb.endpoint_url, delay, scenario, label, writer, items, seed
                    )
                    print_run(number, run, n)
                    runs[-1].append(run)
            for label in labels[1:]:
                met = verdict(scenario, runs, label, n, targets=label == ours) and met
    print(f"run time {time.perf_counter() - begin:.0f} s")
    if args.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
