"""resilient_aws.tracing: spans, inject and extract, with the SDK's in-memory exporter."""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode, TraceFlags, TraceState

from resilient_aws import tracing
from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import RetryEvent, emit

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
XRAY = "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1"


@pytest.fixture
def off() -> None:
    """Tracing off: no provider of ours, and none discovered from the (unset) global one."""
    tracing.set_tracer_provider(None)


def remote(
    trace_id: int = TRACE_ID, span_id: int = SPAN_ID, *, sampled: bool = True, state: str = ""
) -> Context:
    span_context = trace.SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(1 if sampled else 0),
        trace_state=TraceState.from_header([state]) if state else None,
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), Context())


def ids(context: Context | None) -> tuple[int, int, int]:
    assert context is not None
    span_context = trace.get_current_span(context).get_span_context()
    assert span_context.is_remote
    return span_context.trace_id, span_context.span_id, int(span_context.trace_flags)


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    found = {span.name: span for span in spans}
    assert len(found) == len(spans), [span.name for span in spans]
    return found


# -- off: no cost, no spans ----------------------------------------------------------------------


def test_off_span_is_one_shared_no_op_that_lets_exceptions_through(off: None) -> None:
    assert not tracing.enabled()
    scope = tracing.span("x", {"a": 1})
    assert scope is tracing.span("y")
    with scope as span:
        assert span is tracing.NO_SPAN
        span.set_attribute("k", "v")
        span.set_attributes({"k": "v"})
        span.add_event("e", {"k": 1})
        assert not span.is_recording()
        assert "off" in repr(span)
    with pytest.raises(KeyError), tracing.span("x"):
        raise KeyError("boom")
    assert tracing.request_span("PutRecords", entries=3) is scope
    assert tracing.current_context() is None
    assert tracing.inject("sqs") == {}
    entry = {"Id": "1", "MessageBody": "b"}
    assert tracing.inject_into(entry, "sqs") is entry
    assert not tracing.recording()


def test_a_bad_kind_or_carrier_is_refused_even_when_off(off: None) -> None:
    with pytest.raises(ConfigurationError, match="kind"):
        tracing.span("x", kind="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="carrier"):
        tracing.inject("carrier-pigeon")  # type: ignore[arg-type]


def test_a_global_proxy_provider_is_off(off: None) -> None:
    # no global provider set in this process: the API hands out its proxy
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert tracing._discover(trace) is None
    assert tracing._active() is None


# -- spans ---------------------------------------------------------------------------------------


def test_span_is_current_inside_and_names_an_error_by_code_never_by_message(
    exporter: InMemorySpanExporter,
) -> None:
    from botocore.exceptions import ClientError

    with tracing.span("outer", {"a": 1}, kind="producer") as outer:
        assert outer.is_recording()
        assert trace.get_current_span() is outer
        assert tracing.recording()
        with pytest.raises(ClientError), tracing.span("inner"):
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "card 4111 declined"}}, "Put"
            )
        assert trace.get_current_span() is outer
    spans = by_name(exporter)
    inner, outer_span = spans["inner"], spans["outer"]
    assert outer_span.kind is SpanKind.PRODUCER
    assert dict(outer_span.attributes or {}) == {"a": 1}
    assert inner.parent is not None and inner.parent.span_id == outer_span.context.span_id
    assert inner.attributes == {"error.type": "ThrottlingException"}
    assert inner.status.status_code is StatusCode.ERROR
    assert inner.status.description == "ThrottlingException"
    assert inner.events == ()  # no exception event: its message may quote the payload
    assert "4111" not in repr(inner.to_json())


def test_an_error_without_a_code_is_named_by_its_type(exporter: InMemorySpanExporter) -> None:
    class WeirdError(Exception):
        @property
        def response(self) -> Any:
            raise RuntimeError("not botocore's")

    with pytest.raises(ValueError, match="x"), tracing.span("a"):
        raise ValueError("x")
    with pytest.raises(WeirdError), tracing.span("b"):
        raise WeirdError()
    spans = by_name(exporter)
    assert spans["a"].attributes == {"error.type": "ValueError"}
    assert spans["b"].attributes == {"error.type": "WeirdError"}
    assert tracing.error_type(Exception()) == "Exception"
    empty_code = Exception()
    empty_code.response = {"Error": {"Code": ""}}  # type: ignore[attr-defined]
    assert tracing.error_type(empty_code) == "Exception"


def test_parent_and_links(exporter: InMemorySpanExporter) -> None:
    producer = remote()
    linked = remote(trace_id=7, span_id=8)
    with tracing.span("child", parent=producer, links=[linked, Context()]):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_id == TRACE_ID
    assert span.parent is not None and span.parent.span_id == SPAN_ID
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [(7, 8)]


def test_every_kind_maps_to_the_span_kind(exporter: InMemorySpanExporter) -> None:
    for kind in ("internal", "client", "server", "producer", "consumer"):
        with tracing.span(kind, kind=kind):  # type: ignore[arg-type]
            pass
    assert {s.name: s.kind.name.lower() for s in exporter.get_finished_spans()} == {
        k: k for k in ("internal", "client", "server", "producer", "consumer")
    }


def test_request_span_names_the_service_and_collects_the_retry_events(
    exporter: InMemorySpanExporter,
) -> None:
    with tracing.request_span("SendMessageBatch", entries=10, service="SQS") as span:
        span.set_attribute(tracing.FAILED, 2)
        emit(
            RetryEvent(
                kind="partial_failure",
                operation="SendMessageBatch",
                attempt=1,
                error_code="InternalError",
                entries=2,
                retryable=True,
            )
        )
        emit(
            RetryEvent(kind="retry", operation="SendMessageBatch", attempt=1, delay=0.5, entries=2)
        )
    with tracing.request_span("PutRecords", entries=3):
        pass
    spans = by_name(exporter)
    sqs = spans["SQS.SendMessageBatch"]
    assert dict(sqs.attributes or {}) == {
        "aws.operation": "SendMessageBatch",
        "resilient_aws.entries": 10,
        "rpc.system": "aws-api",
        "rpc.service": "SQS",
        "rpc.method": "SendMessageBatch",
        "resilient_aws.failed": 2,
    }
    assert [(e.name, dict(e.attributes or {})) for e in sqs.events] == [
        (
            "partial_failure",
            {
                "resilient_aws.operation": "SendMessageBatch",
                "resilient_aws.attempt": 1,
                "error.type": "InternalError",
                "resilient_aws.retryable": True,
                "resilient_aws.entries": 2,
            },
        ),
        (
            "retry",
            {
                "resilient_aws.operation": "SendMessageBatch",
                "resilient_aws.attempt": 1,
                "resilient_aws.retry.delay_s": 0.5,
                "resilient_aws.entries": 2,
            },
        ),
    ]
    assert dict(spans["PutRecords"].attributes or {}) == {
        "aws.operation": "PutRecords",
        "resilient_aws.entries": 3,
    }


def test_request_span_reads_the_service_from_a_client_and_names_a_handled_error(
    exporter: InMemorySpanExporter,
) -> None:
    import boto3
    from botocore.exceptions import ClientError

    sqs = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with tracing.request_span("SendMessageBatch", entries=2, client=sqs) as span:
        tracing.mark_failed(
            span, ClientError({"Error": {"Code": "AccessDenied", "Message": "4111"}}, "Send")
        )
    with tracing.request_span("PutRecords", entries=1, client=object()):
        pass
    spans = by_name(exporter)
    failed = spans["SQS.SendMessageBatch"]
    assert dict(failed.attributes or {})["rpc.service"] == "SQS"
    assert dict(failed.attributes or {})["error.type"] == "AccessDenied"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "AccessDenied"
    assert "PutRecords" in spans
    tracing.mark_failed(tracing.NO_SPAN, ValueError())  # nothing to mark, nothing raised


def test_mark_failed_on_a_span_that_raises_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def set_attribute(self, key: str, value: Any) -> None:
            raise RuntimeError("closed")

    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        tracing.mark_failed(Broken(), ValueError())  # type: ignore[arg-type]
    assert "RuntimeError" in caplog.text


def test_a_retry_event_outside_any_span_goes_to_logs_and_listeners_only(
    exporter: InMemorySpanExporter,
) -> None:
    seen: list[RetryEvent] = []
    emit(RetryEvent(kind="give_up", operation="Op", attempt=3, reason="attempts"), [seen.append])
    assert len(seen) == 1
    assert exporter.get_finished_spans() == ()


def test_current_context_carries_the_span_into_a_worker_thread(
    exporter: InMemorySpanExporter,
) -> None:
    with tracing.span("writer"):
        context = tracing.current_context()

    def work() -> None:
        with tracing.request_span("BatchWriteItem", entries=25, parent=context):
            pass

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    spans = by_name(exporter)
    assert spans["BatchWriteItem"].parent is not None
    assert spans["BatchWriteItem"].parent.span_id == spans["writer"].context.span_id


def test_set_tracer_provider_none_goes_back_to_the_global_one(
    exporter: InMemorySpanExporter,
) -> None:
    assert tracing.enabled()
    tracing.set_tracer_provider(None)
    assert not tracing.enabled()  # the global one is the API's proxy: nothing set
    with tracing.span("x"):
        pass
    assert exporter.get_finished_spans() == ()


# -- a broken SDK costs the spans, never the work ------------------------------------------------


class _Exploding(SimpleSpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("a broken processor")


def test_a_processor_that_raises_costs_the_span_and_says_so_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(_Exploding(InMemorySpanExporter()))
    tracing.set_tracer_provider(provider)
    monkeypatch.setattr(tracing, "_warned", False)
    try:
        with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
            for _ in range(3):
                with tracing.span("x") as span:
                    assert span is tracing.NO_SPAN
    finally:
        tracing.set_tracer_provider(None)
    levels = [r.levelno for r in caplog.records if r.name == "resilient_aws.tracing"]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "RuntimeError" in caplog.records[0].getMessage()


def test_a_span_that_cannot_be_made_current_is_ended_and_skipped(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opentelemetry.context as context_api

    def broken(context: Any) -> Any:
        raise RuntimeError("no context")

    monkeypatch.setattr(context_api, "attach", broken)
    with tracing.span("x") as span:
        assert span is tracing.NO_SPAN
    assert [s.name for s in exporter.get_finished_spans()] == ["x"]


def test_a_span_whose_end_raises_still_detaches(
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace import Span as SdkSpan

    def broken_end(self: Any, end_time: int | None = None) -> None:
        raise RuntimeError("export failed")

    monkeypatch.setattr(SdkSpan, "end", broken_end)
    before = trace.get_current_span()
    with (
        caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"),
        pytest.raises(KeyError),
        tracing.span("x"),
    ):
        raise KeyError("the caller's own error goes on")
    assert trace.get_current_span() is before
    assert caplog.text.count("RuntimeError") == 1
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        tracing.span_since("attempt", {}, 0, error=ValueError())
    assert caplog.text.count("RuntimeError") == 1


def test_a_context_that_cannot_be_detached_or_read_is_logged(
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import opentelemetry.context as context_api

    def broken(*args: Any) -> Any:
        raise RuntimeError("context store broken")

    def traced() -> None:
        with tracing.span("x"):
            pass

    monkeypatch.setattr(context_api, "detach", broken)
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        # in a copy of the context: the span left attached must not outlive the test
        contextvars.copy_context().run(traced)
        assert caplog.text.count("RuntimeError") == 1
        monkeypatch.setattr(context_api, "get_current", broken)
        assert tracing.current_context() is None
        assert caplog.text.count("RuntimeError") == 2
    assert [s.name for s in exporter.get_finished_spans()] == ["x"]


def test_emit_inject_and_add_event_survive_a_current_span_that_raises(
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[RetryEvent] = []

    def broken(context: Any = None) -> Any:
        raise RuntimeError("context broken")

    monkeypatch.setattr(trace, "get_current_span", broken)

    def failures() -> int:
        found = [r for r in caplog.records if r.name == "resilient_aws.tracing"]
        assert all("RuntimeError" in r.getMessage() for r in found)
        caplog.clear()
        return len(found)

    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        emit(RetryEvent(kind="retry", operation="Op", attempt=1), [seen.append])
        assert failures() == 1  # recording() said no: add_event was not tried
        tracing.add_event("e", {})
        assert failures() == 1
        assert tracing.inject("sqs") == {}
        assert failures() == 1
    assert len(seen) == 1


def test_a_provider_that_cannot_make_a_tracer_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no")

    monkeypatch.setattr(trace, "get_tracer_provider", Broken)
    monkeypatch.setattr(tracing, "_env_provider", None)
    tracing.set_tracer_provider(None)
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        assert tracing._discover(trace) is None
    assert "RuntimeError" in caplog.text


# -- inject --------------------------------------------------------------------------------------


def test_inject_every_carrier(exporter: InMemorySpanExporter) -> None:
    with tracing.span("send", parent=remote(state="vendor=abc")):
        span_id = trace.get_current_span().get_span_context().span_id
        traceparent = f"00-{TRACE_ID:032x}-{span_id:016x}-01"
        xray = f"Root=1-0af76519-16cd43dd8448eb211c80319c;Parent={span_id:016x};Sampled=1"
        assert tracing.inject("w3c") == {"traceparent": traceparent, "tracestate": "vendor=abc"}
        assert tracing.inject() == tracing.inject("w3c")
        attributes = {
            "traceparent": {"DataType": "String", "StringValue": traceparent},
            "tracestate": {"DataType": "String", "StringValue": "vendor=abc"},
        }
        assert tracing.inject("sns") == {"MessageAttributes": attributes}
        assert tracing.inject("sqs") == {
            "MessageAttributes": attributes,
            "MessageSystemAttributes": {
                "AWSTraceHeader": {"DataType": "String", "StringValue": xray}
            },
        }
        assert tracing.inject("eventbridge") == {"TraceHeader": xray}
        assert tracing.inject("kinesis") == {}
        assert tracing.inject("firehose") == {}


def test_inject_an_unsampled_context_without_tracestate() -> None:
    tracing.set_tracer_provider(TracerProvider(sampler=ParentBased(ALWAYS_OFF)))
    try:
        with tracing.span("dropped", parent=remote(sampled=False)) as span:
            assert not span.is_recording()
            span_id = trace.get_current_span().get_span_context().span_id
            fields = tracing.inject("sqs")
            w3c = tracing.inject("w3c")
    finally:
        tracing.set_tracer_provider(None)
    assert w3c == {"traceparent": f"00-{TRACE_ID:032x}-{span_id:016x}-00"}
    assert set(fields["MessageAttributes"]) == {"traceparent"}
    assert fields["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == (
        f"Root=1-0af76519-16cd43dd8448eb211c80319c;Parent={span_id:016x};Sampled=0"
    )


def test_inject_a_given_context_and_nothing_without_a_valid_one(
    exporter: InMemorySpanExporter,
) -> None:
    assert tracing.inject("w3c", context=remote()) == {"traceparent": TRACEPARENT}
    assert tracing.inject("w3c") == {}  # no current span
    assert tracing.inject("w3c", context=Context()) == {}


def test_inject_into_adds_without_touching_the_callers_entry(
    exporter: InMemorySpanExporter,
) -> None:
    parent = remote(state="v=1")
    entry = {"Id": "1", "MessageBody": "b", "MessageAttributes": {"k": {"DataType": "String"}}}
    merged = tracing.inject_into(entry, "sqs", context=parent)
    assert entry == {
        "Id": "1",
        "MessageBody": "b",
        "MessageAttributes": {"k": {"DataType": "String"}},
    }
    assert list(merged["MessageAttributes"]) == ["k", "traceparent", "tracestate"]
    assert merged["MessageAttributes"]["traceparent"]["StringValue"] == TRACEPARENT
    assert merged["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == XRAY
    assert merged["Id"] == "1"


def test_inject_into_leaves_what_the_caller_set(exporter: InMemorySpanExporter) -> None:
    own = {"DataType": "String", "StringValue": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    entry = {
        "MessageAttributes": {"traceparent": own},
        "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "x"}},
    }
    assert tracing.inject_into(entry, "sqs", context=remote(state="v=1")) == entry
    bus = {"Detail": "{}", "TraceHeader": "mine"}
    assert tracing.inject_into(bus, "eventbridge", context=remote()) == bus
    fresh = tracing.inject_into({"Detail": "{}"}, "eventbridge", context=remote())
    assert fresh == {"Detail": "{}", "TraceHeader": XRAY}
    assert tracing.inject_into({"Data": b""}, "kinesis", context=remote()) == {"Data": b""}
    assert tracing.inject_into({"Data": b""}, "w3c", context=remote()) == {
        "Data": b"",
        "traceparent": TRACEPARENT,
    }


@pytest.mark.parametrize(
    ("existing", "added"),
    [(8, ["traceparent", "tracestate"]), (9, ["traceparent"]), (10, []), (12, [])],
)
def test_inject_into_never_takes_a_message_past_ten_attributes(
    exporter: InMemorySpanExporter, existing: int, added: list[str]
) -> None:
    attributes = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(existing)}
    merged = tracing.inject_into(
        {"MessageAttributes": attributes}, "sqs", context=remote(state="v=1")
    )
    assert [k for k in merged["MessageAttributes"] if k not in attributes] == added
    # the X-Ray header is a system attribute: outside the ten, and outside the size
    assert merged["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == XRAY


def test_inject_into_an_entry_whose_attributes_are_not_a_mapping(
    exporter: InMemorySpanExporter,
) -> None:
    merged = tracing.inject_into({"MessageAttributes": None}, "sns", context=remote())
    assert merged["MessageAttributes"]["traceparent"]["StringValue"] == TRACEPARENT


# -- extract -------------------------------------------------------------------------------------


def _sqs_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "messageId": "m-1",
        "receiptHandle": "rh",
        "body": "{}",
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
    }
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    "message",
    [
        _sqs_record(
            messageAttributes={"traceparent": {"stringValue": TRACEPARENT, "dataType": "String"}}
        ),
        _sqs_record(attributes={"AWSTraceHeader": XRAY}),
        {"MessageAttributes": {"traceparent": {"StringValue": TRACEPARENT}}},
        {"Attributes": {"AWSTraceHeader": XRAY}, "Body": "x"},
        {"Sns": {"MessageAttributes": {"traceparent": {"Type": "String", "Value": TRACEPARENT}}}},
        {"Type": "Notification", "MessageAttributes": {"traceparent": {"Value": TRACEPARENT}}},
        {"detail-type": "OrderPlaced", "detail": {"traceparent": TRACEPARENT, "id": 1}},
        {
            "eventSource": "aws:dynamodb",
            "dynamodb": {"NewImage": {"outbox_traceparent": {"S": TRACEPARENT}}},
        },
        {
            "eventSource": "aws:dynamodb",
            "dynamodb": {"OldImage": {"outbox_traceparent": {"S": TRACEPARENT}}},
        },
        {"traceparent": TRACEPARENT},
        {"AWSTraceHeader": XRAY},
        {"X-Amzn-Trace-Id": XRAY},
    ],
    ids=[
        "sqs-lambda-w3c",
        "sqs-lambda-xray",
        "sqs-api-w3c",
        "sqs-api-xray",
        "sns-lambda",
        "sns-notification",
        "eventbridge-detail",
        "dynamodb-new-image",
        "dynamodb-old-image",
        "headers-w3c",
        "headers-xray",
        "headers-amzn",
    ],
)
def test_extract_every_shape(message: dict[str, Any]) -> None:
    assert ids(tracing.extract(message)) == (TRACE_ID, SPAN_ID, 1)


def test_extract_an_sns_notification_in_an_sqs_body() -> None:
    import json

    envelope = {
        "Type": "Notification",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
        "Message": "{}",
        "MessageAttributes": {"traceparent": {"Type": "String", "Value": TRACEPARENT}},
    }
    assert ids(tracing.extract(_sqs_record(body=json.dumps(envelope)))) == (
        TRACE_ID,
        SPAN_ID,
        1,
    )
    not_a_notification = dict(envelope, Type="SubscriptionConfirmation")
    assert tracing.extract(_sqs_record(body=json.dumps(not_a_notification))) is None
    assert tracing.extract(_sqs_record(body='{"TopicArn": [')) is None  # not JSON: nothing


def test_extract_keeps_tracestate_and_prefers_w3c_over_xray() -> None:
    other = "Root=1-00000001-000000000000000000000002;Parent=0000000000000003;Sampled=1"
    context = tracing.extract(
        _sqs_record(
            messageAttributes={
                "traceparent": {"stringValue": TRACEPARENT},
                "tracestate": {"stringValue": "v=1"},
            },
            attributes={"AWSTraceHeader": other},
        )
    )
    assert ids(context) == (TRACE_ID, SPAN_ID, 1)
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_state.to_header() == "v=1"
    # a W3C header that does not parse leaves the X-Ray one
    fallback = tracing.extract(
        _sqs_record(
            messageAttributes={"traceparent": {"stringValue": "00-bad"}},
            attributes={"AWSTraceHeader": other},
        )
    )
    assert ids(fallback) == (0x00000001000000000000000000000002, 3, 1)


def test_extract_a_stream_record_with_another_prefix_and_its_state() -> None:
    image = {"app_traceparent": {"S": TRACEPARENT}, "app_tracestate": {"S": "v=2"}}
    record = {"dynamodb": {"NewImage": image}}
    assert tracing.extract(record) is None  # not the outbox's attribute names
    context = tracing.extract(record, prefix="app_")
    assert ids(context) == (TRACE_ID, SPAN_ID, 1)
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_state.to_header() == "v=2"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (XRAY, (TRACE_ID, SPAN_ID, 1)),
        (
            "Sampled=0; Parent=b7ad6b7169203331 ;Root=1-0af76519-16cd43dd8448eb211c80319c",
            (TRACE_ID, SPAN_ID, 0),
        ),
        (XRAY.replace("Sampled=1", "Sampled=?") + ";Lineage=a87bd80c:1", (TRACE_ID, SPAN_ID, 0)),
        (XRAY.replace(";Sampled=1", ""), (TRACE_ID, SPAN_ID, 0)),
        ("Root=1-0af76519-16cd43dd8448eb211c80319c", None),  # a load balancer's: no parent
        (XRAY.replace("Root=1-", "Root=2-"), None),
        (XRAY.replace("0af76519", "0af7651"), None),
        (XRAY.replace("16cd43dd", "16cd43d"), None),
        (XRAY.replace("b7ad6b7169203331", "b7ad6b716920333"), None),
        (XRAY.replace("b7ad6b71", "b7ad6b7z"), None),
        ("Root=1-00000000-000000000000000000000000;Parent=b7ad6b7169203331", None),
        ("Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=0000000000000000", None),
        ("", None),
    ],
)
def test_extract_the_xray_header(header: str, expected: tuple[int, int, int] | None) -> None:
    found = tracing.extract({"AWSTraceHeader": header} if header else {"AWSTraceHeader": ""})
    if expected is None:
        assert found is None
    else:
        assert ids(found) == expected


@pytest.mark.parametrize(
    "message",
    [
        None,
        "traceparent",
        {},
        {"kinesis": {"data": "e30=", "sequenceNumber": "1"}},
        _sqs_record(),
        {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"},
        {"traceparent": 42},
        {"messageAttributes": {"traceparent": {"stringValue": ""}}},
        {"messageAttributes": {"traceparent": {"binaryValue": b"x"}}},
        {"dynamodb": {"NewImage": {"outbox_traceparent": {"N": "1"}}}},
        {"detail-type": "X", "detail": "not an object"},
    ],
)
def test_extract_finds_nothing_in_what_carries_nothing(
    message: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        assert tracing.extract(message) is None
    assert caplog.records == []  # nothing carried is no failure


def test_an_xray_header_beside_an_sns_body_is_kept() -> None:
    import json

    body = json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:::t", "Message": "{}"})
    record = _sqs_record(body=body, attributes={"AWSTraceHeader": XRAY})
    assert ids(tracing.extract(record)) == (TRACE_ID, SPAN_ID, 1)


def test_extract_survives_a_propagator_that_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    def broken(self: Any, carrier: Any, context: Any = None) -> Any:
        raise RuntimeError("propagator broken")

    monkeypatch.setattr(TraceContextTextMapPropagator, "extract", broken)
    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        assert tracing.extract({"traceparent": TRACEPARENT}) is None
    assert "RuntimeError" in caplog.text


def test_extract_a_record_shaped_like_nothing_known_is_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Hostile(dict):  # type: ignore[type-arg]
        def get(self, key: Any, default: Any = None) -> Any:
            raise RuntimeError("a mapping that raises")

    with caplog.at_level(logging.DEBUG, logger="resilient_aws.tracing"):
        assert tracing.extract(Hostile()) is None
    assert "RuntimeError" in caplog.text


# -- OpenTelemetry absent ------------------------------------------------------------------------


def test_without_opentelemetry_everything_works_and_nothing_is_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    monkeypatch.setattr(tracing, "_installed", None)
    monkeypatch.setattr(tracing, "_tracer", None)
    monkeypatch.setattr(tracing, "_env_provider", None)
    assert not tracing.enabled()
    with tracing.span("x") as span:
        assert span is tracing.NO_SPAN
    assert tracing.inject("sqs") == {}
    assert tracing.extract({"traceparent": TRACEPARENT}) is None
    assert tracing._installed is False  # asked once, remembered
    assert tracing.extract({"AWSTraceHeader": XRAY}) is None
    assert not tracing.recording()
    tracing.add_event("e", {"k": 1})
    emit(RetryEvent(kind="retry", operation="Op", attempt=1))


def test_an_absent_opentelemetry_is_looked_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import sys

    real_import = builtins.__import__
    tries: list[str] = []

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry"):
            tries.append(name)
        return real_import(name, *args, **kwargs)

    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    monkeypatch.setattr(tracing, "_installed", None)
    monkeypatch.setattr(builtins, "__import__", counting)
    assert tracing.extract({"traceparent": TRACEPARENT}) is None
    assert tracing.extract({"traceparent": TRACEPARENT}) is None
    assert tries == ["opentelemetry.trace"]


def test_a_discovered_global_provider_is_asked_for_once(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    asked: list[int] = []

    def get_tracer_provider() -> TracerProvider:
        asked.append(1)
        return provider

    tracing.set_tracer_provider(None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr(trace, "get_tracer_provider", get_tracer_provider)
    try:
        assert tracing.enabled()
        assert tracing.enabled()
        with tracing.span("x") as span:
            assert span.is_recording()
    finally:
        tracing.set_tracer_provider(None)
    assert asked == [1]


def test_the_provider_named_by_the_environment_is_found_without_an_import_by_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``OTEL_PYTHON_TRACER_PROVIDER`` makes the API build a provider on first use: checked in
    a fresh interpreter, where nothing imported OpenTelemetry before resilient_aws."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from resilient_aws import tracing\n"
        "assert 'opentelemetry.trace' not in sys.modules\n"
        "print(tracing.enabled())\n"
        "with tracing.span('x') as s:\n"
        "    print(s.is_recording())\n"
    )
    env = {
        **__import__("os").environ,
        "OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["True", "True"]
    env.pop("OTEL_PYTHON_TRACER_PROVIDER")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["False", "False"]


def test_a_global_provider_set_after_import_is_picked_up() -> None:
    import subprocess
    import sys

    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from resilient_aws import tracing\n"
        "from resilient_aws.retry import RetryPolicy\n"
        "def charge(): return 'ok'\n"
        "RetryPolicy().call(charge)\n"
        "before = tracing.enabled()\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "RetryPolicy().call(charge)\n"
        "print(before, tracing.enabled(), [s.name for s in exporter.get_finished_spans()])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False True ['charge']"
