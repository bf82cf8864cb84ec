"""Shared by the outbox tests: the table (stream + sparse GSI), a stream reader, a FIFO queue."""

from __future__ import annotations

import json
from typing import Any

from resilient_aws.outbox import Layout


def create_outbox_table(client: Any, name: str = "orders", layout: Layout | None = None) -> str:
    """The single table of the docs: pk/sk strings, a stream, the sparse pending index."""
    layout = layout or Layout()
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": layout.partition_key, "KeyType": "HASH"},
            {"AttributeName": layout.sort_key, "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": layout.partition_key, "AttributeType": "S"},
            {"AttributeName": layout.sort_key, "AttributeType": "S"},
            {"AttributeName": "outbox_pending_shard", "AttributeType": "S"},
            {"AttributeName": "outbox_pending_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": layout.pending_index,
                "KeySchema": [
                    {"AttributeName": "outbox_pending_shard", "KeyType": "HASH"},
                    {"AttributeName": "outbox_pending_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return name


class StreamReader:
    """Reads a table's DynamoDB stream through the ``dynamodbstreams`` API, from the start,
    and hands out Lambda-shaped events of at most ``batch_size`` records."""

    def __init__(self, dynamodb: Any, streams: Any, table: str) -> None:
        self.streams = streams
        arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.arn = arn
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        self.iterators = [
            streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in shards
        ]
        self.backlog: list[dict[str, Any]] = []

    def _fill(self) -> None:
        for index, iterator in enumerate(self.iterators):
            while True:
                response = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = response["NextShardIterator"]
                self.backlog.extend(response["Records"])
                if not response["Records"]:
                    break
            self.iterators[index] = iterator

    def next_batch(self, batch_size: int = 100) -> dict[str, Any] | None:
        """The next Lambda event, or None when the stream has nothing new."""
        if not self.backlog:
            self._fill()
        if not self.backlog:
            return None
        batch, self.backlog = self.backlog[:batch_size], self.backlog[batch_size:]
        for record in batch:
            record.setdefault("eventSourceARN", self.arn)
            record.setdefault("eventSource", "aws:dynamodb")
        return {"Records": batch}

    def retry_from(self, event: dict[str, Any], response: dict[str, Any]) -> None:
        """What Lambda does with a partial batch response on a stream: resume at the lowest
        failed sequence number (that record and every later one of the batch come again)."""
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        records = event["Records"]
        for index, record in enumerate(records):
            if record["dynamodb"]["SequenceNumber"] in failed:
                self.backlog = records[index:] + self.backlog
                return


def queue_messages(sqs_backend_queue: Any) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in sqs_backend_queue.messages]
