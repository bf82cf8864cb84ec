"""DynamoDB with resilient_aws: write in bulk, read every page, resume, read by key.

Runs against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/dynamodb_basics.py
"""

from __future__ import annotations

import dataclasses

import boto3
from moto import mock_aws

from resilient_aws.dynamodb import BatchWriter, batch_get, query, scan
from resilient_aws.retry import RetryPolicy


@dataclasses.dataclass
class Conference:
    pk: str
    city: str
    attendees: int
    rating: float  # floats are fine: stored as exact Decimals


with mock_aws():
    client = boto3.client("dynamodb", region_name="eu-south-1")
    client.create_table(
        TableName="conferences",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    policy = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)

    # Writes: 25 per request, UnprocessedItems retried with backoff, nothing dropped silently.
    with BatchWriter("conferences", client=client, policy=policy, concurrency=4) as writer:
        for i in range(1_000):
            city = "Milan" if i == 999 else "Ljubljana"
            writer.put(Conference(f"conf-{i:04d}", city, 100 + i, 4.5))
    print("written:", writer.result)

    # The bug from the talk: a filtered scan's first page has no match. Every page is followed.
    milan = scan(
        "conferences",
        client=client,
        policy=policy,
        page_size=100,
        FilterExpression="city = :c",
        ExpressionAttributeValues={":c": {"S": "Milan"}},
    )
    print("in Milan:", [c["pk"] for c in milan], "-", milan.summary)

    # Stop after 300 items, keep the cursor (a string: put it in a queue message), resume later.
    first = scan("conferences", client=client, max_items=300)
    head = list(first)
    rest = list(scan("conferences", client=client, cursor=first.cursor))
    print(f"resumed: {len(head)} + {len(rest)} = {len(head) + len(rest)} items")

    # By key: 100 per request, duplicates read once, missing keys reported.
    got = batch_get(
        "conferences", [{"pk": "conf-0001"}, {"pk": "conf-0001"}, {"pk": "nope"}], client=client
    )
    print("found:", [i["pk"] for i in got.items], "missing:", got.missing)

    one = query(
        "conferences",
        client=client,
        numbers="native",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "conf-0042"}},
    ).first()
    print("query:", one)
