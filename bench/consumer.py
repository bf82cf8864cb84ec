"""Per-record overhead of resilient_aws.consumer against Powertools' BatchProcessor.

Side by side in one run, interleaved, on the same events: SQS, Kinesis and DynamoDB Streams
batches of 100 records, a record function that does almost nothing (so that what is measured
is the processor), one record in ten failing. Both with their typed records (ours light,
Powertools' data classes) and both with a Lambda context. Prints microseconds per record and
the ratio ours / Powertools (target <= 1.0x).

    python bench/consumer.py [--batches 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_lambda_powertools.utilities.batch import BatchProcessor as PowertoolsProcessor
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.batch import (
    process_partial_response as powertools_process_partial_response,
)

from resilient_aws.consumer import BatchProcessor, process_partial_response
from resilient_aws.testing import FakeLambdaContext

RECORDS = 100


def sqs_event() -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"rh-{i}",
                "body": json.dumps({"n": i}),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
                "awsRegion": "us-east-1",
            }
            for i in range(RECORDS)
        ]
    }


def kinesis_event() -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": f"k{i}",
                    "sequenceNumber": f"{49590000 + i}",
                    "data": base64.b64encode(json.dumps({"n": i}).encode()).decode(),
                },
                "eventSource": "aws:kinesis",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks",
            }
            for i in range(RECORDS)
        ]
    }


def dynamodb_event() -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {"SequenceNumber": f"{100 + i}", "Keys": {"pk": {"S": str(i)}}},
            }
            for i in range(RECORDS)
        ]
    }


def sqs_function(record: Any) -> None:
    if record.message_id.endswith("7"):
        raise ValueError("bad")


def kinesis_function(record: Any) -> None:
    if record.kinesis.sequence_number.endswith("7"):
        raise ValueError("bad")


def dynamodb_function(record: Any) -> None:
    if record.dynamodb.sequence_number.endswith("7"):
        raise ValueError("bad")


CASES: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[Any], None], EventType]] = {
    "SQS": (sqs_event, sqs_function, EventType.SQS),
    "Kinesis": (kinesis_event, kinesis_function, EventType.KinesisDataStreams),
    "DynamoDB Streams": (dynamodb_event, dynamodb_function, EventType.DynamoDBStreams),
}


def per_record_us(batches: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        run()
    return (time.perf_counter() - start) / (batches * RECORDS) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    context = FakeLambdaContext(timeout_s=900)
    # Stream records stop at their first failure by default; Powertools' BatchProcessor
    # reports only the failed ones: compare like with like (and the default, ordered, too).
    ours = BatchProcessor(records="light", ordered=False)
    ordered = BatchProcessor(records="light")
    print(f"{RECORDS} records per batch, 1 in 10 failing, {args.batches} batches x {args.rounds}")
    print(f"{'source':<18} {'Powertools':>12} {'resilient_aws':>14} {'ratio':>7} {'ordered':>9}")
    for name, (make_event, function, event_type) in CASES.items():
        event = make_event()
        theirs_processor = PowertoolsProcessor(
            event_type=event_type, raise_on_entire_batch_failure=False
        )
        expected = powertools_process_partial_response(
            event=event, record_handler=function, processor=theirs_processor, context=context
        )
        assert process_partial_response(event, function, ours, context) == expected
        runs = {
            "theirs": functools.partial(
                powertools_process_partial_response,
                event=event,
                record_handler=function,
                processor=theirs_processor,
                context=context,
            ),
            "ours": functools.partial(process_partial_response, event, function, ours, context),
            "ordered": functools.partial(
                process_partial_response, event, function, ordered, context
            ),
        }
        timings: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):  # interleaved so that drift hits both alike
            for key, run in runs.items():
                timings[key].append(per_record_us(args.batches, run))
        theirs, mine, mine_ordered = timings["theirs"], timings["ours"], timings["ordered"]
        t, m, o = (
            statistics.median(theirs),
            statistics.median(mine),
            statistics.median(mine_ordered),
        )
        print(f"{name:<18} {t:>9.2f} us {m:>11.2f} us {m / t:>6.2f}x {o:>6.2f} us")


if __name__ == "__main__":
    main()
