"""500 transactions over 25 aggregates, relayed from moto's stream under chaos, with crashes
and lost stream batches, and a sweeper on a schedule: every committed event arrives, in order
per aggregate, and nothing arrives that was not committed. Events behind a lost one wait for
the sweeper, so the sweep between rounds is what a deployment's schedule does.

Ground truth is the stream itself (every committed outbox record is one ``INSERT`` on it) and
the aggregates' items (each transaction appends its sequence to its aggregate's item). Delivered
records are deleted between rounds, as their TTL would: moto copies every table a transaction
touches, so a table that only grows would make each transaction slower than the last.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.errors import ResilientAWSError
from resilient_aws.outbox import (
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    SqsTarget,
    Update,
    relay_handler,
)
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.batch_targets import drain, make_queue
from tests.outbox_support import (
    StreamReader,
    compact_moto_stream,
    create_outbox_table,
    make_moto_dynamodb_atomic,
)

# 20 events an aggregate, as many as 1,000 transactions over 50 aggregates gave (at a third of
# the time: each transaction deep-copies moto's table); OUTBOX_TRANSACTIONS makes a longer soak.
TRANSACTIONS = int(os.environ.get("OUTBOX_TRANSACTIONS", "500"))
ROUNDS = 20
AGGREGATES = 25
REGION = "us-east-1"


@pytest.mark.parametrize("seed", [21])
def test_every_committed_event_is_delivered_in_order(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_moto_dynamodb_atomic(monkeypatch)  # the relay marks from several threads
    rng = random.Random(seed)
    # The batches' fates have their own generator: drawn from the aggregates' one they shifted
    # with how many batches a round had, which the writer's chaos (random event ids) changes
    # from run to run, and about one run in 500 lost no batch. From this one, the 4th batch
    # crashes before publishing, the 8th after, and the 13th is lost, in every run.
    fates = random.Random(seed + 2)
    clock = FakeClock(start=2_000_000_000.0, seed=seed)
    policy = clock.policy(max_attempts=10, max_delay=1.0)
    with mock_aws():
        clean_ddb = boto3.client("dynamodb", region_name=REGION)
        writer_ddb = boto3.client("dynamodb", region_name=REGION)
        relay_ddb = boto3.client("dynamodb", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        reader_sqs = boto3.client("sqs", region_name=REGION)
        streams = boto3.client(
            "dynamodbstreams",
            region_name=REGION,
            endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com",
        )
        create_outbox_table(clean_ddb)
        queue, _ = make_queue(reader_sqs, "events.fifo", FifoQueue="true")
        stream = StreamReader(clean_ddb, streams, "orders")

        writer = Outbox("orders", client=writer_ddb, policy=policy, clock=clock.monotonic)
        relay = Outbox("orders", client=relay_ddb, policy=policy, clock=clock.monotonic)
        target = SqsTarget(queue, client=sqs, policy=policy)
        handler = relay_handler(relay, target)
        sweeper = OutboxSweeper(relay, target, grace_s=60)

        next_sequence: dict[str, int] = defaultdict(int)
        committed: dict[
            str, tuple[str, int]
        ] = {}  # event id -> (aggregate, sequence), from the stream
        received: list[dict[str, Any]] = []
        refused = crashes = lost = 0
        with (
            chaos(writer_ddb, throttle=0.05, error5xx=0.02, lost_response=0.01, seed=seed),
            chaos(relay_ddb, throttle=0.05, error5xx=0.02, seed=seed + 1) as ddb_faults,
            chaos(sqs, partial=0.2, throttle=0.05, error5xx=0.02, seed=seed + 2) as sqs_faults,
        ):
            for _ in range(ROUNDS):
                # -- writing: the writer's DynamoDB throttles, fails and loses responses --------
                for _ in range(TRANSACTIONS // ROUNDS):
                    aggregate = f"agg-{rng.randrange(AGGREGATES)}"
                    next_sequence[aggregate] += 1  # a sequence is never reused, even if refused
                    sequence = next_sequence[aggregate]
                    try:
                        writer.write(
                            updates=[
                                Update(
                                    {"pk": aggregate, "sk": "state"},
                                    "SET applied = list_append(if_not_exists(applied, :empty), :s)",
                                    values={":s": [sequence], ":empty": []},
                                )
                            ],
                            events=[
                                OutboxEvent(
                                    "Changed", aggregate, {"s": sequence}, sequence=sequence
                                )
                            ],
                        )
                    except ResilientAWSError:
                        refused += (
                            1  # maybe applied all the same (lost response): ground truth decides
                        )

                # -- relaying: 10 % of batches crash, 5 % are lost with the stream --------------
                while (event := stream.next_batch(100)) is not None:
                    for record in event["Records"]:
                        image = record["dynamodb"].get("NewImage", {})
                        if record["eventName"] == "INSERT" and "outbox_event_id" in image:
                            committed[image["outbox_event_id"]["S"]] = (
                                image["outbox_aggregate_id"]["S"],
                                int(image["outbox_sequence"]["N"]),
                            )
                    draw = fates.random()
                    if draw < 0.05:
                        lost += 1
                        continue
                    if draw < 0.10:
                        crashes += 1  # crashed before doing anything: Lambda retries the batch
                        stream.backlog = event["Records"] + stream.backlog
                        continue
                    response = handler(event, FakeLambdaContext())
                    if draw < 0.15:
                        crashes += 1  # crashed after publishing, before answering
                        stream.backlog = event["Records"] + stream.backlog
                    else:
                        stream.retry_from(event, response)
                    received += [json.loads(body) for body in drain(reader_sqs, queue)]
                # -- the scheduled sweeper: what the stream lost, and what waits behind it -----
                clock.advance(120)
                sweeper.run()
                received += [json.loads(body) for body in drain(reader_sqs, queue)]
                _expire_delivered(clean_ddb)
                compact_moto_stream(stream, "orders")

            # -- a last sweep picks up what the last round's stream lost -----------------------
            clock.advance(3600)
            for _ in range(5):
                report = sweeper.run()
                received += [json.loads(body) for body in drain(reader_sqs, queue)]
                if not relay.pending():
                    break
            still_pending = relay.pending()
            still_blocked = relay.blocked()
        applied = {
            (item["pk"]["S"], int(value["N"]))
            for item in _all(clean_ddb)
            if item["sk"]["S"] == "state"
            for value in item["applied"]["L"]
        }

    received_ids = {m["event_id"] for m in received}
    assert received_ids == set(committed)  # every committed event delivered; none invented
    assert applied == set(committed.values())  # every committed change has its event
    assert len(applied) >= TRANSACTIONS - refused
    assert still_pending == [] and still_blocked == [] and report.blocked == {}
    # per-aggregate order, as a consumer that drops repeated event ids sees it
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for message in received:
        if message["event_id"] not in seen:
            seen.add(message["event_id"])
            first_seen[message["aggregate_id"]].append(message["sequence"])
    for aggregate, sequences in first_seen.items():
        assert sequences == sorted(sequences), aggregate
    # the faults really happened
    assert crashes > 0 and lost > 0
    assert ddb_faults.stats.faults > 0 and sqs_faults.stats.withheld_entries > 0


def _all(client: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": "orders", "ConsistentRead": True}
    while True:
        page = client.scan(**params)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _expire_delivered(client: Any) -> None:
    """What the TTL does to delivered records (moto does not run TTL)."""
    for item in _all(client):
        if item.get("outbox_status", {}).get("S") == "DELIVERED":
            client.delete_item(TableName="orders", Key={"pk": item["pk"], "sk": item["sk"]})
