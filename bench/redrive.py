"""DLQ redrive throughput: redrive_sqs vs a plain receive -> send -> delete loop, in one run.

``--messages`` SQS messages (~200-byte JSON bodies, two message attributes) wait in a
dead-letter queue on a moto server; each side moves them all to a target queue through a
latency proxy (``bench/_proxy.py``, ``--delay-ms`` per request):

- the plain loop receives 10 messages, sends them with ``send_message_batch``, deletes them
  with ``delete_message_batch``, one batch at a time (what a script does);
- ``redrive_sqs(concurrency=N)`` runs N receive workers, each with a batch in flight, sending
  with ``SqsSender`` and deleting only what was sent;
- the ceiling: the plain loop in N threads straight to the server (no proxy), what this server
  can do at all; moto spends a few ms of CPU per request in one process, which bounds the rest.

moto 5's SQS scans a whole queue several times per message it stores or returns (approximate
counts, a retention check, receipt-handle lookups), so a queue of 10,000 messages would take
seconds per call and measure moto, not the client. The server process runs with those scans
replaced by constant-time equivalents (``resilient_aws.testing._moto_sqs``, with approximate
counts), the same server for both sides. Every message is counted at both ends, and the proxy's
request counts per operation are printed.

    python bench/redrive.py [--messages 10000] [--delay-ms 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import moto
from _proxy import LatencyProxy
from batch_send import moto_server
from botocore.config import Config

from resilient_aws.redrive import redrive_sqs

CREDENTIALS: dict[str, Any] = {
    "region_name": "us-east-1",
    "aws_access_key_id": "x",
    "aws_secret_access_key": "x",
}
SERVER = """
from resilient_aws.testing._moto_sqs import speed_up_moto_sqs
speed_up_moto_sqs(approximate_counts=True)
from moto.moto_server.werkzeug_app import MotoRequestHandler
MotoRequestHandler.protocol_version = "HTTP/1.1"  # keep connections alive, as AWS does
from moto.server import main
main(["-H", "127.0.0.1", "-p", "{port}"])
"""


def client(endpoint: str, pool: int) -> Any:
    return boto3.client(
        "sqs", endpoint_url=endpoint, config=Config(max_pool_connections=pool), **CREDENTIALS
    )


def entries(start: int, count: int) -> list[dict[str, Any]]:
    body = '{{"order_id": "order-{:09d}", "customer": "customer-{:05d}", "amount": "{:.2f}", '
    body += '"currency": "EUR", "note": "redrive me, the payment service is back"}}'
    return [
        {
            "Id": str(i),
            "MessageBody": body.format(n, n % 9973, n * 37 % 10**5 / 100),
            "MessageAttributes": {
                "order": {"DataType": "Number", "StringValue": str(n)},
                "kind": {"DataType": "String", "StringValue": "order"},
            },
        }
        for i, n in enumerate(range(start, start + count))
    ]


def depth(sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def setup(direct: Any, name: str, count: int) -> tuple[str, str]:
    """A DLQ holding ``count`` messages and an empty target queue."""
    dlq = direct.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    target = direct.create_queue(QueueName=name)["QueueUrl"]
    with ThreadPoolExecutor(8) as pool:
        for response in pool.map(
            lambda start: direct.send_message_batch(QueueUrl=dlq, Entries=entries(start, 10)),
            range(0, count, 10),
        ):
            if response.get("Failed"):
                raise SystemExit(f"seeding failed: {response['Failed']}")
    if depth(direct, dlq) != (count, 0):
        raise SystemExit(f"the DLQ holds {depth(direct, dlq)}, not {count}")
    return dlq, target


def plain_loop(sqs: Any, dlq: str, target: str) -> int:
    """Receive 10, send them, delete them; one batch at a time until the DLQ answers empty."""
    moved = 0
    while messages := sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=120, MessageAttributeNames=["All"]
    ).get("Messages", []):
        batch = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageAttributes": {
                    k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
                    for k, v in m.get("MessageAttributes", {}).items()
                },
            }
            for i, m in enumerate(messages)
        ]
        sent = sqs.send_message_batch(QueueUrl=target, Entries=batch)
        ok = {int(s["Id"]) for s in sent.get("Successful", [])}
        deleted = sqs.delete_message_batch(
            QueueUrl=dlq,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)
                if i in ok
            ],
        )
        moved += len(deleted.get("Successful", []))
    return moved


def raw_threads(sqs: Any, dlq: str, target: str, threads: int) -> int:
    """The plain loop in ``threads`` threads straight to the server: what the server can do."""
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda _: plain_loop(sqs, dlq, target), range(threads)))


def ours(sqs: Any, dlq: str, target: str, concurrency: int) -> int:
    report = redrive_sqs(
        dlq, target_queue_url=target, client=sqs, wait_time_s=0, concurrency=concurrency
    )
    if not report.ok:
        raise SystemExit(f"redrive failed: {report}")
    return report.moved


def cpu_of(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def measure(name: str, run: Callable[[], int], count: int, pid: int) -> dict[str, Any]:
    wall, cpu, srv = time.perf_counter(), time.process_time(), cpu_of(pid)
    moved = run()
    wall, cpu, srv = time.perf_counter() - wall, time.process_time() - cpu, cpu_of(pid) - srv
    if moved != count:
        raise SystemExit(f"{name}: moved {moved}, expected {count}")
    return {"name": name, "wall": wall, "rate": moved / wall, "cpu": cpu, "srv": srv}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="a multiple of 10")
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.messages <= 0 or args.messages % 10:
        parser.error("--messages must be a positive multiple of 10")
    n = args.messages
    started, load0 = time.perf_counter(), os.getloadavg()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{n:,} messages (~200-byte JSON bodies, 2 attributes) in a standard DLQ; moto")
    print(f"{moto.__version__} server in its own process (SQS made constant-cost, see the docs);")
    print(f"latency proxy (+{args.delay_ms:g} ms per request) in its own process")

    rows: list[dict[str, Any]] = []
    with moto_server(in_process=False, python_code=SERVER) as (endpoint, pid):
        direct = client(endpoint, 16)
        with LatencyProxy(endpoint, delay=args.delay_ms / 1000) as proxy:
            proxied = client(proxy.endpoint_url, 2 * args.concurrency)
            scenarios: list[tuple[str, Callable[[str, str], int]]] = [
                ("plain loop, one batch at a time", lambda d, t: plain_loop(proxied, d, t)),
                (
                    f"redrive_sqs(concurrency={args.concurrency})",
                    lambda d, t: ours(proxied, d, t, args.concurrency),
                ),
            ]
            scenarios.append(
                (
                    f"ceiling: plain loop, {args.concurrency} threads, no proxy",
                    lambda d, t: raw_threads(direct, d, t, args.concurrency),
                )
            )
            for index, (name, run) in enumerate(scenarios):
                dlq, target = setup(direct, f"bench{index}", n)
                proxy.stats(reset=True)
                row = measure(
                    name, lambda run=run, dlq=dlq, target=target: run(dlq, target), n, pid
                )
                row["requests"] = proxy.stats()
                rows.append(row)
                if depth(direct, dlq) != (0, 0) or depth(direct, target) != (n, 0):
                    raise SystemExit(
                        f"{name}: DLQ {depth(direct, dlq)}, target {depth(direct, target)}"
                    )

    print(f"\n{'':44} {'time':>7} {'msg/s':>7} {'client CPU/msg':>15} {'server CPU/msg':>15}")
    for row in rows:
        client_cpu = f"{row['cpu'] / n * 1e6:12.0f} us"
        server_cpu = f"{row['srv'] / n * 1e6:12.0f} us"
        print(f"{row['name']:44} {row['wall']:6.2f}s {row['rate']:7,.0f} {client_cpu} {server_cpu}")
    for row in rows[:2]:
        calls = ", ".join(
            f"{op} {c['requests']}" for op, c in sorted(row["requests"].items()) if op != "?"
        )
        print(f"  {row['name']}: {calls}")
    loop, redrive, ceiling = (row["rate"] for row in rows)
    print(f"redrive_sqs / plain loop: {redrive / loop:.2f}x  (target >= 3x)")
    print(f"  bound set by this server: ceiling / plain loop {ceiling / loop:.2f}x;")
    print(f"  redrive_sqs through the proxy reaches {redrive / ceiling:.0%} of the ceiling")
    print(f"checked: {n:,} moved by each, every DLQ empty, every target holding {n:,}")
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    elapsed = time.perf_counter() - started
    print(f"run time {elapsed:.0f} s; load average {load0[0]:.2f} at start, {load1} at end")
    print(
        json.dumps({"ratio": round(redrive / loop, 2), "of_ceiling": round(redrive / ceiling, 2)})
    )


if __name__ == "__main__":
    main()
