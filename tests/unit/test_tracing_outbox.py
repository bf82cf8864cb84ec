"""The outbox's trace context on its own: what an event accepts as ``trace``, how a record
stores and reads it, what the targets' requests carry (Stubber), and that its sizes are the
batch engine's."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from opentelemetry.sdk.trace import TracerProvider

from resilient_aws import tracing
from resilient_aws.batch._sqs import message_attributes_size as sqs_attributes_size
from resilient_aws.outbox import Layout, OutboxEvent, SqsTarget
from resilient_aws.outbox._event import (
    envelope,
    message_attributes,
    message_attributes_size,
    trace_context,
    with_trace,
    xray_header,
)
from resilient_aws.testing import FakeClock

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
XRAY = "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1"


def event(**fields: Any) -> OutboxEvent:
    return OutboxEvent("OrderPlaced", "order-1", {"n": 1}, sequence=1, id="e-1", **fields)


@pytest.mark.parametrize(
    "trace",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # not a mapping
        {},
        {"tracestate": "a=b"},
        {"traceparent": 5},
        {"traceparent": TRACEPARENT.upper()},
        {"traceparent": TRACEPARENT[:-1]},
        {"traceparent": TRACEPARENT + "-00"},
        {"traceparent": "ff" + TRACEPARENT[2:]},
        {"traceparent": f"00-{'0' * 32}-b7ad6b7169203331-01"},
        {"traceparent": f"00-0af7651916cd43dd8448eb211c80319c-{'0' * 16}-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01"},
        {"traceparent": TRACEPARENT, "tracestate": 5},
        {"traceparent": TRACEPARENT, "tracestate": "é=1"},
        {"traceparent": TRACEPARENT, "baggage": "secret-42"},
    ],
)
def test_a_bad_trace_is_refused_naming_the_event_not_the_value(trace: Any) -> None:
    with pytest.raises(ValueError, match=r"OutboxEvent\.trace of event e-1") as raised:
        event(trace=trace)
    assert "secret" not in str(raised.value) and "b7ad6b" not in str(raised.value)


def test_a_trace_is_copied_and_an_empty_tracestate_dropped() -> None:
    given = {"traceparent": TRACEPARENT, "tracestate": ""}
    made = event(trace=given)
    given["traceparent"] = "changed"
    assert made.trace == {"traceparent": TRACEPARENT}
    state = event(trace={"traceparent": TRACEPARENT, "tracestate": "a=b"})
    assert state.trace == {"traceparent": TRACEPARENT, "tracestate": "a=b"}
    assert made == dataclasses.replace(made, trace=None)  # not part of the value
    assert "trace" not in repr(made)
    assert trace_context(None) is None


def test_a_record_stores_the_trace_and_reads_it_back() -> None:
    layout = Layout()
    traced = event(trace={"traceparent": TRACEPARENT, "tracestate": "a=b"})
    item = layout.record(traced, written_at=1.0)
    assert item["outbox_traceparent"] == {"S": TRACEPARENT}
    assert item["outbox_tracestate"] == {"S": "a=b"}
    plain = {k: next(iter(v.values())) for k, v in item.items()}  # as reads hand them out
    assert layout.stored(plain).event.trace == {"traceparent": TRACEPARENT, "tracestate": "a=b"}
    only_parent = layout.record(event(trace={"traceparent": TRACEPARENT}), written_at=1.0)
    assert "outbox_tracestate" not in only_parent
    assert not {"outbox_traceparent", "outbox_tracestate"} & set(
        layout.record(event(), written_at=1.0)
    )


def test_a_damaged_stored_trace_is_dropped_not_raised() -> None:
    layout = Layout()
    item = {k: next(iter(v.values())) for k, v in layout.record(event(), written_at=1.0).items()}
    assert layout.stored(item).event.trace is None
    damaged = {**item, "outbox_traceparent": "not a traceparent", "outbox_tracestate": "a=b"}
    assert layout.stored(damaged).event.trace is None
    stray_state = {**item, "outbox_tracestate": "a=b"}
    assert layout.stored(stray_state).event.trace is None


def test_the_xray_header_is_the_one_tracing_makes() -> None:
    assert xray_header({"traceparent": TRACEPARENT}) == XRAY
    unsampled = TRACEPARENT[:-2] + "02"
    assert xray_header({"traceparent": unsampled}).endswith(";Sampled=0")
    tracing.set_tracer_provider(TracerProvider())
    try:
        with tracing.span("write"):
            carried = tracing.inject("w3c")
            fields = tracing.inject("sqs")
    finally:
        tracing.set_tracer_provider(None)
    expected = fields["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]
    assert xray_header(carried) == expected


def test_attribute_sizes_are_what_the_sender_counts() -> None:
    for made in (
        event(),
        event(trace={"traceparent": TRACEPARENT}),
        event(trace={"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other=1"}),
    ):
        attributes = message_attributes(made)
        assert message_attributes_size(made) == sqs_attributes_size(attributes)
    assert set(message_attributes(event(trace={"traceparent": TRACEPARENT}))) == {
        "event_id",
        "event_type",
        "traceparent",
    }


def test_the_trace_joins_an_object_detail_only() -> None:
    trace = {"traceparent": TRACEPARENT}
    body = '{"event_id": "e-1", "payload": {"n": 1}}'
    joined = json.loads(with_trace(body, trace))
    assert joined == {"event_id": "e-1", "payload": {"n": 1}, "traceparent": TRACEPARENT}
    assert json.loads(with_trace(" {} ", trace)) == trace
    assert with_trace(body, None) == body
    assert with_trace("[1, 2]", trace) == "[1, 2]"


def test_the_sqs_request_carries_the_trace_as_attributes_and_xray_header() -> None:
    sqs = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/events"
    traced = event(trace={"traceparent": TRACEPARENT, "tracestate": "a=b"})
    with Stubber(sqs) as stub:
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": "x"}],
                "Failed": [],
            },
            {
                "QueueUrl": url,
                "Entries": [
                    {
                        "Id": "0",  # the engine numbers a request's entries
                        "MessageBody": envelope(traced),
                        "MessageAttributes": {
                            "event_id": {"DataType": "String", "StringValue": "e-1"},
                            "event_type": {"DataType": "String", "StringValue": "OrderPlaced"},
                            "traceparent": {"DataType": "String", "StringValue": TRACEPARENT},
                            "tracestate": {"DataType": "String", "StringValue": "a=b"},
                        },
                        "MessageSystemAttributes": {
                            "AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}
                        },
                    }
                ],
            },
        )
        target = SqsTarget(url, client=sqs, policy=FakeClock().policy())
        assert target.publish([traced]) == {}
        stub.assert_no_pending_responses()
