"""A redriven message keeps its trace: on moto, the W3C ``traceparent`` attribute travels and the
consumer of the target queue continues the producer's trace; the receive asks for the X-Ray
``AWSTraceHeader`` and the copy's request carries it (moto's SendMessageBatch drops
MessageSystemAttributes, so the request is what is checked), with one source queue (no
routing) and with several (routed by DeadLetterQueueSourceArn)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilient_aws import tracing
from resilient_aws.consumer import BatchProcessor
from resilient_aws.redrive import redrive_sqs
from resilient_aws.testing import FakeClock
from tests.batch_targets import dlq_with_source, make_queue
from tests.functional.test_tracing import receive_event

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


class Requests:
    """The parameters of every ``ReceiveMessage`` and ``SendMessageBatch`` a client makes."""

    def __init__(self, client: Any) -> None:
        self.receives: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        client.meta.events.register(
            "provide-client-params.sqs.ReceiveMessage",
            lambda params, **_: self.receives.append(dict(params)),
        )
        client.meta.events.register(
            "provide-client-params.sqs.SendMessageBatch",
            lambda params, **_: self.sent.extend(params["Entries"]),
        )


def asks_for_the_trace_header(params: dict[str, Any]) -> bool:
    names = [*params.get("MessageSystemAttributeNames", []), *params.get("AttributeNames", [])]
    return "All" in names or "AWSTraceHeader" in names


def test_a_redriven_message_keeps_its_trace(sqs: Any, exporter: InMemorySpanExporter) -> None:
    dlq, source = dlq_with_source(sqs, "orders")
    with tracing.span("place order", kind="producer") as producer:
        entry = tracing.inject_into({"QueueUrl": dlq, "MessageBody": '{"id": 7}'}, "sqs")
        sqs.send_message(**entry)  # moto keeps AWSTraceHeader on SendMessage
    header = entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]
    requests = Requests(sqs)
    report = redrive_sqs(dlq, client=sqs, policy=FakeClock().policy(), wait_time_s=0)
    assert report.moved == 1
    assert requests.receives and all(asks_for_the_trace_header(p) for p in requests.receives)
    (sent,) = requests.sent
    assert sent["MessageSystemAttributes"] == {
        "AWSTraceHeader": {"DataType": "String", "StringValue": header}
    }
    assert sent["MessageAttributes"]["traceparent"] == entry["MessageAttributes"]["traceparent"]

    seen: list[int] = []

    def handle(record: Any) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    assert BatchProcessor().process(receive_event(sqs, source, 1), handle).failed == []
    assert seen == [producer.get_span_context().trace_id]  # type: ignore[attr-defined]


def test_an_xray_header_alone_is_copied_when_routing_to_several_sources(sqs: Any) -> None:
    dlq, dlq_arn = make_queue(sqs, "shared-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    sources = [make_queue(sqs, f"source-{n}", RedrivePolicy=policy) for n in (1, 2)]
    stamps: dict[str, str] = {}  # message id -> source ARN, as SQS stamps a dead letter
    for _, arn in sources:
        sent = sqs.send_message(
            QueueUrl=dlq,
            MessageBody="{}",
            MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
        )
        stamps[sent["MessageId"]] = arn

    def stamp(parsed: dict[str, Any], **_: Any) -> None:
        for message in parsed.get("Messages", []):
            message.setdefault("Attributes", {})["DeadLetterQueueSourceArn"] = stamps[
                message["MessageId"]
            ]

    sqs.meta.events.register("after-call.sqs.ReceiveMessage", stamp)
    requests = Requests(sqs)
    report = redrive_sqs(dlq, client=sqs, policy=FakeClock().policy(), wait_time_s=0)
    assert report.moved == 2 and set(report.targets) == {url for url, _ in sources}
    assert all(p.get("MessageSystemAttributeNames") == ["All"] for p in requests.receives)
    assert [e["MessageSystemAttributes"] for e in requests.sent] == [
        {"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}}
    ] * 2
    assert all("MessageAttributes" not in e for e in requests.sent)


def test_a_message_without_a_trace_gets_none(sqs: Any) -> None:
    dlq, _ = dlq_with_source(sqs, "orders")
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    requests = Requests(sqs)
    assert redrive_sqs(dlq, client=sqs, policy=FakeClock().policy(), wait_time_s=0).moved == 1
    (sent,) = requests.sent
    assert "MessageSystemAttributes" not in sent and "MessageAttributes" not in sent
