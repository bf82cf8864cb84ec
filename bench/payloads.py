"""Claim-check overhead: SqsSender with a PayloadStore against a plain S3 put + send, in one run.

Both sides send the same ``--messages`` bodies of ``--size`` bytes (all over the extended
clients' 256 KiB threshold, so every one is offloaded) to one moto backend in this process:

* plain: for each message ``s3.put_object`` (a UUID key), then ``send_message_batch`` of the
  extended client's pointer body and ``ExtendedPayloadSize`` attribute, ten at a time: what a
  hand-written claim-check does, with no retries and no cleanup;
* resilient_aws: ``SqsSender(payloads=PayloadStore(...), concurrency=1)``: the same calls
  through the retry core, the batch engine's accounting and the cleanup hook.

moto stores every object and message on both sides, so its time is in both: the difference per
message is what the library adds. Rounds alternate the two sides; the median per message is
printed, with the ratio, and every message and object is counted after each round.

    python bench/payloads.py [--messages 200] [--size 300000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
import uuid
from typing import Any

import boto3
from moto import mock_aws

from resilient_aws.batch import SqsSender
from resilient_aws.payloads import PayloadConfig, PayloadPointer, PayloadStore
from resilient_aws.retry import RetryPolicy

BUCKET = "bench-payloads"
_queues = itertools.count()


def fresh_queue(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName=f"bench-{next(_queues)}")["QueueUrl"]
    return url


def plain(s3: Any, sqs: Any, url: str, bodies: list[str]) -> None:
    entries: list[dict[str, Any]] = []
    for body in bodies:
        data = body.encode("utf-8")
        key = str(uuid.uuid4())
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        entries.append(
            {
                "Id": str(len(entries)),
                "MessageBody": PayloadPointer(BUCKET, key).to_body(),
                "MessageAttributes": {
                    "ExtendedPayloadSize": {"DataType": "Number", "StringValue": str(len(data))}
                },
            }
        )
        if len(entries) == 10:
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
            entries = []
    if entries:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def ours(store: PayloadStore, sqs: Any, url: str, bodies: list[str], policy: RetryPolicy) -> None:
    with SqsSender(url, client=sqs, policy=policy, payloads=store, concurrency=1) as sender:
        sender.send_many(bodies)
    assert sender.result.submitted == len(bodies)
    assert not sender.result.failed


def count(s3: Any, sqs: Any, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    objects = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        objects += len(page.get("Contents", []))
    return int(attributes["ApproximateNumberOfMessages"]), objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = [json.dumps({"n": n, "pad": "x" * args.size}) for n in range(args.messages)]
    policy = RetryPolicy()
    with mock_aws():
        s3 = boto3.client("s3", config=policy.botocore_config(), region_name="us-east-1")
        sqs = boto3.client("sqs", config=policy.botocore_config(), region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        store = PayloadStore(PayloadConfig(bucket=BUCKET), client=s3, policy=policy)
        # warm both paths (botocore's first calls load service models)
        plain(s3, sqs, fresh_queue(sqs), bodies[:10])
        ours(store, sqs, fresh_queue(sqs), bodies[:10], policy)
        times: dict[str, list[float]] = {"plain": [], "ours": []}
        cpu: dict[str, list[float]] = {"plain": [], "ours": []}
        objects_before = count(s3, sqs, fresh_queue(sqs))[1]
        for _ in range(args.rounds):
            for side in ("plain", "ours"):
                url = fresh_queue(sqs)
                wall, process = time.perf_counter(), time.process_time()
                if side == "plain":
                    plain(s3, sqs, url, bodies)
                else:
                    ours(store, sqs, url, bodies, policy)
                times[side].append((time.perf_counter() - wall) / args.messages)
                cpu[side].append((time.process_time() - process) / args.messages)
                messages, objects = count(s3, sqs, url)
                assert messages == args.messages, (side, messages)
                assert objects - objects_before == args.messages, (side, objects)
                objects_before = objects
    plain_ms = statistics.median(times["plain"]) * 1e3
    ours_ms = statistics.median(times["ours"]) * 1e3
    plain_cpu = statistics.median(cpu["plain"]) * 1e3
    ours_cpu = statistics.median(cpu["ours"]) * 1e3
    print(
        f"{args.messages} messages of {len(bodies[0]):,} bytes, all offloaded, moto in process, "
        f"median of {args.rounds} rounds (per message)"
    )
    print(f"{'':<34} {'wall ms':>9} {'CPU ms':>9}")
    print(f"{'plain put_object + send batch':<34} {plain_ms:9.3f} {plain_cpu:9.3f}")
    print(f"{'SqsSender(payloads=PayloadStore)':<34} {ours_ms:9.3f} {ours_cpu:9.3f}")
    print(
        f"{'overhead':<34} {ours_ms - plain_ms:9.3f} {ours_cpu - plain_cpu:9.3f}"
        f"   ratio {ours_ms / plain_ms:.3f}x wall, {ours_cpu / plain_cpu:.3f}x CPU"
    )
    print("every message and object counted after each round: none lost, none invented")


if __name__ == "__main__":
    main()
