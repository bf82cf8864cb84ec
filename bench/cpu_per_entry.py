"""Client CPU per entry: the library's writers against the loops they replace, in one run.

a. SqsSender, default options (concurrency 4) and concurrency 1, against hand-built
   ``send_message_batch`` requests of 10, both on botocore's ``Stubber`` (no server: what is
   measured is the client's own work, botocore's included).
b. The same over real HTTP to a moto server (another process): what a connection adds to both.
c. BatchWriter, concurrency 1 and 8, against a bare ``batch_write_item`` loop that serializes
   with boto3's ``TypeSerializer``, both over real HTTP to dynalite (another process).

CPU is ``time.process_time`` of this process (every thread), the least of interleaved rounds:
another process on the machine only ever adds to a round, so the least is the closest to the
cost; and the median of the ratios within each round (steadier: the machine's pace drifts between
rounds, less within one). Run: ``python bench/cpu_per_entry.py [--rounds 7] [--messages 20000] [--items 5000]
[--stubber-only]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.stub import Stubber

sys.path.insert(0, str(Path(__file__).parent))

from batch_send import moto_server
from dynamodb_write import CREDENTIALS, bare_loop, client, count, make_items, new_table

from resilient_aws.batch import SqsSender
from resilient_aws.dynamodb import BatchWriter
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing.emulators import dynalite

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"


def http_sqs(endpoint: str) -> Any:
    config = RetryPolicy().botocore_config().merge(Config(max_pool_connections=16))
    return boto3.client("sqs", endpoint_url=endpoint, config=config, **CREDENTIALS)


def stubbed_sqs(messages: int) -> Any:
    sqs = boto3.client("sqs", **CREDENTIALS)
    stubber = Stubber(sqs)
    ok = [{"Id": str(j), "MessageId": f"m{j}", "MD5OfMessageBody": "0" * 32} for j in range(10)]
    for _ in range(messages // 10):
        stubber.add_response("send_message_batch", {"Successful": ok, "Failed": []})
    stubber.activate()
    return sqs


def sqs_loop(bodies: list[str], sqs: Any = None, queue: str = QUEUE) -> float:
    sqs = sqs or stubbed_sqs(len(bodies))
    cpu = time.process_time()
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    return time.process_time() - cpu


def sqs_sender(sqs: Any = None, queue: str = QUEUE, **options: Any) -> Callable[[list[str]], float]:
    def run(bodies: list[str]) -> float:
        client = sqs or stubbed_sqs(len(bodies))
        cpu = time.process_time()
        with SqsSender(queue, client=client, **options) as sender:
            for body in bodies:
                sender.send_message(body)
        cpu = time.process_time() - cpu
        if sender.result.succeeded != len(bodies):
            raise SystemExit(f"SqsSender{options}: {sender.result}")
        return cpu

    return run


def least(runs: dict[str, Callable[[], float]], rounds: int, per: int) -> dict[str, list[float]]:
    """Microseconds per entry of each run, round by round (runs interleaved within a round)."""
    seen: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seen[name].append(run() / per * 1e6)
    return seen


def report(title: str, rounds: dict[str, list[float]], base: str) -> None:
    """The least of the rounds and its ratio, and the median of the ratios within a round: a
    round measures every run within seconds, so its ratio is steadier than a ratio of minima
    taken from different rounds."""
    print(title)
    least_base = min(rounds[base])
    for name, micros in rounds.items():
        ratios = [m / b for m, b in zip(micros, rounds[base], strict=True)]
        print(
            f"  {name:34s} {min(micros):7.1f} us  {min(micros) / least_base:.3f}x"
            f"   median of round ratios {statistics.median(ratios):.3f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    # moto's SQS slows down with every message it holds, even in deleted queues: keep it small
    parser.add_argument("--http-messages", type=int, default=1_000)
    parser.add_argument("--skip-stubber", action="store_true")
    parser.add_argument(
        "--stubber-only", action="store_true", help="only the Stubber rows: no server started"
    )
    args = parser.parse_args()

    bodies = [f'{{"order": {i}, "note": "{"x" * 60}"}}' for i in range(args.messages)]
    sqs_runs: dict[str, Callable[[], float]] = {
        "hand-built send_message_batch": lambda: sqs_loop(bodies),
        "SqsSender() (defaults)": lambda: sqs_sender()(bodies),
        "SqsSender(concurrency=1)": lambda: sqs_sender(concurrency=1)(bodies),
        "SqsSender(keep_answers=True)": lambda: sqs_sender(keep_answers=True)(bodies),
    }
    if not args.skip_stubber:
        figures = least(sqs_runs, args.rounds, len(bodies))
        report(f"SQS, Stubber, {len(bodies):,} messages", figures, "hand-built send_message_batch")
    if args.stubber_only:
        return

    few = bodies[: args.http_messages]
    with moto_server(in_process=False) as (endpoint, _):
        sqs = http_sqs(endpoint)
        queues = iter(range(1_000_000))

        made: list[str] = []

        def fresh() -> str:
            # a fresh queue per run, the last one deleted: moto's SQS slows down as it fills
            if made:
                sqs.delete_queue(QueueUrl=made.pop())
            made.append(str(sqs.create_queue(QueueName=f"cpu-{next(queues)}")["QueueUrl"]))
            return made[-1]

        http_runs: dict[str, Callable[[], float]] = {
            "hand-built send_message_batch": lambda: sqs_loop(few, sqs, fresh()),
            "SqsSender() (defaults)": lambda: sqs_sender(sqs, fresh())(few),
            "SqsSender(concurrency=1)": lambda: sqs_sender(sqs, fresh(), concurrency=1)(few),
        }
        figures = least(http_runs, args.rounds, len(few))
    report(
        f"SQS, moto server over HTTP, {len(few):,} messages",
        figures,
        "hand-built send_message_batch",
    )

    items = make_items(args.items)
    with dynalite() as emulator:
        endpoint = emulator.endpoint_url
        direct = client(endpoint)

        def timed(write: Callable[[str], None]) -> float:
            table = new_table(direct)
            cpu = time.process_time()
            write(table)
            cpu = time.process_time() - cpu
            if count(direct, table) != len(items):
                raise SystemExit(f"{table}: not every item written")
            return cpu

        def ours(concurrency: int) -> Callable[[], float]:
            config = RetryPolicy().botocore_config().merge(Config(max_pool_connections=16))
            dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, config=config, **CREDENTIALS)

            def write(table: str) -> None:
                with BatchWriter(table, client=dynamodb, keys="pk", concurrency=concurrency) as w:
                    for item in items:
                        w.put(item)

            return lambda: timed(write)

        loop_client = client(endpoint)
        ddb_runs: dict[str, Callable[[], float]] = {
            "bare batch_write_item loop": lambda: timed(
                lambda table: bare_loop(table, loop_client, items)()
            ),
            "BatchWriter(concurrency=1)": ours(1),
            "BatchWriter(concurrency=8)": ours(8),
        }
        figures = least(ddb_runs, args.rounds, len(items))
    report(
        f"DynamoDB, dynalite over HTTP, {len(items):,} items", figures, "bare batch_write_item loop"
    )


if __name__ == "__main__":
    main()
