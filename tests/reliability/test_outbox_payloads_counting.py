"""Large events through the outbox under chaos on every client: DynamoDB (writer and relay),
S3 (writer and consumer) and SQS. Every event handed to ``Outbox.write`` is counted: it is
committed and reaches a ``BatchProcessor(payloads=store)`` consumer whole, or its write raised
and it was not committed. Every object left in the bucket belongs to a committed event or was
named by the write that left it (``payloads_left``): no orphan nobody knows of, no pointer to
nothing.

Ground truth for "committed" is the stream: every committed outbox record is one ``INSERT``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.consumer import BatchProcessor, SQSRecord
from resilient_aws.errors import ResilientAWSError
from resilient_aws.outbox import Outbox, OutboxEvent, OutboxSweeper, SqsTarget, relay_handler
from resilient_aws.payloads import PayloadConfig, PayloadPointer, PayloadStore, PayloadUploadError
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.batch_targets import make_queue, take_all
from tests.outbox_support import StreamReader, create_outbox_table, make_moto_dynamodb_atomic

REGION = "us-east-1"
BUCKET = "outbox-payloads"
WRITES = 60
AGGREGATES = 8


def payload_of(aggregate: str, sequence: int) -> dict[str, Any]:
    """The payload of an event, rebuilt from its identity (nothing big is kept meanwhile)."""
    size = 300_000 + (sequence * 7919) % 700_000 if sequence % 3 else 200
    return {"aggregate": aggregate, "sequence": sequence, "pad": "x" * size}


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def lambda_record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }


@pytest.mark.parametrize("seed", [7, 3])
def test_every_large_event_is_delivered_whole_or_its_write_raised(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_moto_dynamodb_atomic(monkeypatch)
    # The writer's transactions hold random event ids, so a seed does not fix the faults a run
    # draws: one run in ~300 met no lost response (~6 a run). Every run is checked in full;
    # seeds are tried until one run met every fault this test is about.
    for attempt in range(4):
        unmet = _chaos_run(seed + 100 * attempt)
        if not unmet:
            return
    pytest.fail(f"no seed met every fault; the last one missed: {unmet}")


def _chaos_run(seed: int) -> list[str]:
    """One full run, every count checked; returns the faults this run did not meet."""
    rng = random.Random(seed)
    clock = FakeClock(start=2_000_000_000.0, seed=seed)
    policy = clock.policy(max_attempts=4, max_delay=1.0)
    with mock_aws():
        clean_ddb = boto3.client("dynamodb", region_name=REGION)
        writer_ddb = boto3.client("dynamodb", region_name=REGION)
        relay_ddb = boto3.client("dynamodb", region_name=REGION)
        clean_s3 = boto3.client("s3", region_name=REGION)
        writer_s3 = boto3.client("s3", region_name=REGION)
        consumer_s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        reader_sqs = boto3.client("sqs", region_name=REGION)
        streams = boto3.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com",
        )
        clean_s3.create_bucket(Bucket=BUCKET)
        create_outbox_table(clean_ddb)
        queue, queue_arn = make_queue(reader_sqs, "events")
        stream = StreamReader(clean_ddb, streams, "orders")

        config = PayloadConfig(bucket=BUCKET, prefix="outbox/")
        writer = Outbox(
            "orders",
            client=writer_ddb,
            policy=policy,
            clock=clock.monotonic,
            # few attempts: some uploads finally fail, and their writes must send nothing
            payloads=PayloadStore(config, client=writer_s3, policy=clock.policy(max_attempts=3)),
        )
        # no store: the relay sends pointers to SQS without touching S3
        relay = Outbox("orders", client=relay_ddb, policy=policy, clock=clock.monotonic)
        target = SqsTarget(queue, client=sqs, policy=clock.policy(max_attempts=8, max_delay=1.0))
        handler = relay_handler(relay, target)
        sweeper = OutboxSweeper(relay, target, grace_s=60)
        consumer_store = PayloadStore(
            config, client=consumer_s3, policy=clock.policy(max_attempts=10, max_delay=1.0)
        )
        processor = BatchProcessor(payloads=consumer_store)

        handed: dict[str, tuple[str, int]] = {}  # every event given to write()
        raised: dict[str, str] = {}  # event id -> what its write raised
        named: set[PayloadPointer] = set()  # objects a failed write said it left
        committed: dict[str, tuple[str, int]] = {}
        pointers: dict[str, PayloadPointer] = {}  # committed event -> its object
        received: dict[str, str] = {}  # event id -> digest of the payload the consumer got
        next_sequence: dict[str, int] = defaultdict(int)
        with (
            chaos(writer_ddb, throttle=0.1, error5xx=0.05, lost_response=0.08, seed=seed) as w,
            chaos(writer_s3, throttle=0.2, error5xx=0.15, reset=0.1, seed=seed + 1) as s,
            chaos(relay_ddb, throttle=0.05, error5xx=0.02, seed=seed + 2),
            chaos(sqs, partial=0.2, throttle=0.05, error5xx=0.02, seed=seed + 3) as q,
            chaos(consumer_s3, throttle=0.2, error5xx=0.05, seed=seed + 4) as c,
        ):
            for _ in range(WRITES):
                aggregate = f"agg-{rng.randrange(AGGREGATES)}"
                events = []
                for _ in range(rng.choice((1, 1, 2))):
                    next_sequence[aggregate] += 1  # never reused, even when refused
                    sequence = next_sequence[aggregate]
                    events.append(
                        OutboxEvent(
                            "Changed", aggregate, payload_of(aggregate, sequence), sequence=sequence
                        )
                    )
                handed.update({e.id: (aggregate, e.sequence or 0) for e in events})
                try:
                    writer.write(events=events)
                except ResilientAWSError as error:
                    for event in events:
                        raised[event.id] = type(error).__name__
                    left = getattr(error, "payloads_left", None)
                    assert left is not None, "a failed write with payloads names what it left"
                    named.update(pointer for _, pointer in left)

            # -- relay the stream, then sweep until nothing is pending -------------------------
            for _ in range(20):
                while (batch := stream.next_batch(50)) is not None:
                    for record in batch["Records"]:
                        image = record["dynamodb"].get("NewImage", {})
                        if record["eventName"] == "INSERT" and "outbox_event_id" in image:
                            event_id = image["outbox_event_id"]["S"]
                            committed[event_id] = (
                                image["outbox_aggregate_id"]["S"],
                                int(image["outbox_sequence"]["N"]),
                            )
                            if "outbox_payload_size" in image:
                                pointers[event_id] = PayloadPointer.parse(  # type: ignore[assignment]
                                    image["outbox_payload"]["S"]
                                )
                    stream.retry_from(batch, handler(batch, FakeLambdaContext()))
                clock.advance(120)
                sweeper.run()
                if not relay.pending():
                    break
            still_pending = relay.pending()

            # -- the consumer: failed records come back until they succeed ---------------------
            backlog = [lambda_record(m, queue_arn) for m in take_all(reader_sqs, queue)]
            for _ in range(10):
                if not backlog:
                    break
                again: list[dict[str, Any]] = []
                for start in range(0, len(backlog), 10):
                    chunk = backlog[start : start + 10]

                    def record_function(record: SQSRecord) -> None:
                        envelope = json.loads(record.body)
                        received[envelope["event_id"]] = digest(envelope["payload"])

                    result = processor.process({"Records": chunk}, record_function)
                    failed = {f.item_identifier for f in result.failed}
                    again += [r for r in chunk if r["messageId"] in failed]
                backlog = again
            left_in_bucket = {
                PayloadPointer(BUCKET, item["Key"])
                for item in clean_s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
            }

    # every event handed to write() is accounted for
    assert set(handed) == set(committed) | set(raised)
    assert set(committed) <= set(handed)  # nothing invented
    # every committed event reached the consumer, whole; nothing else did
    assert backlog == [] and still_pending == []
    assert set(received) == set(committed)
    for event_id, (aggregate, sequence) in committed.items():
        assert received[event_id] == digest(payload_of(aggregate, sequence)), event_id
    # a write that raised before its transaction committed nothing
    for event_id, raised_as in raised.items():
        if raised_as == PayloadUploadError.__name__:
            assert event_id not in committed
    # no orphan nobody knows of; no committed event without its object
    assert set(pointers.values()) <= left_in_bucket
    assert left_in_bucket <= set(pointers.values()) | named
    assert len(committed) > len(handed) // 2
    # the faults really happened, on every side
    met = {
        "writer's lost response": w.stats.lost_responses > 0,
        "writer's S3 fault": s.stats.faults > 0,
        "consumer's S3 fault": c.stats.faults > 0,
        "withheld SQS entry": q.stats.withheld_entries > 0,
        "PayloadUploadError": any(e == PayloadUploadError.__name__ for e in raised.values()),
    }
    return [fault for fault, happened in met.items() if not happened]
