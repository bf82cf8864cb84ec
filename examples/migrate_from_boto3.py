"""Migrating from boto3's ``Table.batch_writer()`` and hand-written pagination loops.

Each "before" is the code the guide (docs/migration.md) starts from, each "after" its
replacement; both run here against moto, with ``chaos`` withholding a third of every batch the
way a throttled table does, and the script checks they agree. Run it::

    python examples/migrate_from_boto3.py
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
from moto import mock_aws

from resilient_aws.dynamodb import BatchWriter, scan
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import chaos

ORDERS = [{"pk": f"order-{i:04d}", "city": "Milan" if i == 999 else "Turin"} for i in range(1000)]


def before_writer(table: Any) -> None:
    # --8<-- [start:before-writer]
    with table.batch_writer(overwrite_by_pkeys=["pk"]) as batch:
        for order in ORDERS:
            batch.put_item(Item={**order, "total": Decimal("9.99")})  # floats raise TypeError
    # unprocessed items are re-sent on the next flush, at once, without backoff or a limit;
    # nothing reports what was written and what was not
    # --8<-- [end:before-writer]


def after_writer(client: Any) -> None:
    # --8<-- [start:after-writer]
    policy = RetryPolicy(max_attempts=12, base_delay=0.05, max_delay=2.0)
    with BatchWriter("orders", client=client, policy=policy, concurrency=4) as writer:
        for order in ORDERS:
            writer.put({**order, "total": 9.99})  # floats become exact Decimals
    # UnprocessedItems retried per entry with jittered backoff; duplicate keys de-duplicated;
    # anything that finally failed raises BatchWriteError(result), naming each item by key
    print("after:", writer.result)
    # --8<-- [end:after-writer]


def before_scan(table: Any) -> list[dict[str, Any]]:
    # --8<-- [start:before-scan]
    found = []
    response = table.scan(FilterExpression="city = :c", ExpressionAttributeValues={":c": "Milan"})
    found += response["Items"]
    while "LastEvaluatedKey" in response:  # the line everybody forgets once
        response = table.scan(
            FilterExpression="city = :c",
            ExpressionAttributeValues={":c": "Milan"},
            ExclusiveStartKey=response["LastEvaluatedKey"],
        )
        found += response["Items"]
    # --8<-- [end:before-scan]
    return found


def after_scan(client: Any) -> list[dict[str, Any]]:
    # --8<-- [start:after-scan]
    milan = scan(
        "orders",
        client=client,
        FilterExpression="city = :c",
        ExpressionAttributeValues={":c": {"S": "Milan"}},
    )
    found = list(milan)  # every page, each throttled page retried by the core (not restarted)
    print("scanned vs returned:", milan.summary)
    # --8<-- [end:after-scan]
    return found


with mock_aws():
    client = boto3.client("dynamodb", region_name="eu-west-1")
    for name in ("orders", "orders_before"):
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    table = boto3.resource("dynamodb", region_name="eu-west-1").Table("orders_before")
    with chaos(client, partial=0.3, seed=7) as faults:
        after_writer(client)
    before_writer(table)
    written = client.describe_table(TableName="orders")["Table"]["ItemCount"]
    print(f"after: {written} items written, {faults.stats.withheld_entries} entries withheld")
    assert written == len(ORDERS)
    assert faults.stats.withheld_entries > 0

    # 1,000 items of ~100 bytes are one page for moto; pages of 100 make the forgotten loop show
    first_page = table.scan(
        Limit=100, FilterExpression="city = :c", ExpressionAttributeValues={":c": "Milan"}
    )
    print("page one alone finds:", len(first_page["Items"]))
    assert before_scan(table) == [{**ORDERS[999], "total": Decimal("9.99")}]
    found = after_scan(client)
    print("found:", [order["pk"] for order in found])
    assert [order["pk"] for order in found] == ["order-0999"]
