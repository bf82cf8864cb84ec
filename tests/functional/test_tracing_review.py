"""Adversarial review of tracing: what tracing must never do to a user's message (mix its
context into one the caller set, cost a message that fits, refuse what it would have sent),
and what a malformed incoming message must never do to tracing (spend its one warning).

The senders and the outbox add the trace context only where it fits: a message or event that
fits without it is never refused because of it."""

from __future__ import annotations

import logging
from typing import Any

import boto3
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import TraceFlags, TraceState

from resilient_aws import tracing
from resilient_aws.batch import SnsPublisher, SqsSender
from resilient_aws.batch._sqs import message_attributes_size
from resilient_aws.limits import SNS_PUBLISH_BATCH, SQS_BATCH
from resilient_aws.payloads import PayloadConfig, PayloadStore
from resilient_aws.testing import FakeClock

REGION = "us-east-1"
# the producer's X-Ray context, as a DLQ message carries it
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
XRAY_TRACE_ID = 0x5759E988BD862E3FE1BE46A994272793
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def current(state: str = "") -> Context:
    """A context of another trace than the caller's own (the span a sender runs in)."""
    span_context = trace.SpanContext(
        0x1111111111111111AAAAAAAAAAAAAAAA,
        0x2222222222222222,
        is_remote=False,
        trace_flags=TraceFlags(1),
        trace_state=TraceState.from_header([state]) if state else None,
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), Context())


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def trace_id(context: Context | None) -> int | None:
    if context is None:
        return None
    return trace.get_current_span(context).get_span_context().trace_id


# -- a context the caller set is the message's whole context --------------------------------------


def test_the_callers_tracestate_is_never_replaced() -> None:
    """A caller's own ``tracestate`` (without a ``traceparent``) was overwritten by the current
    span's: a user's attribute changed by tracing."""
    entry = {"MessageAttributes": {"tracestate": string("mine=1")}}
    merged = tracing.inject_into(entry, "sqs", context=current(state="vendor=v"))
    assert merged["MessageAttributes"]["tracestate"] == string("mine=1")


def test_a_callers_xray_header_alone_is_not_outvoted_by_the_current_span() -> None:
    """A message the caller gave its own ``AWSTraceHeader`` was given the *current* span's
    ``traceparent`` beside it; ``extract`` (and every W3C consumer) prefers the W3C one, so the
    message continued the sender's trace, not the one its caller set."""
    entry = {"MessageSystemAttributes": {"AWSTraceHeader": string(XRAY)}}
    merged = tracing.inject_into(entry, "sqs", context=current())
    assert merged == entry
    record = {
        "attributes": {"AWSTraceHeader": XRAY},
        "messageAttributes": {
            name: {"stringValue": value["StringValue"], "dataType": "String"}
            for name, value in merged.get("MessageAttributes", {}).items()
        },
    }
    assert trace_id(tracing.extract(record)) == XRAY_TRACE_ID


def test_a_callers_traceparent_alone_gets_no_xray_header_of_another_trace() -> None:
    """The converse: the X-Ray header added beside the caller's ``traceparent`` named the
    sender's trace, so X-Ray (and Lambda's own SQS integration) saw another trace than W3C."""
    entry = {"MessageAttributes": {"traceparent": string(TRACEPARENT)}}
    assert tracing.inject_into(entry, "sqs", context=current()) == entry


def test_attributes_that_are_not_a_mapping_are_left_for_the_service_to_refuse() -> None:
    """``MessageAttributes``/``MessageSystemAttributes`` of the wrong shape were silently
    replaced by the trace's: a caller's bug hidden, their attributes dropped."""
    for key in ("MessageAttributes", "MessageSystemAttributes"):
        entry = {"MessageBody": "b", key: [("k", "v")]}
        assert tracing.inject_into(entry, "sqs", context=current()) is entry


def test_a_message_sent_with_its_own_xray_header_keeps_its_trace(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    """End to end through SqsSender: a message forwarded with the ``AWSTraceHeader`` it came
    with, sent inside a span (a Lambda with the OpenTelemetry layer), got the span's
    ``traceparent`` too, and the consumer continued the forwarder's trace, not the producer's.
    moto drops system attributes, so the request's entry is what the consumer is shown."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="forwarded")["QueueUrl"]
    sent: list[dict[str, Any]] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: sent.extend(params["Entries"]),
    )
    with tracing.span("forwarder"), SqsSender(url, client=sqs) as sender:
        sender.send_message("{}", system_attributes={"AWSTraceHeader": string(XRAY)})
    (entry,) = sent
    assert entry["MessageSystemAttributes"] == {"AWSTraceHeader": string(XRAY)}
    record = {
        "messageId": "m",
        "body": entry["MessageBody"],
        "attributes": {"AWSTraceHeader": XRAY},
        "messageAttributes": {
            name: {"stringValue": value["StringValue"], "dataType": value["DataType"]}
            for name, value in entry.get("MessageAttributes", {}).items()
        },
    }
    assert trace_id(tracing.extract(record)) == XRAY_TRACE_ID


# -- a malformed incoming message is not a tracing failure ----------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"messageId": "m", "body": '{"TopicArn": "arn:x", '}, id="cut-sns-body"),
        pytest.param(
            {"messageId": "m", "body": '{"TopicArn":' + "[" * 100_000 + "]" * 100_000 + "}"},
            id="deep-sns-body",
        ),
        pytest.param({"dynamodb": {"NewImage": "not an image"}}, id="stream-image-not-a-map"),
        pytest.param({"dynamodb": {"NewImage": {"outbox_traceparent": "x"}}}, id="untyped-value"),
    ],
)
def test_a_malformed_record_does_not_spend_the_one_warning(
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    record: dict[str, Any],
) -> None:
    """A body shaped like a cut SNS notification logged "tracing failed" as the one warning a
    broken tracer gets: the producer's bad data blamed on tracing, and the real failure that
    came next logged at debug level only."""
    monkeypatch.setattr(tracing, "_warned", False)
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        assert tracing.extract(record) is None
    assert [r for r in caplog.records if r.name == "resilient_aws.tracing"] == []
    assert tracing._warned is False


# -- tracing never costs a message that fits -------------------------------------------------------


def _fill(limit: int, *, spare: int) -> str:
    return "x" * (limit - spare)


def test_an_sqs_message_that_fits_is_sent_with_tracing_on(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="full")["QueueUrl"]
    assert SQS_BATCH.max_entry_bytes is not None
    body = _fill(SQS_BATCH.max_entry_bytes, spare=20)  # fits, the ~75-byte traceparent does not
    with tracing.span("producer"), SqsSender(url, client=sqs, raise_on_failure=False) as sender:
        sender.send_message(body, id="big")
    assert sender.result.failed == []
    assert sender.result.succeeded == 1


def test_an_sns_message_that_fits_is_published_with_tracing_on(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="full")["TopicArn"]
    assert SNS_PUBLISH_BATCH.max_entry_bytes is not None
    message = _fill(SNS_PUBLISH_BATCH.max_entry_bytes, spare=20)
    with tracing.span("producer"), SnsPublisher(topic, client=sns, raise_on_failure=False) as p:
        p.publish(message, id="big")
    assert p.result.failed == []
    assert p.result.succeeded == 1


def test_the_traceparent_is_what_costs_the_message() -> None:
    """Why the two tests above fail: the attribute's bytes, counted as SQS counts them."""
    added = tracing.inject_into({}, "sqs", context=current())["MessageAttributes"]
    assert message_attributes_size(added) == len("traceparent") + len("String") + 55 > 20


def test_an_offloaded_message_with_nine_attributes_is_sent_with_tracing_on(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="payloads")
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="offloaded")["QueueUrl"]
    store = PayloadStore(PayloadConfig(bucket="payloads", always=True), client=s3)
    nine = {f"a{i}": string("v") for i in range(9)}
    sender = SqsSender(url, client=sqs, payloads=store, raise_on_failure=False)
    with tracing.span("producer"), sender:
        sender.send_message("body", id="nine", attributes=nine)
    assert sender.result.failed == []
    assert sender.result.succeeded == 1


# -- a span is never the reason a write fails ------------------------------------------------------


class _NoMeta:
    """A client wrapper (a proxy, a recorder) that forwards the calls but whose ``meta``
    raises: the request span read the service name from it outside any guard."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @property
    def meta(self) -> Any:
        raise RuntimeError("no meta here")

    def send_message_batch(self, **params: Any) -> Any:
        return self._client.send_message_batch(**params)


def test_a_client_whose_meta_raises_costs_the_request_span_not_the_write(
    aws: None, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="wrapped")["QueueUrl"]
    with tracing.span("producer"), SqsSender(url, client=_NoMeta(sqs)) as sender:
        sender.send_message("hello", id="one")
    assert sender.result.succeeded == 1
    names = [span.name for span in exporter.get_finished_spans()]
    assert "SendMessageBatch" in names  # named by the operation alone
    (received,) = sqs.receive_message(QueueUrl=url).get("Messages", [])
    assert received["Body"] == "hello"


def test_an_xray_header_of_megabytes_is_not_parsed() -> None:
    """A plain mapping's ``X-Amzn-Trace-Id`` (an HTTP header, a field of an event) of
    megabytes was split on every ``;`` for each record: seconds per batch for a header whose
    real form is ~100 bytes (Lambda bounds it at 8192). Past that bound it carries nothing."""
    valid = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert trace_id(tracing.extract({"X-Amzn-Trace-Id": valid})) == XRAY_TRACE_ID
    assert tracing.extract({"X-Amzn-Trace-Id": valid + ";" * 8192}) is None


def test_an_outbox_event_that_fits_is_written_with_tracing_on(
    ddb: Any, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.dynamodb._serialize import item_size
    from resilient_aws.limits import DYNAMODB_ITEM_BYTES
    from resilient_aws.outbox import Outbox, OutboxEvent
    from tests.outbox_support import create_outbox_table, make_moto_dynamodb_atomic

    make_moto_dynamodb_atomic(monkeypatch)
    create_outbox_table(ddb)
    clock = FakeClock(start=1_700_000_000.0)
    outbox = Outbox("orders", client=ddb, policy=clock.policy(), clock=clock.monotonic)

    def event(payload: str) -> OutboxEvent:
        return OutboxEvent("OrderPlaced", "order-1", payload, sequence=1, id="e-1")

    empty = item_size(outbox.layout.record(event(""), written_at=outbox.clock()))
    exact = event("x" * (DYNAMODB_ITEM_BYTES - empty))
    # moto refuses items over 405,000 bytes, DynamoDB only over 409,600: the request is taken
    # as sent instead of written to moto
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(ddb, "transact_write_items", lambda **request: sent.append(request) or {})
    with tracing.span("write"):
        (written,) = outbox.write(events=[exact])
    assert written.trace is None
    (action,) = sent[0]["TransactItems"]
    record = action["Put"]["Item"]
    assert record["outbox_event_id"] == {"S": "e-1"}
    assert "outbox_traceparent" not in record
    assert item_size(record) == DYNAMODB_ITEM_BYTES
