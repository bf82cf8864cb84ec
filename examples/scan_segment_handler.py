"""A Lambda handler that scans one segment of a table, within its time, and hands back a cursor.

Used by ``parallel_scan_state_machine.json``: a Step Functions Distributed Map runs one
execution of this handler per segment; when an invocation runs out of time it returns the
segment's cursor and the state machine invokes it again from there, until ``done``.
Run locally against moto: ``python examples/scan_segment_handler.py``.
"""

from __future__ import annotations

from typing import Any

import boto3

from resilient_aws.dynamodb import scan_segment
from resilient_aws.retry import Deadline, RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=2.0)
MARGIN_S = 10.0  # stop reading with this much time left, to return the cursor cleanly


def handler(event: dict[str, Any], context: Any, client: Any = None) -> dict[str, Any]:
    """Event: ``{"table", "segment", "total_segments", "cursor"?, "processed"?}``."""
    client = client or boto3.client("dynamodb")
    deadline = Deadline.from_lambda_context(context, margin_s=MARGIN_S)
    read = scan_segment(
        event["table"],
        event["segment"],
        event["total_segments"],
        event.get("cursor"),
        client=client,
        policy=POLICY.with_deadline(deadline),
        page_size=500,
    )
    processed = event.get("processed", 0)
    for page in read.pages():
        processed += len(page.items)  # the real work on page.items goes here
        if deadline.expired:
            break
    return {**event, "cursor": read.cursor, "processed": processed, "done": read.cursor is None}


if __name__ == "__main__":
    from moto import mock_aws

    from resilient_aws.dynamodb import BatchWriter

    class FakeContext:
        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="big",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        with BatchWriter("big", client=ddb) as writer:
            for i in range(2_000):
                writer.put({"pk": f"item-{i}"})
        total = 0
        for segment in range(4):  # what the Distributed Map does, one iteration per segment
            state: dict[str, Any] = {"table": "big", "segment": segment, "total_segments": 4}
            while not state.get("done"):
                state = handler(state, FakeContext(), client=ddb)
            total += state["processed"]
        print(f"4 segments processed {total} items")
        assert total == 2_000
