"""BatchProcessor's spans: each record a child of the context it carries, so that a message's
trace goes on from its producer; the batch a span of its own, linked from each record."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from resilient_aws import tracing
from resilient_aws.consumer import NOT_PROCESSED, PRECEDING_RECORD_FAILED, BatchProcessor
from resilient_aws.testing import FakeClock, FakeLambdaContext

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"


def sqs_record(index: int, carried: dict[str, Any], *, group: str | None = None) -> dict[str, Any]:
    """An SQS record of a Lambda event, built from what ``inject("sqs")`` gave the sender
    (the shapes Lambda uses: ``stringValue``, ``attributes.AWSTraceHeader``)."""
    attributes: dict[str, Any] = {"ApproximateReceiveCount": "1"}
    system = carried.get("MessageSystemAttributes", {})
    if "AWSTraceHeader" in system:
        attributes["AWSTraceHeader"] = system["AWSTraceHeader"]["StringValue"]
    if group is not None:
        attributes["MessageGroupId"] = group
    return {
        "messageId": f"m-{index}",
        "receiptHandle": f"rh-{index}",
        "body": f'{{"order": {index}}}',
        "attributes": attributes,
        "messageAttributes": {
            name: {"stringValue": value["StringValue"], "dataType": "String"}
            for name, value in carried.get("MessageAttributes", {}).items()
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN + (".fifo" if group is not None else ""),
    }


def produce(count: int, **kwargs: Any) -> tuple[dict[str, Any], list[int], list[int]]:
    """An SQS event of ``count`` messages, each sent from a producer span of its own trace;
    the producers' trace and span ids."""
    records, trace_ids, span_ids = [], [], []
    for index in range(count):
        with tracing.span(f"producer {index}", kind="producer"):
            carried = tracing.inject("sqs")
            context = tracing.current_context()
        assert context is not None
        from opentelemetry import trace

        span_context = trace.get_current_span(context).get_span_context()
        trace_ids.append(span_context.trace_id)
        span_ids.append(span_context.span_id)
        records.append(sqs_record(index, carried, **kwargs))
    return {"Records": records}, trace_ids, span_ids


def consumer_spans(exporter: InMemorySpanExporter) -> tuple[list[ReadableSpan], ReadableSpan]:
    spans = [s for s in exporter.get_finished_spans() if s.name.startswith("consume:")]
    records = [s for s in spans if s.name.endswith(" record")]
    (batch,) = [s for s in spans if not s.name.endswith(" record")]
    return records, batch


def by_message(records: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {dict(s.attributes or {})["messaging.message.id"]: s for s in records}


def test_each_record_continues_its_producers_trace(exporter: InMemorySpanExporter) -> None:
    event, trace_ids, span_ids = produce(3)
    seen: list[int] = []
    response = BatchProcessor().process(event, lambda r: seen.append(r.json_body["order"]))
    assert response.response == {"batchItemFailures": []}
    assert seen == [0, 1, 2]
    records, batch = consumer_spans(exporter)
    assert batch.name == "consume:sqs"
    assert dict(batch.attributes or {}) == {
        "messaging.system": "aws_sqs",
        "messaging.batch.message_count": 3,
        "aws.operation": "consume:sqs",
        "messaging.destination.name": "orders",
        "resilient_aws.failed": 0,
    }
    for index, span in enumerate(records):
        assert span.name == "consume:sqs record"
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == trace_ids[index]
        assert span.parent is not None and span.parent.span_id == span_ids[index]
        assert span.parent.is_remote
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]
        assert dict(span.attributes or {}) == {
            "messaging.system": "aws_sqs",
            "messaging.destination.name": "orders",
            "messaging.operation.type": "process",
            "messaging.message.id": f"m-{index}",
        }
    assert len({span.context.trace_id for span in records}) == 3


def test_the_xray_header_alone_is_enough(exporter: InMemorySpanExporter) -> None:
    event, trace_ids, span_ids = produce(1)
    event["Records"][0]["messageAttributes"] = {}  # only AWSTraceHeader left
    BatchProcessor().process(event, lambda r: None)
    (record,), _ = consumer_spans(exporter)
    assert record.context.trace_id == trace_ids[0]
    assert record.parent is not None and record.parent.span_id == span_ids[0]


def test_a_record_carrying_nothing_is_a_child_of_the_batch(exporter: InMemorySpanExporter) -> None:
    event = {"Records": [sqs_record(0, {})]}
    with tracing.span("invocation"):
        BatchProcessor().process(event, lambda r: None)
    (record,), batch = consumer_spans(exporter)
    invocation = next(s for s in exporter.get_finished_spans() if s.name == "invocation")
    assert record.parent is not None and record.parent.span_id == batch.context.span_id
    assert record.links == ()
    assert batch.parent is not None and batch.parent.span_id == invocation.context.span_id


def test_a_failing_record_is_a_failed_span_and_the_answer_is_unchanged(
    exporter: InMemorySpanExporter,
) -> None:
    def charge(record: Any) -> None:
        if record.json_body["order"] == 1:
            raise ClientError(
                {"Error": {"Code": "ConditionalCheckFailedException", "Message": "4111"}}, "Put"
            )

    event, _, _ = produce(3)
    traced = BatchProcessor().process(event, charge)
    tracing.set_tracer_provider(None)
    untraced = BatchProcessor().process(event, charge)
    assert (
        traced.response == untraced.response == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    )
    records, batch = consumer_spans(exporter)
    failed = by_message(records)["m-1"]
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "ConditionalCheckFailedException"
    assert by_message(records)["m-0"].status.status_code is StatusCode.UNSET
    assert dict(batch.attributes or {})["resilient_aws.failed"] == 1
    assert [(e.name, dict(e.attributes or {})) for e in batch.events] == [
        (
            "partial_failure",
            {
                "resilient_aws.operation": "consume:sqs",
                "resilient_aws.attempt": 1,
                "error.type": "ConditionalCheckFailedException",
                "resilient_aws.retryable": True,
                "resilient_aws.entries": 1,
            },
        )
    ]
    assert "4111" not in "".join(s.to_json() for s in exporter.get_finished_spans())


def test_records_that_do_not_run_have_no_span(exporter: InMemorySpanExporter) -> None:
    event, _, _ = produce(3, group="g")

    def charge(record: Any) -> None:
        raise ValueError("first fails")

    done = BatchProcessor().process(event, charge)
    assert [(f.item_identifier, f.code) for f in done.failed] == [
        ("m-0", "ValueError"),
        ("m-1", PRECEDING_RECORD_FAILED),
        ("m-2", PRECEDING_RECORD_FAILED),
    ]
    records, batch = consumer_spans(exporter)
    assert list(by_message(records)) == ["m-0"]
    assert dict(batch.attributes or {})["resilient_aws.failed"] == 3
    assert dict(batch.attributes or {})["messaging.destination.name"] == "orders.fifo"


def test_near_the_deadline_nothing_runs_and_nothing_is_traced_per_record(
    exporter: InMemorySpanExporter,
) -> None:
    event, _, _ = produce(2)
    clock = FakeClock()
    context = FakeLambdaContext(timeout_s=0.5, clock=clock.monotonic)
    done = BatchProcessor(clock=clock.monotonic).process(event, lambda r: None, context)
    assert [f.code for f in done.failed] == [NOT_PROCESSED, NOT_PROCESSED]
    records, batch = consumer_spans(exporter)
    assert records == []
    assert dict(batch.attributes or {})["resilient_aws.failed"] == 2


def test_a_policy_retries_inside_the_records_span(exporter: InMemorySpanExporter) -> None:
    throttles = [ClientError({"Error": {"Code": "Throttling"}}, "Put")]

    def charge(record: Any, context: Any) -> None:
        assert context == "ctx"
        if throttles:
            raise throttles.pop()

    event, trace_ids, _ = produce(1)
    done = BatchProcessor(policy=FakeClock().policy()).process(event, charge, "ctx")
    assert done.failed == []
    spans = {s.name: s for s in exporter.get_finished_spans()}
    record, call = spans["consume:sqs record"], spans["charge"]
    assert call.context.trace_id == trace_ids[0]
    assert call.parent is not None and call.parent.span_id == record.context.span_id
    assert dict(call.attributes or {})["resilient_aws.attempts"] == 2


def test_a_sync_function_returning_an_awaitable_fails_inside_its_span(
    exporter: InMemorySpanExporter,
) -> None:
    async def later() -> None:
        return None

    event, _, _ = produce(1)
    done = BatchProcessor().process(event, lambda r: later())
    assert [f.code for f in done.failed] == ["TypeError"]
    (record,), _ = consumer_spans(exporter)
    assert dict(record.attributes or {})["error.type"] == "TypeError"


def test_raw_records_and_streams(exporter: InMemorySpanExporter) -> None:
    with tracing.span("outbox write"):
        carried = tracing.inject("w3c")
        producer = tracing.current_context()
    from opentelemetry import trace

    assert producer is not None
    producer_ids = trace.get_current_span(producer).get_span_context()
    stream_event = {
        "Records": [
            {
                "eventID": "e-1",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/outbox/stream/2024-01-01",
                "dynamodb": {
                    "SequenceNumber": "100",
                    "NewImage": {"outbox_traceparent": {"S": carried["traceparent"]}},
                },
            }
        ]
    }
    seen: list[Any] = []
    BatchProcessor(records="raw").process(stream_event, seen.append)
    assert seen == stream_event["Records"]
    (record,), batch = consumer_spans(exporter)
    assert batch.name == "consume:dynamodb"
    assert dict(batch.attributes or {})["messaging.destination.name"] == "outbox"
    assert dict(record.attributes or {})["messaging.message.id"] == "100"
    assert record.context.trace_id == producer_ids.trace_id
    exporter.clear()
    kinesis_event = {
        "Records": [
            {
                "eventSource": "aws:kinesis",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/clicks",
                "kinesis": {"sequenceNumber": "7", "data": base64.b64encode(b"{}").decode()},
            }
        ]
    }
    BatchProcessor().process(kinesis_event, lambda r: r.kinesis.data_as_json())
    (record,), batch = consumer_spans(exporter)
    assert dict(batch.attributes or {})["messaging.destination.name"] == "clicks"
    assert dict(batch.attributes or {})["messaging.system"] == "aws_kinesis"
    assert record.parent is not None and record.parent.span_id == batch.context.span_id


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (QUEUE_ARN, "orders"),
        ("arn:aws:kinesis:us-east-1:1:stream/clicks", "clicks"),
        ("arn:aws:dynamodb:us-east-1:1:table/outbox/stream/2024", "outbox"),
        ("arn:aws:sqs:us-east-1:1:", None),
        ("arn:aws:kinesis:us-east-1:1:stream/", None),
        ("not-an-arn", None),
        (None, None),
    ],
)
def test_the_destination_is_read_from_the_source_arn(arn: str | None, expected: str | None) -> None:
    from resilient_aws.consumer._tracing import _destination

    assert _destination({"eventSourceARN": arn} if arn is not None else {}) == expected


def test_an_empty_batch_is_one_span(exporter: InMemorySpanExporter) -> None:
    done = BatchProcessor(source="sqs").process({"Records": []}, lambda r: None)
    assert done.total == 0
    records, batch = consumer_spans(exporter)
    assert records == []
    assert "messaging.destination.name" not in dict(batch.attributes or {})


async def test_async_records_each_keep_their_own_trace(exporter: InMemorySpanExporter) -> None:
    event, trace_ids, span_ids = produce(4)
    seen: dict[int, int] = {}

    async def charge(record: Any) -> None:
        from opentelemetry import trace

        await asyncio.sleep(0)  # every lane is in flight at once
        seen[record.json_body["order"]] = trace.get_current_span().get_span_context().trace_id
        if record.json_body["order"] == 3:
            raise ValueError("declined")

    done = await BatchProcessor(concurrency=4).aprocess(event, charge)
    assert [f.item_identifier for f in done.failed] == ["m-3"]
    assert seen == dict(enumerate(trace_ids))  # the function ran inside its record's span
    records, batch = consumer_spans(exporter)
    for span in records:
        index = int(dict(span.attributes or {})["messaging.message.id"][2:])
        assert span.parent is not None and span.parent.span_id == span_ids[index]
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]
    assert dict(by_message(records)["m-3"].attributes or {})["error.type"] == "ValueError"
    assert dict(batch.attributes or {})["resilient_aws.failed"] == 1


async def test_async_with_a_policy_and_a_plain_function(exporter: InMemorySpanExporter) -> None:
    throttles = [ClientError({"Error": {"Code": "Throttling"}}, "Put")]

    async def put() -> None:
        if throttles:
            raise throttles.pop()

    def charge(record: Any) -> Any:
        return put()  # a plain function handing back an awaitable

    event, trace_ids, _ = produce(1)
    processor = BatchProcessor(policy=FakeClock().policy())
    done = await processor.aprocess(event, charge)
    assert done.failed == []
    spans = {s.name: s for s in exporter.get_finished_spans()}
    call = spans["charge"]  # named after the record function, not the wrapper awaiting it
    assert call.context.trace_id == trace_ids[0]
    assert dict(call.attributes or {})["resilient_aws.attempts"] == 2
    exporter.clear()
    done = await BatchProcessor().aprocess(event, charge)
    assert done.failed == []
    assert [s.name for s in exporter.get_finished_spans()] == [
        "consume:sqs record",
        "consume:sqs",
    ]


def test_an_async_function_from_sync_code_is_traced(exporter: InMemorySpanExporter) -> None:
    async def charge(record: Any) -> None:
        return None

    event, trace_ids, _ = produce(2)
    done = BatchProcessor().process(event, charge)
    assert done.failed == []
    records, _ = consumer_spans(exporter)
    assert sorted(s.context.trace_id for s in records) == sorted(trace_ids)
