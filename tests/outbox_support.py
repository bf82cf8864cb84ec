"""Shared by the outbox tests: the table (stream + sparse GSI), a stream reader, a FIFO queue."""

from __future__ import annotations

import json
import threading
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
            {"AttributeName": "outbox_pending_aggregate", "AttributeType": "S"},
            {"AttributeName": "outbox_sequence", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": layout.pending_index,
                "KeySchema": [
                    {"AttributeName": "outbox_pending_aggregate", "KeyType": "HASH"},
                    {"AttributeName": "outbox_sequence", "KeyType": "RANGE"},
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
        self.arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.last: dict[str, str | None] = {}  # shard id -> last sequence number read
        self.backlog: list[dict[str, Any]] = []

    def _fill(self) -> None:
        # A fresh iterator after the last record read, each time: moto replaces a table's
        # stream shard when it rolls a transaction back, and an old iterator stops seeing it.
        shards = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            last = self.last.get(shard_id)
            position: dict[str, Any] = (
                {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last}
                if last
                else {"ShardIteratorType": "TRIM_HORIZON"}
            )
            iterator = self.streams.get_shard_iterator(
                StreamArn=self.arn, ShardId=shard_id, **position
            )["ShardIterator"]
            while True:
                response = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records = response["Records"]
                if not records:
                    break
                newest = records[-1]["dynamodb"]["SequenceNumber"]
                previous = self.last.get(shard_id)
                if previous is not None and int(newest) <= int(previous):
                    raise AssertionError(f"the stream went backwards: {newest} after {previous}")
                self.backlog.extend(records)
                self.last[shard_id] = newest
                iterator = response["NextShardIterator"]

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


def compact_moto_stream(reader: StreamReader, table: str, region: str = "us-east-1") -> None:
    """Drop the stream records ``reader`` has consumed from moto's in-process backend.

    moto deep-copies every table a transaction touches, stream records included, so a stream
    that only grows makes each transaction slower than the last (1 s each after a few thousand
    records). Sequence numbers are list positions there, so consumed records become ``None``
    rather than disappear; readers only ask for records after the last one they read.
    """
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    shard = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].tables[table].stream_shard
    if shard is None:
        return
    for last in reader.last.values():
        if last is None:
            continue
        upto = int(last) - shard.starting_sequence_number
        for index in range(min(upto + 1, len(shard.items))):
            shard.items[index] = None


def make_moto_dynamodb_atomic(monkeypatch: Any) -> None:
    """Serialize moto's in-process DynamoDB and DynamoDB Streams requests.

    On AWS each request is atomic. moto's are not: ``TransactWriteItems`` deep-copies the
    table, stream included, and a rollback puts that copy back, dropping what other threads
    wrote meanwhile; two writes can also append stream records under one sequence number. The
    relay marks events from several threads, so a long run against moto in process can lose
    writes or see its stream go backwards (once, a reader then looped on the same records).
    """
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    lock = threading.RLock()
    for handler in (DynamoHandler, DynamoDBStreamsHandler):
        original = handler.call_action

        def call_action(self: Any, __original: Any = original) -> Any:
            with lock:
                return __original(self)

        monkeypatch.setattr(handler, "call_action", call_action)
