"""OpenTelemetry spans and trace context, free when OpenTelemetry is not in use.

The one place resilient_aws talks to OpenTelemetry (``pip install 'resilient-aws[otel]'``). The
library makes spans only once the application has configured a tracer provider (globally, as
the OpenTelemetry Lambda layer and ``opentelemetry-instrument`` do, or for resilient_aws alone
with :func:`set_tracer_provider`); until then every function here is a no-op of a few hundred
nanoseconds, and nothing imports ``opentelemetry``: a process that never imported it cannot
have configured it, so its presence in ``sys.modules`` is the first thing checked, and its
import (about 10 ms after boto3's, 56 ms alone) stays off a cold start.

What the library traces: every call through the retry core (a span per call, a child span per
attempt, each retry and give-up as an event on the call's span), each batch request of the
batch engine, and each record of :class:`~resilient_aws.consumer.BatchProcessor` (a child of
the context the record carries). :func:`inject` and :func:`extract` carry the context on
messages: W3C ``traceparent``/``tracestate`` in message attributes and the X-Ray
``AWSTraceHeader``.

Spans never carry payloads, message bodies or exception messages (they may quote the data):
errors are named by their service code or type (``error.type``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from resilient_aws.errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType, TracebackType

    from opentelemetry.context import Context
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = [
    "Carrier",
    "SpanLike",
    "current_context",
    "enabled",
    "error_type",
    "extract",
    "inject",
    "inject_into",
    "mark_failed",
    "request_span",
    "set_tracer_provider",
    "span",
]

logger = logging.getLogger("resilient_aws.tracing")

Carrier = Literal["sqs", "sns", "eventbridge", "kinesis", "firehose", "w3c"]
SpanKindName = Literal["internal", "client", "server", "producer", "consumer"]
_CARRIERS = frozenset(("sqs", "sns", "eventbridge", "kinesis", "firehose", "w3c"))
_KINDS = frozenset(("internal", "client", "server", "producer", "consumer"))

# Attribute names: OpenTelemetry's semantic conventions where one fits, ``resilient_aws.*``
# for the rest. Values are low-cardinality or ids, never payloads.
OPERATION = "aws.operation"
ATTEMPT = "resilient_aws.attempt"
ATTEMPTS = "resilient_aws.attempts"
ENTRIES = "resilient_aws.entries"
FAILED = "resilient_aws.failed"
ERROR_TYPE = "error.type"

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
AWS_TRACE_HEADER = "AWSTraceHeader"
MAX_MESSAGE_ATTRIBUTES = 10  # SQS and SNS (and what SNS raw delivery hands SQS)

_TRACE = "opentelemetry.trace"
_SCOPE = "resilient_aws"
_modules = sys.modules

_tracer: Tracer | None = None  # set once a provider is known: from then on, one global read
_env_provider: bool | None = None  # OTEL_PYTHON_TRACER_PROVIDER set? read once
_installed: bool | None = None  # False once importing opentelemetry.trace failed
_api: tuple[ModuleType, ModuleType] | None = None  # opentelemetry.trace, opentelemetry.context


# -- is tracing on? -----------------------------------------------------------------------------


def _active() -> Tracer | None:
    """The tracer of resilient_aws's spans, or ``None`` while no tracer provider is set."""
    tracer = _tracer
    if tracer is not None:
        return tracer
    trace = _modules.get(_TRACE)
    if trace is None:
        if _env_provider is False:
            return None  # never imported, so never configured: the common case
        return _discover(None)
    # The API's own get_tracer_provider() reads os.environ on every call (2 us); its global
    # says the same in 100 ns, and the public function is the fallback if it ever goes.
    if _env_provider is False and getattr(trace, "_TRACER_PROVIDER", trace) is None:
        return None
    return _discover(trace)


def _discover(trace: ModuleType | None) -> Tracer | None:
    global _env_provider, _tracer
    if _env_provider is None:
        # the API makes a provider from this variable on its first get_tracer_provider()
        _env_provider = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
    if trace is None:
        if not _env_provider:
            return None
        trace = _import_trace()
        if trace is None:
            return None
    try:
        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
        tracer: Tracer = provider.get_tracer(_SCOPE, _version())
    except Exception as error:  # a broken provider costs the spans, never the call
        _failed(error)
        return None
    _tracer = tracer
    return tracer


def _version() -> str:
    # read when a tracer is made: importing the package's __init__ here would tie this
    # module into every subpackage's import cycle
    return str(getattr(_modules.get(_SCOPE), "__version__", ""))


def _import_trace() -> ModuleType | None:
    """``opentelemetry.trace``, imported; ``None`` if it is not installed (asked once: once
    imported, ``sys.modules`` holds it)."""
    global _installed
    if _installed is False:
        return None
    try:
        import opentelemetry.trace as trace
    except ImportError:
        _installed = False
        return None
    return trace


def _otel() -> tuple[ModuleType, ModuleType]:
    """``opentelemetry.trace`` and ``opentelemetry.context``, once something traced (so
    OpenTelemetry is imported already)."""
    global _api
    if _api is None:
        import opentelemetry.context as context
        import opentelemetry.trace as trace

        _api = (trace, context)
    return _api


def enabled() -> bool:
    """Whether resilient_aws makes spans now (a tracer provider is set)."""
    return _active() is not None


def set_tracer_provider(provider: TracerProvider | None) -> None:
    """Make resilient_aws's spans with ``provider`` instead of the global one (tests, or an
    application that keeps a provider of its own); ``None`` goes back to the global one."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer(_SCOPE, _version())


def current_context() -> Context | None:
    """The current OpenTelemetry context while tracing is on, else ``None``: what a worker
    thread needs as ``parent=`` (threads do not inherit the caller's context)."""
    if _active() is None:
        return None
    try:
        return _otel()[1].get_current()  # type: ignore[no-any-return]
    except Exception as error:
        _failed(error)
        return None


# -- spans --------------------------------------------------------------------------------------


class SpanLike(Protocol):
    """What a ``with span(...) as s`` gives: an OpenTelemetry ``Span``, or a stand-in that
    ignores everything while tracing is off."""

    def set_attribute(self, key: str, value: Any) -> None: ...

    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None: ...

    def is_recording(self) -> bool: ...


class _NoSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        return None

    def is_recording(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no span: tracing is off>"


NO_SPAN: SpanLike = _NoSpan()


class _NoopScope:
    """The context manager of every span while tracing is off: one shared instance."""

    __slots__ = ()

    def __enter__(self) -> SpanLike:
        return NO_SPAN

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NOOP = _NoopScope()


class _Scope:
    """A span made current for a ``with`` block; an exception leaving the block marks it
    failed with :func:`error_type`, never with the exception's message."""

    __slots__ = ("_args", "_span", "_token")
    _token: object

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKindName,
        parent: Context | None,
        links: Iterable[Context],
    ) -> None:
        self._args = (tracer, name, attributes, kind, parent, links)
        self._span: Any = None  # stays None if the span could not be started

    def __enter__(self) -> SpanLike:
        tracer, name, attributes, kind, parent, links = self._args
        try:
            trace, context = _otel()
            span = tracer.start_span(
                name,
                context=parent,
                kind=trace.SpanKind[kind.upper()],
                attributes=attributes,
                links=_links(trace, links) if links else None,
                record_exception=False,
                set_status_on_exception=False,
            )
        except Exception as error:  # a broken SDK or processor costs the span, not the work
            _failed(error)
            return NO_SPAN
        try:
            self._token = context.attach(trace.set_span_in_context(span))
        except Exception as error:
            _failed(error)
            span.end()  # started, so ended: a processor waiting for it is not left hanging
            return NO_SPAN
        self._span = span
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is None:
            return
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                mark_failed(span, exc)
            span.end()
        except Exception as error:
            _failed(error)
        try:
            _otel()[1].detach(self._token)
        except Exception as error:
            _failed(error)


def span_since(
    name: str,
    attributes: Mapping[str, Any],
    start_ns: int,
    *,
    error: BaseException | None = None,
    failed: int | None = None,
) -> None:
    """Record a span that began at ``start_ns`` (``time.time_ns()``) and ends now, a child
    of the current span: an attempt that turned out to be worth a span of its own only once
    it had failed. Never raises."""
    tracer = _active()
    if tracer is None:
        return
    try:
        made = tracer.start_span(name, attributes=attributes, start_time=start_ns)
        if failed is not None:
            made.set_attribute(FAILED, failed)
        if error is not None:
            mark_failed(made, error)
        made.end()
    except Exception as error_:
        _failed(error_)


def _links(trace: ModuleType, contexts: Iterable[Context]) -> list[Any]:
    links = []
    for context in contexts:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKindName = "internal",
    parent: Context | None = None,
    links: Iterable[Context] = (),
) -> _Scope | _NoopScope:
    """A span around a ``with`` block, made current inside it::

        with tracing.span("charge", {"order.count": 3}) as s:
            s.set_attribute("charged", True)

    ``parent`` is a context to start the span in (from :func:`extract` or
    :func:`current_context`; default: the current one), ``links`` contexts to link to. An
    exception leaving the block sets ``error.type`` (the service's error code or the
    exception's type) and an error status, and goes on. While tracing is off this costs a
    few hundred nanoseconds and the block gets a stand-in that ignores everything.
    """
    if kind not in _KINDS:
        raise ConfigurationError("kind", f"must be one of {sorted(_KINDS)}, got {kind!r}")
    tracer = _active()
    if tracer is None:
        return _NOOP
    return _Scope(tracer, name, attributes, kind, parent, links)


def request_span(
    operation: str,
    *,
    entries: int,
    service: str | None = None,
    client: Any = None,
    parent: Context | None = None,
) -> _Scope | _NoopScope:
    """The span of one batch request (``SendMessageBatch``, ``BatchWriteItem``...) carrying
    ``entries`` entries: named ``"{service}.{operation}"`` (``"SQS.SendMessageBatch"``; the
    service read from a boto3 ``client`` when not given), or ``operation`` alone. The retry
    events emitted while it is current (entries failed, sent again, given up) become its
    events; :func:`mark_failed` names a whole-request error the engine handles. ``parent``:
    the caller's context when the request is made on another thread
    (:func:`current_context`)."""
    tracer = _active()
    if tracer is None:
        return _NOOP
    attributes: dict[str, Any] = {OPERATION: operation, ENTRIES: entries}
    if service is None and client is not None:
        try:  # a wrapper's ``meta`` may raise: the span goes without the service's name
            model = getattr(getattr(client, "meta", None), "service_model", None)
            service = getattr(model, "service_id", None)
        except Exception as error:
            _failed(error)
    name = operation
    if service:
        name = f"{service}.{operation}"
        attributes.update(rpc_attributes(str(service), operation))
    return _Scope(tracer, name, attributes, "internal", parent, ())


def rpc_attributes(service: str, operation: str) -> dict[str, str]:
    """The RPC attributes of a call of ``operation`` of ``service``: what the botocore
    instrumentation sets, so that its spans and ours land in the same views."""
    return {"rpc.system": "aws-api", "rpc.service": service, "rpc.method": operation}


def error_type(error: BaseException) -> str:
    """A low-cardinality name for an error: a botocore error's code, else the type's name.

    Never raises: a ``response`` that is not botocore's (another library's attribute, a
    property that raises) names the error by its type."""
    try:
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            detail = response.get("Error")
            if isinstance(detail, dict):
                code = detail.get("Code")
                if isinstance(code, str) and code:
                    return code
    except Exception:  # the type's name below is the answer
        return type(error).__name__
    return type(error).__name__


def mark_failed(span: SpanLike, error: BaseException) -> None:
    """Set ``error.type`` (:func:`error_type`) and an error status on ``span``, never the
    error's message (it may quote the payload): for an error handled inside a span, which
    leaving the ``with`` block would not report. Nothing on the stand-in of tracing off; never
    raises."""
    if span is NO_SPAN:
        return
    try:
        code = error_type(error)
        span.set_attribute(ERROR_TYPE, code)
        trace = _otel()[0]
        span.set_status(trace.Status(trace.StatusCode.ERROR, code))  # type: ignore[attr-defined]
    except Exception as failure:
        _failed(failure)


def recording() -> bool:
    """Whether the current span records (what :func:`add_event` would add to). Never raises."""
    trace = _modules.get(_TRACE)
    if trace is None:
        return False
    try:
        return bool(trace.get_current_span().is_recording())
    except Exception as error:
        _failed(error)
        return False


def add_event(name: str, attributes: Mapping[str, Any]) -> None:
    """Add an event to the current span, if one is recording. Never raises."""
    trace = _modules.get(_TRACE)
    if trace is None:
        return
    try:
        current = trace.get_current_span()
        if current.is_recording():
            current.add_event(name, {k: v for k, v in attributes.items() if v is not None})
    except Exception as error:
        _failed(error)


_warned = False


def _failed(error: Exception) -> None:
    """Say that tracing failed: once as a warning, then at debug level (a broken exporter
    or processor would fail every span, and the logs are not to drown in it)."""
    global _warned
    level = logging.DEBUG if _warned else logging.WARNING
    _warned = True
    with contextlib.suppress(Exception):  # nowhere left to say it
        logger.log(level, "tracing failed (%s): continuing without it", type(error).__name__)


# -- carrying the context on messages -----------------------------------------------------------


def inject(carrier: Carrier = "w3c", *, context: Context | None = None) -> dict[str, Any]:
    """The current trace context (or ``context``'s) as the fields of a message entry:

    * ``"sqs"``: ``MessageAttributes`` ``traceparent`` (and ``tracestate``), and
      ``MessageSystemAttributes`` ``AWSTraceHeader`` (X-Ray), for ``SendMessage`` and
      ``SendMessageBatch`` entries;
    * ``"sns"``: ``MessageAttributes`` ``traceparent`` (and ``tracestate``);
    * ``"eventbridge"``: ``TraceHeader`` (X-Ray): EventBridge hands it to X-Ray and to
      targets, never in the event a target receives;
    * ``"kinesis"``, ``"firehose"``: ``{}``, these APIs have no field for it outside the data;
    * ``"w3c"``: ``{"traceparent": ..., "tracestate": ...}`` as plain strings (an outbox
      item, an HTTP request, a field of an event's ``detail``).

    ``{}`` when there is no valid current span (tracing off, nothing started). The X-Ray
    header is made from the W3C ids: ``Root=1-{first 8 hex}-{last 24 hex}`` of the trace id,
    ``Parent=`` the span id, ``Sampled=`` the sampled flag.
    """
    if carrier not in _CARRIERS:
        raise ConfigurationError("carrier", f"must be one of {sorted(_CARRIERS)}, got {carrier!r}")
    trace = _modules.get(_TRACE)
    if trace is None:
        return {}  # never imported: no span can be current
    try:
        current = trace.get_current_span(context)
        span_context = current.get_span_context()
        if not span_context.is_valid:
            return {}
        trace_id = f"{span_context.trace_id:032x}"
        span_id = f"{span_context.span_id:016x}"
        sampled = span_context.trace_flags & 1
        state = span_context.trace_state.to_header() if span_context.trace_state else ""
    except Exception as error:
        _failed(error)
        return {}
    traceparent = f"00-{trace_id}-{span_id}-{span_context.trace_flags & 0xFF:02x}"
    xray = f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled={sampled}"
    if carrier == "eventbridge":
        return {"TraceHeader": xray}
    if carrier in ("kinesis", "firehose"):
        return {}
    if carrier == "w3c":
        return (
            {TRACEPARENT: traceparent, TRACESTATE: state} if state else {TRACEPARENT: traceparent}
        )
    attributes = {TRACEPARENT: {"DataType": "String", "StringValue": traceparent}}
    if state:
        attributes[TRACESTATE] = {"DataType": "String", "StringValue": state}
    fields: dict[str, Any] = {"MessageAttributes": attributes}
    if carrier == "sqs":
        fields["MessageSystemAttributes"] = {
            AWS_TRACE_HEADER: {"DataType": "String", "StringValue": xray}
        }
    return fields


def inject_into(
    entry: Mapping[str, Any], carrier: Carrier, *, context: Context | None = None
) -> Mapping[str, Any]:
    """``entry`` (a ``SendMessageBatch``/``PublishBatch``/``PutEvents`` entry, a message's
    keyword arguments) with :func:`inject`'s fields added; ``entry`` itself when there is
    nothing to add, else a new dict (``entry`` is never changed).

    What the caller set wins, whole: an entry that already carries a trace context of its own
    (a ``traceparent`` or ``tracestate`` attribute, an ``AWSTraceHeader`` or ``TraceHeader``)
    gets nothing added, since a context of the current span beside it would name another
    trace, and a consumer reading the W3C one first would continue that one. Attributes that
    are not a mapping are left for the service to refuse. The W3C attributes are left out
    when they would take a message past SQS's and SNS's 10 message attributes
    (``tracestate`` first). They count toward the message's size, like any attribute: inject
    before checking it (the X-Ray system attribute does not count).
    """
    if _carries_its_own(entry):
        return entry
    fields = inject(carrier, context=context)
    if not fields:
        return entry
    merged = dict(entry)
    for key, value in fields.items():
        if not isinstance(value, dict):
            merged[key] = value
            continue
        existing = dict(merged.get(key) or {})
        if key == "MessageAttributes":
            room = MAX_MESSAGE_ATTRIBUTES - len(existing)
            value = dict(list(value.items())[: max(room, 0)])
        if value:
            merged[key] = {**existing, **value}
    return merged


_OWN_CONTEXT = {
    "MessageAttributes": (TRACEPARENT, TRACESTATE),
    "MessageSystemAttributes": (AWS_TRACE_HEADER,),
}


def _carries_its_own(entry: Mapping[str, Any]) -> bool:
    """Whether ``entry`` has a trace context of its caller's (or attributes of a shape that is
    not a mapping: nothing is to be merged into those)."""
    if any(key in entry for key in ("TraceHeader", TRACEPARENT, TRACESTATE)):
        return True
    for key, names in _OWN_CONTEXT.items():
        attributes = entry.get(key)
        if attributes is None:
            continue
        if not isinstance(attributes, Mapping) or any(name in attributes for name in names):
            return True
    return False


def extract(message: Any, *, prefix: str = "outbox_") -> Context | None:
    """The trace context a received message carries, as a parent for the span that handles
    it; ``None`` when it carries none (or OpenTelemetry is not installed).

    Reads, W3C ``traceparent`` (with ``tracestate``) first, then the X-Ray header:

    * an SQS record of a Lambda event (``messageAttributes.traceparent.stringValue``,
      ``attributes.AWSTraceHeader``) or a ``ReceiveMessage`` message (``MessageAttributes``,
      ``Attributes``); one whose body is an SNS notification (no raw delivery) is read from
      the notification's ``MessageAttributes``;
    * an SNS record of a Lambda event (``Sns.MessageAttributes``) or an SNS notification;
    * an EventBridge event: ``detail.traceparent`` (EventBridge keeps ``TraceHeader`` from
      its targets' events, so the producer must put the W3C context in the ``detail``);
    * a DynamoDB stream record: the ``{prefix}traceparent`` and ``{prefix}tracestate``
      string attributes of its new image (old image for a ``REMOVE``);
    * a plain mapping of headers: ``traceparent``, ``AWSTraceHeader``, ``X-Amzn-Trace-Id``.

    A malformed header is ignored (``None``), never raised.
    """
    if not isinstance(message, Mapping):
        return None
    try:
        traceparent, tracestate, xray = _carried(message, prefix)
    except Exception as error:
        # a record shaped like nothing above carries nothing: the producer's data, not a
        # failure of tracing, so it does not spend the warning a broken tracer gets
        with contextlib.suppress(Exception):
            logger.debug(
                "no trace context read (%s): the message is malformed", type(error).__name__
            )
        return None
    if traceparent is None and xray is None:
        return None
    trace = _import_trace() if _modules.get(_TRACE) is None else _modules[_TRACE]
    if trace is None:
        return None
    try:
        if traceparent is not None:
            found = _from_w3c(traceparent, tracestate)
            if found is not None:
                return found
        return _from_xray(trace, xray) if xray is not None else None
    except Exception as error:
        _failed(error)
        return None


def _carried(message: Mapping[str, Any], prefix: str) -> tuple[str | None, str | None, str | None]:
    """(traceparent, tracestate, X-Ray header) of a message, each ``None`` if absent."""
    sns = message.get("Sns")
    if isinstance(sns, Mapping):
        message = sns
    stream = message.get("dynamodb")
    if isinstance(stream, Mapping):
        image = stream.get("NewImage") or stream.get("OldImage")
        if not isinstance(image, Mapping):
            return None, None, None
        return (
            _typed_string(image.get(f"{prefix}{TRACEPARENT}")),
            _typed_string(image.get(f"{prefix}{TRACESTATE}")),
            None,
        )
    detail = message.get("detail")
    if isinstance(detail, Mapping) and "detail-type" in message:
        return _string(detail.get(TRACEPARENT)), _string(detail.get(TRACESTATE)), None
    traceparent = tracestate = xray = None
    attributes = message.get("messageAttributes") or message.get("MessageAttributes")
    if isinstance(attributes, Mapping):
        traceparent = _attribute(attributes.get(TRACEPARENT))
        tracestate = _attribute(attributes.get(TRACESTATE))
    system = message.get("attributes") or message.get("Attributes")
    if isinstance(system, Mapping):
        xray = _string(system.get(AWS_TRACE_HEADER))
    if traceparent is None:
        traceparent, tracestate = (
            _string(message.get(TRACEPARENT)),
            _string(message.get(TRACESTATE)),
        )
    if xray is None:
        xray = _string(message.get(AWS_TRACE_HEADER)) or _string(message.get("X-Amzn-Trace-Id"))
    if traceparent is None and xray is None:
        body = message.get("body", message.get("Body"))
        if isinstance(body, str) and body.startswith("{") and '"TopicArn"' in body:
            try:  # an SNS notification delivered without raw delivery, or a body like one
                envelope = json.loads(body)
            except (ValueError, RecursionError):
                return None, None, None
            if isinstance(envelope, Mapping) and envelope.get("Type") == "Notification":
                return _carried(envelope, prefix)
    return traceparent, tracestate, xray


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _typed_string(value: Any) -> str | None:
    """A DynamoDB ``{"S": ...}`` value."""
    return _string(value.get("S")) if isinstance(value, Mapping) else None


def _attribute(value: Any) -> str | None:
    """A message attribute's string in any of its shapes: Lambda's ``stringValue``, the API's
    ``StringValue``, an SNS notification's ``Value``."""
    if isinstance(value, Mapping):
        for key in ("stringValue", "StringValue", "Value"):
            found = _string(value.get(key))
            if found is not None:
                return found
        return None
    return _string(value)


def _from_w3c(traceparent: str, tracestate: str | None) -> Context | None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT: traceparent}
    if tracestate is not None:
        carrier[TRACESTATE] = tracestate
    found = TraceContextTextMapPropagator().extract(carrier)
    trace = _otel()[0]
    return found if trace.get_current_span(found).get_span_context().is_valid else None


_HEX = frozenset("0123456789abcdefABCDEF")
_MAX_XRAY_HEADER = 8192  # Lambda's bound for one (TraceHeader.XAmznTraceId)


def _from_xray(trace: ModuleType, header: str) -> Context | None:
    """``Root=1-{8 hex}-{24 hex};Parent={16 hex};Sampled={0|1}`` (any order, other keys such
    as ``Lineage`` ignored); a header without ``Parent`` (a load balancer's) names no span to
    continue from."""
    if len(header) > _MAX_XRAY_HEADER:
        return None  # a few hundred bytes at most when real: not worth a split of megabytes
    fields = {}
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        fields[key.strip()] = value.strip()
    root, parent = fields.get("Root", ""), fields.get("Parent", "")
    version, _, rest = root.partition("-")
    epoch, _, unique = rest.partition("-")
    if (
        version != "1"
        or len(epoch) != 8
        or len(unique) != 24
        or len(parent) != 16
        or not _HEX.issuperset(epoch + unique + parent)
    ):
        return None
    trace_id, span_id = int(epoch + unique, 16), int(parent, 16)
    if not trace_id or not span_id:
        return None
    span_context = trace.SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(1 if fields.get("Sampled") == "1" else 0),
    )
    context = _otel()[1]
    return trace.set_span_in_context(  # type: ignore[no-any-return]
        trace.NonRecordingSpan(span_context), context.Context()
    )
