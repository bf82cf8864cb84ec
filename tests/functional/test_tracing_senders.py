"""Trace context end to end through the senders and the engine: a message sent inside a span
carries its context (W3C ``traceparent``, X-Ray ``AWSTraceHeader``), the consumer's record span
shares the producer's trace id, and each batch request is a span under the caller's, also when
a worker thread makes it. Without a tracer, messages carry nothing."""

from __future__ import annotations

import sys
from typing import Any

import boto3
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilient_aws import tracing
from resilient_aws.batch import EventBridgePutter, SnsPublisher, SqsSender
from resilient_aws.consumer import BatchProcessor
from resilient_aws.errors import EntryValidationError

REGION = "us-east-1"


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    return list(
        sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
    )


def as_record(message: dict[str, Any]) -> dict[str, Any]:
    attributes = {
        name: {"stringValue": value["StringValue"], "dataType": value["DataType"]}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
    }


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_message_sent_in_a_span_continues_its_trace_at_the_consumer(
    aws: None, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    from resilient_aws._batching import BatchEngine

    monkeypatch.setattr(BatchEngine, "_cpu_share", 0.0)  # workers make the requests
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="traced")["QueueUrl"]
    with tracing.span("checkout") as parent:
        trace_id = parent.get_span_context().trace_id  # type: ignore[attr-defined]
        with SqsSender(url, client=sqs, concurrency=concurrency) as sender:
            for n in range(12):
                sender.send_message(
                    f"m{n}", attributes={"kind": {"DataType": "String", "StringValue": "x"}}
                )
    messages = received(sqs, url)
    assert all("traceparent" in m["MessageAttributes"] for m in messages)
    assert all(m["MessageAttributes"]["kind"]["StringValue"] == "x" for m in messages)
    requests = [s for s in exporter.get_finished_spans() if s.name == "SQS.SendMessageBatch"]
    assert len(requests) == 2  # 10 + 2, each a span under the caller's, on whatever thread
    assert all(s.context.trace_id == trace_id for s in requests)
    exporter.clear()
    BatchProcessor().process({"Records": [as_record(m) for m in messages]}, lambda r: None)
    consumed = [s for s in exporter.get_finished_spans() if s.kind.name == "CONSUMER"]
    assert consumed and all(s.context.trace_id == trace_id for s in consumed)


def test_sns_and_eventbridge_carry_the_context_too(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="t")["TopicArn"]
    events = boto3.client("events", region_name=REGION)
    calls: list[dict[str, Any]] = []
    events.meta.events.register(
        "provide-client-params.events.PutEvents", lambda params, **_: calls.append(params)
    )
    with tracing.span("publish"):
        with SnsPublisher(topic, client=sns) as publisher:
            publisher.publish("hello", id="one")
        with EventBridgePutter(client=events) as putter:
            putter.put({"n": 1}, source="test", detail_type="T")
            putter.put({"n": 2}, source="test", detail_type="T", trace_header="Root=mine")
    assert publisher.result.succeeded == 1
    headers = [entry.get("TraceHeader") for entry in calls[0]["Entries"]]
    assert headers[0].startswith("Root=1-") and headers[1] == "Root=mine"  # the caller's wins


def test_the_callers_attributes_win_and_ten_are_never_exceeded(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="full")["QueueUrl"]
    ten = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(10)}
    mine = {
        "traceparent": {
            "DataType": "String",
            "StringValue": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        }
    }
    with tracing.span("s"), SqsSender(url, client=sqs) as sender:
        sender.send_message("ten", attributes=ten)
        sender.send_message("mine", attributes=mine)
        with pytest.raises(EntryValidationError):
            sender.send_message("bad", attributes="not a mapping")  # type: ignore[arg-type]
    by_body = {m["Body"]: m["MessageAttributes"] for m in received(sqs, url)}
    assert set(by_body["ten"]) == set(ten)  # no room: the context is left out, never an 11th
    assert by_body["mine"]["traceparent"]["StringValue"] == mine["traceparent"]["StringValue"]


def test_without_a_tracer_messages_carry_nothing(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "opentelemetry.trace", raising=False)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="plain")["QueueUrl"]
    with SqsSender(url, client=sqs) as sender:
        sender.send_message("plain")
    (message,) = received(sqs, url)
    assert "MessageAttributes" not in message
