"""Trace context through the outbox on moto: an event written inside a span arrives at the
consumer's span with the writer's trace id, through the relay (fed from moto's stream) or the
sweeper, to SQS, SNS and EventBridge; the relay's and the sweeper's spans; and without a
tracer, records and messages exactly as before. The first test is the example of
docs/outbox.md."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilient_aws import tracing
from resilient_aws.consumer import BatchProcessor
from resilient_aws.dynamodb._serialize import item_size
from resilient_aws.errors import EntryTooLargeError
from resilient_aws.limits import DYNAMODB_ITEM_BYTES
from resilient_aws.outbox import (
    CallableTarget,
    EventBridgeTarget,
    KinesisTarget,
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    SnsTarget,
    SqsTarget,
    relay_handler,
)
from resilient_aws.outbox._deliver import deliver_in_spans
from resilient_aws.testing import FakeClock, FakeLambdaContext
from tests.batch_targets import sns_to_queue
from tests.functional.test_tracing import receive_event
from tests.outbox_support import StreamReader, create_outbox_table, make_moto_dynamodb_atomic

STREAMS_ENDPOINT = "https://streams.dynamodb.us-east-1.amazonaws.com"
TRACE_ATTRIBUTES = {"outbox_traceparent", "outbox_tracestate"}


@pytest.fixture(autouse=True)
def _atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    make_moto_dynamodb_atomic(monkeypatch)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=float(int(time.time())))


@pytest.fixture
def outbox(ddb: Any, clock: FakeClock) -> Outbox:
    create_outbox_table(ddb)
    return Outbox("orders", client=ddb, policy=clock.policy(), clock=clock.monotonic)


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def stream(ddb: Any, outbox: Outbox) -> StreamReader:
    streams = boto3.client(
        "dynamodbstreams", region_name="us-east-1", endpoint_url=STREAMS_ENDPOINT
    )
    return StreamReader(ddb, streams, "orders")


def relay(stream: StreamReader, handler: Any) -> None:
    while (event := stream.next_batch()) is not None:
        assert handler(event, FakeLambdaContext()) == {"batchItemFailures": []}


def consumed_trace_ids(sqs: Any, url: str, count: int) -> dict[int, int]:
    """``{event's n: trace id of the consumer's record span}`` for ``count`` messages."""
    seen: dict[int, int] = {}

    def handle(record: Any) -> None:
        n = record.json_body["payload"]["n"]
        seen[n] = trace.get_current_span().get_span_context().trace_id

    assert BatchProcessor().process(receive_event(sqs, url, count), handle).failed == []
    return seen


def traceparent(context: Any) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def outbox_items(ddb: Any) -> list[dict[str, Any]]:
    items = ddb.scan(TableName="orders")["Items"]
    return [i for i in items if "outbox_event_id" in i]


def test_the_docs_example(ddb: Any, sqs: Any, stream: StreamReader, outbox: Outbox) -> None:
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    relay_to_queue = relay_handler(outbox, SqsTarget(url, client=sqs))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # --8<-- [start:tracing]
    from opentelemetry import trace

    from resilient_aws import tracing
    from resilient_aws.consumer import BatchProcessor
    from resilient_aws.outbox import OutboxEvent

    tracing.set_tracer_provider(provider)  # or the OTel Lambda layer's global provider

    with tracing.span("place order") as writer:  # the request that changes the order
        outbox.write(
            puts=[{"pk": "order-7", "sk": "v1", "total": 12}],
            events=[OutboxEvent("OrderPlaced", "order-7", {"n": 7}, sequence=1)],
        )
    relay(stream, relay_to_queue)  # the relay Lambda, fed by the table's stream

    @BatchProcessor().handler  # the queue's consumer Lambda
    def consume(record):
        assert record.json_body["event_id"]
        consumed.append(trace.get_current_span().get_span_context().trace_id)

    consumed: list[int] = []
    consume(receive_event(sqs, url, 1), None)
    assert consumed == [writer.get_span_context().trace_id]  # one trace, writer to consumer
    # --8<-- [end:tracing]
    tracing.set_tracer_provider(None)
    (relayed,) = named(exporter, "outbox relay")
    assert relayed.parent is not None
    assert relayed.parent.span_id == writer.get_span_context().span_id  # type: ignore[attr-defined]


def test_events_written_in_spans_reach_the_consumer_in_their_writers_traces(
    ddb: Any, sqs: Any, stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    writers: dict[int, Any] = {}
    for n in range(1, 5):
        with tracing.span(f"write {n}") as span:
            written = outbox.write(events=[OutboxEvent("OrderPlaced", f"order-{n}", {"n": n})])
        writers[n] = span.get_span_context()  # type: ignore[attr-defined]
        (event,) = written
        assert event.trace == {  # what write returns holds it
            "traceparent": traceparent(writers[n])
        }
    # the records store it, next to the event
    stored = {item["outbox_aggregate_id"]["S"]: item for item in outbox_items(ddb)}
    for n, context in writers.items():
        assert stored[f"order-{n}"]["outbox_traceparent"] == {"S": traceparent(context)}
        assert "outbox_tracestate" not in stored[f"order-{n}"]
    with tracing.span("relay invocation") as invocation:
        relay(stream, relay_handler(outbox, SqsTarget(url, client=sqs)))

    assert consumed_trace_ids(sqs, url, 4) == {n: c.trace_id for n, c in writers.items()}
    # the relay's span of each event: a CONSUMER child of its writer's span, delivered
    relayed = named(exporter, "outbox relay")
    assert len(relayed) == 4
    by_trace = {s.context.trace_id: s for s in relayed}
    for context in writers.values():
        span = by_trace[context.trace_id]
        assert span.parent is not None and span.parent.span_id == context.span_id
        assert span.kind == trace.SpanKind.CONSUMER
        assert dict(span.attributes or {})["resilient_aws.outbox.outcome"] == "delivered"
        assert span.status.is_ok
    # the consumer's record spans are children of the writers' spans (what the message carries)
    records = named(exporter, "consume:sqs record")
    assert {s.parent.span_id for s in records if s.parent} == {c.span_id for c in writers.values()}
    # the batch request is the invocation's, not one event's
    (request,) = named(exporter, "SQS.SendMessageBatch")
    assert request.parent is not None
    assert request.parent.span_id == invocation.get_span_context().span_id  # type: ignore[attr-defined]


def test_the_messages_carry_w3c_and_xray_context(
    sqs: Any, stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    with tracing.span("write") as span:
        outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    context = span.get_span_context()  # type: ignore[attr-defined]
    relay(stream, relay_handler(outbox, SqsTarget(url, client=sqs)))
    (message,) = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert set(message["MessageAttributes"]) == {"event_id", "event_type", "traceparent"}
    assert message["MessageAttributes"]["traceparent"]["StringValue"] == traceparent(context)
    # moto keeps AWSTraceHeader on SendMessage only: the request is checked in the unit tests
    assert "traceparent" not in json.loads(message["Body"])  # the envelope is unchanged


def test_a_tracestate_travels_with_the_traceparent(
    ddb: Any, sqs: Any, stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    given = {"traceparent": traceparent, "tracestate": "vendor=abc"}
    with tracing.span("another span"):  # the event's own context wins over the current one
        outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1}, trace=given)])
    (item,) = outbox_items(ddb)
    assert item["outbox_traceparent"] == {"S": traceparent}
    assert item["outbox_tracestate"] == {"S": "vendor=abc"}
    relay(stream, relay_handler(outbox, SqsTarget(url, client=sqs)))
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    attributes = message["MessageAttributes"]
    assert attributes["traceparent"]["StringValue"] == traceparent
    assert attributes["tracestate"]["StringValue"] == "vendor=abc"
    (relayed,) = named(exporter, "outbox relay")
    assert relayed.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert relayed.context.trace_state.to_header() == "vendor=abc"


def test_through_sns(
    aws: None, sqs: Any, stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    sns = boto3.client("sns", region_name="us-east-1")
    topic, url = sns_to_queue(sns, sqs, "order-events")
    with tracing.span("write") as span:
        outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    relay(stream, relay_handler(outbox, SnsTarget(topic, client=sns)))
    writer = span.get_span_context().trace_id  # type: ignore[attr-defined]
    assert consumed_trace_ids(sqs, url, 1) == {1: writer}


def test_through_eventbridge_in_the_detail(
    aws: None, stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    events = boto3.client("events", region_name="us-east-1")
    sent: list[dict[str, Any]] = []
    events.meta.events.register(
        "provide-client-params.events.PutEvents",
        lambda params, **_: sent.extend(params["Entries"]),
    )
    with tracing.span("write") as span:
        outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    relay(stream, relay_handler(outbox, EventBridgeTarget(client=events)))
    context = span.get_span_context()  # type: ignore[attr-defined]
    (entry,) = sent
    detail = json.loads(entry["Detail"])
    assert detail["payload"] == {"n": 1} and detail["type"] == "OrderPlaced"  # the envelope
    trace_id = f"{context.trace_id:032x}"
    assert detail["traceparent"] == traceparent(context)
    assert entry["TraceHeader"] == (
        f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={context.span_id:016x};Sampled=1"
    )
    # what a consumer of the rule's target reads
    found = tracing.extract({"detail-type": entry["DetailType"], "detail": detail})
    assert trace.get_current_span(found).get_span_context().trace_id == context.trace_id


def test_kinesis_records_carry_nothing(
    aws: None, stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    kinesis.create_stream(StreamName="events", ShardCount=1)
    sent: list[dict[str, Any]] = []
    kinesis.meta.events.register(
        "provide-client-params.kinesis.PutRecords",
        lambda params, **_: sent.extend(params["Records"]),
    )
    with tracing.span("write"):
        outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    relay(stream, relay_handler(outbox, KinesisTarget("events", client=kinesis)))
    (record,) = sent
    assert set(record) == {"Data", "PartitionKey"}
    assert "traceparent" not in json.loads(record["Data"])


def test_the_sweeper_publishes_in_the_writers_trace(
    sqs: Any, outbox: Outbox, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    with tracing.span("write") as span:
        outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    writer = span.get_span_context()  # type: ignore[attr-defined]
    clock.advance(301)
    report = OutboxSweeper(outbox, SqsTarget(url, client=sqs)).run()
    assert len(report.delivered) == 1
    (swept,) = named(exporter, "outbox sweep")
    assert swept.parent is not None and swept.parent.span_id == writer.span_id
    assert dict(swept.attributes or {})["messaging.destination.name"] == "orders"
    assert consumed_trace_ids(sqs, url, 1) == {1: writer.trace_id}


def test_a_failed_delivery_marks_its_span_with_the_code_only(
    stream: StreamReader, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    def publish(events: Sequence[OutboxEvent]) -> dict[str, str]:
        return {e.id: "Boom: the payload says secret-42" for e in events if e.sequence == 2}

    with tracing.span("write"):
        written = outbox.write(
            events=[OutboxEvent("OrderPlaced", "order-1", {"n": n}, sequence=n) for n in (1, 2, 3)]
        )
    event = stream.next_batch()
    assert event is not None
    relay_handler(outbox, CallableTarget(publish))(event, FakeLambdaContext())
    spans = {
        dict(s.attributes or {})["messaging.message.id"]: s for s in named(exporter, "outbox relay")
    }
    assert sorted(spans) == sorted(e.id for e in written)
    outcomes = {
        e.sequence: dict(spans[e.id].attributes or {})["resilient_aws.outbox.outcome"]
        for e in written
    }
    assert outcomes == {1: "delivered", 2: "failed", 3: "held"}
    failed = spans[written[1].id]
    assert dict(failed.attributes or {})["error.type"] == "Boom"
    assert not failed.status.is_ok and failed.status.description == "Boom"
    assert "secret" not in repr(dict(failed.attributes or {}))
    assert spans[written[0].id].status.is_ok and spans[written[2].id].status.is_ok


def test_events_without_a_trace_are_siblings_under_the_invocation(
    sqs: Any, outbox: Outbox, stream: StreamReader, exporter: InMemorySpanExporter
) -> None:
    tracing.set_tracer_provider(None)  # written without a tracer
    outbox.write(events=[OutboxEvent("OrderPlaced", f"order-{n}", {"n": n}) for n in (1, 2)])
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_tracer_provider(provider)
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    with tracing.span("invocation") as invocation:
        relay(stream, relay_handler(outbox, SqsTarget(url, client=sqs)))
    relayed = named(exporter, "outbox relay")
    assert len(relayed) == 2
    parent = invocation.get_span_context().span_id  # type: ignore[attr-defined]
    assert [s.parent.span_id for s in relayed if s.parent] == [parent, parent]


def test_one_span_per_event_however_often_it_is_listed(
    outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    with tracing.span("write"):
        (event,) = outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    published: list[str] = []
    target = CallableTarget(lambda events: published.extend(e.id for e in events) or {})
    report = deliver_in_spans("outbox sweep", outbox, target, [event, event])
    assert report.delivered == [event.id] and published == [event.id]
    assert len(named(exporter, "outbox sweep")) == 1


# -- without a tracer ----------------------------------------------------------------------------


def test_without_a_tracer_records_and_messages_are_unchanged(
    ddb: Any, sqs: Any, stream: StreamReader, outbox: Outbox
) -> None:
    assert not tracing.enabled()
    url = sqs.create_queue(QueueName="order-events")["QueueUrl"]
    sent: list[dict[str, Any]] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: sent.extend(params["Entries"]),
    )
    (event,) = outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    assert event.trace is None
    (item,) = outbox_items(ddb)
    assert not TRACE_ATTRIBUTES & set(item)
    assert set(item) == {
        "pk",
        "sk",
        "outbox_event_id",
        "outbox_type",
        "outbox_aggregate_id",
        "outbox_sequence",
        "outbox_payload",
        "outbox_created_at",
        "outbox_status",
        "outbox_attempts",
        "outbox_pending_aggregate",
        "outbox_pending_at",
    }
    relay(stream, relay_handler(outbox, SqsTarget(url, client=sqs)))
    (entry,) = sent
    assert set(entry["MessageAttributes"]) == {"event_id", "event_type"}
    assert "MessageSystemAttributes" not in entry


def test_with_a_tracer_but_no_current_span_nothing_is_stored(
    ddb: Any, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    (event,) = outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    assert event.trace is None
    (item,) = outbox_items(ddb)
    assert not TRACE_ATTRIBUTES & set(item)


def test_a_write_without_tracing_imports_no_opentelemetry() -> None:
    code = """
import boto3, json, sys
from moto import mock_aws
from resilient_aws.outbox import CallableTarget, Outbox, OutboxEvent, OutboxSweeper
from resilient_aws.testing import FakeClock
from tests.outbox_support import create_outbox_table
with mock_aws():
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_outbox_table(ddb)
    clock = FakeClock()
    outbox = Outbox("orders", client=ddb, policy=clock.policy(), clock=clock.monotonic)
    outbox.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    clock.advance(301)
    report = OutboxSweeper(outbox, CallableTarget(lambda events: {})).run()
    assert len(report.delivered) == 1, report
print(json.dumps([m for m in sys.modules if m.split(".")[0] == "opentelemetry"]))
"""
    root = Path(__file__).resolve().parents[2]
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


def test_the_trace_counts_toward_the_item_size_and_is_left_off_an_event_it_would_not_fit(
    ddb: Any, outbox: Outbox, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def event(payload: str) -> OutboxEvent:
        return OutboxEvent("OrderPlaced", "order-1", payload, sequence=1, id="e-1")

    base = event("")
    fill = DYNAMODB_ITEM_BYTES - item_size(outbox.layout.record(base, written_at=outbox.clock()))
    exact = event("x" * fill)
    assert item_size(outbox.layout.record(exact, written_at=outbox.clock())) == DYNAMODB_ITEM_BYTES
    assert outbox._event(exact).action.size == DYNAMODB_ITEM_BYTES  # fits without a trace
    # moto refuses items over 405,000 bytes, DynamoDB only over 409,600: taken as sent
    sent: list[dict[str, Any]] = []
    with monkeypatch.context() as patch:
        patch.setattr(ddb, "transact_write_items", lambda **request: sent.append(request) or {})
        with tracing.span("write"):
            (written,) = outbox.write(events=[exact])  # with its trace, one item too large
    assert written.trace is None  # so it went without: the library's trace never refuses it
    assert "outbox_traceparent" not in sent[0]["TransactItems"][0]["Put"]["Item"]
    with tracing.span("write"), pytest.raises(EntryTooLargeError) as raised:
        outbox.write(events=[event("x" * (fill + 1))])  # too large by itself
    assert "e-1" in str(raised.value)
    traced = dataclasses.replace(
        exact, trace={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    )
    record = outbox.layout.record(traced, written_at=outbox.clock())
    assert item_size(record) == DYNAMODB_ITEM_BYTES + len("outbox_traceparent") + 55


def test_a_blocked_event_marks_its_span_failed_too(
    ddb: Any, outbox: Outbox, exporter: InMemorySpanExporter
) -> None:
    strict = Outbox("orders", client=ddb, policy=outbox.policy, max_attempts=1, clock=outbox.clock)
    with tracing.span("write"):
        (event,) = strict.write(events=[OutboxEvent("OrderPlaced", "order-1", {"n": 1})])
    target = CallableTarget(lambda events: {e.id: "Poison: bad" for e in events})
    report = deliver_in_spans("outbox sweep", strict, target, [event])
    assert list(report.blocked) == [event.id]
    (span,) = named(exporter, "outbox sweep")
    attributes = dict(span.attributes or {})
    assert attributes["resilient_aws.outbox.outcome"] == "blocked"
    assert attributes["error.type"] == "Poison" and not span.status.is_ok
