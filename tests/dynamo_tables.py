"""Table fixtures shared by the DynamoDB tests (moto in process, a moto server or dynalite)."""

from __future__ import annotations

from typing import Any


def create_table(
    client: Any,
    name: str,
    *,
    hash_key: tuple[str, str] = ("pk", "S"),
    range_key: tuple[str, str] | None = None,
    indexes: dict[str, tuple[str, str]] | None = None,
) -> str:
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    attributes = {hash_key[0]: hash_key[1]}
    if range_key:
        schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
        attributes[range_key[0]] = range_key[1]
    extra: dict[str, Any] = {}
    if indexes:
        extra["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": attr, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, (attr, _) in indexes.items()
        ]
        attributes.update(dict(indexes.values()))
    client.create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": t} for a, t in attributes.items()
        ],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 100}
    )
    return name


def all_items(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item, read with the plain client (independent of the code under test)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
