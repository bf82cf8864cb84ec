"""Lambda asynchronous invocation failures -> the function again, or a queue.

Two shapes reach a queue when an asynchronous invocation finally fails:

- an *on-failure destination* record: a JSON document with ``version``, ``timestamp``,
  ``requestContext`` (``requestId``, ``functionArn``, ``condition``, ``approximateInvokeCount``),
  ``requestPayload`` (the event), ``responseContext`` and ``responsePayload``;
- a *Lambda DLQ* message: the event itself as the body, with the message attributes
  ``RequestID`` (String), ``ErrorCode`` (Number) and ``ErrorMessage`` (String). It does not say
  which function failed: pass ``function_name``.

Either may come wrapped in an SNS notification (a topic subscribed to the queue without raw
message delivery); the envelope is looked through.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any, Literal

from resilient_aws._dataclass import lean_dataclass
from resilient_aws._json import dumps_verbatim
from resilient_aws.errors import ConfigurationError
from resilient_aws.redrive._drain import DEFAULT_REMEMBER_MOVED, DrainOptions, Outcome, drain
from resilient_aws.redrive._message import DlqMessage, Filter
from resilient_aws.redrive._queues import QueueInfo, describe_queue, sqs_client
from resilient_aws.redrive._report import RedriveReport, start_report
from resilient_aws.redrive._sqs import resolve_target
from resilient_aws.redrive._targets import (
    CLIENT_ERRORS,
    Clients,
    QueueItem,
    check_function,
    drain_options,
    invoke,
    send_items,
    unreachable,
    unwrap_sns,
)
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["LambdaFailure", "parse_lambda_failure", "redrive_lambda"]

_DLQ_ATTRIBUTES = ("RequestID", "ErrorCode", "ErrorMessage")
_POINTERS = ("DDBStreamBatchInfo", "KinesisBatchInfo")


@lean_dataclass(frozen=True)
class LambdaFailure:
    """A failed asynchronous invocation read from a DLQ message.

    ``payload`` is the original event as JSON bytes, ``function`` the function an on-failure
    record names (``None`` for Lambda DLQ messages), ``request_id`` the failed request,
    ``reason`` the record's ``condition`` or the DLQ message's ``ErrorCode``.
    """

    payload: bytes = field(repr=False)
    function: str | None
    request_id: str | None
    reason: str | None
    shape: Literal["destination", "dlq"]


def parse_lambda_failure(message: DlqMessage) -> LambdaFailure:
    """The failed invocation in ``message``; ``ValueError`` (naming what is wrong, never the
    payload) if it is neither an on-failure record nor a Lambda DLQ message."""
    try:
        body, attributes = unwrap_sns(message)
    except ValueError:
        body, attributes = (
            None,
            {
                name: str(value.get("StringValue", ""))
                for name, value in message.message_attributes.items()
            },
        )
    if isinstance(body, dict) and any(key in body for key in _POINTERS):
        raise ValueError(
            "StreamPointer: an event source mapping failure carries a stream pointer, not an "
            "event; redrive it with redrive_stream_pointers"
        )
    if isinstance(body, dict) and isinstance(body.get("requestContext"), dict):
        if "requestPayload" not in body:
            raise ValueError("NotALambdaFailure: an invocation record without requestPayload")
        context = body["requestContext"]
        if context.get("condition") == "Success":
            raise ValueError("NotAFailure: an on-success destination record (condition Success)")
        function = context.get("functionArn")
        return LambdaFailure(
            payload=dumps_verbatim(body["requestPayload"]).encode(),
            function=str(function) if function else None,
            request_id=_text(context.get("requestId")),
            reason=_text(context.get("condition")),
            shape="destination",
        )
    if any(name in attributes for name in _DLQ_ATTRIBUTES):
        payload = message.body
        if body is not None and _is_sns(message):
            payload = json.loads(message.body)["Message"]
        return LambdaFailure(
            payload=payload.encode(),
            function=None,
            request_id=attributes.get("RequestID"),
            reason=attributes.get("ErrorCode"),
            shape="dlq",
        )
    raise ValueError(
        "NotALambdaFailure: neither an on-failure destination record (requestContext, "
        "requestPayload) nor a Lambda DLQ message (RequestID, ErrorCode, ErrorMessage attributes)"
    )


def _is_sns(message: DlqMessage) -> bool:
    try:
        body = message.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("Type") == "Notification" and "TopicArn" in body


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def region_of(arn: str) -> str | None:
    """The region of a function ARN (``None`` for a bare name: the client's own region)."""
    parts = arn.split(":")
    return parts[3] or None if arn.startswith("arn:") and len(parts) > 3 else None


class LambdaDelivery:
    """Re-invokes each failed event asynchronously, or sends it to a queue.

    ``clients`` are :class:`~resilient_aws.redrive._targets.Clients` (or, for the async
    delivery, ``AsyncClients``): a Lambda client per region of the functions, and the SQS
    client for a queue target."""

    def __init__(
        self,
        clients: Any,
        *,
        function_name: str | None,
        queue_url: str | None,
        queue_fifo: bool = False,
        run_id: str = "",
    ) -> None:
        self.clients = clients
        self.function_name = function_name
        self.queue_url = queue_url
        self.queue_fifo = queue_fifo
        self.run_id = run_id

    def parse(
        self, messages: list[DlqMessage], outcome: Outcome
    ) -> list[tuple[DlqMessage, LambdaFailure]]:
        """The failed invocation of each message; one of neither shape fails in ``outcome``."""
        parsed: list[tuple[DlqMessage, LambdaFailure]] = []
        for message in messages:
            try:
                parsed.append((message, parse_lambda_failure(message)))
            except ValueError as error:
                outcome.failed[message.message_id] = str(error)
        return parsed

    def queue_items(self, parsed: list[tuple[DlqMessage, LambdaFailure]]) -> list[QueueItem]:
        """What goes to the target queue: each payload, named by its message id."""
        return [QueueItem(m.message_id, f.payload.decode("utf-8")) for m, f in parsed]

    def invocations(
        self, parsed: list[tuple[DlqMessage, LambdaFailure]], outcome: Outcome
    ) -> Iterator[tuple[str, str, bytes]]:
        """``(message id, function, payload)`` of each invocation to make; a message whose
        function is not known fails in ``outcome``."""
        for message, failure in parsed:
            function = self.function_name or failure.function
            if function is None:
                outcome.failed[message.message_id] = (
                    "NoFunction: a Lambda DLQ message does not name its function; pass "
                    "function_name"
                )
                continue
            yield message.message_id, function, failure.payload

    def deliver(self, messages: list[DlqMessage], policy: RetryPolicy) -> Outcome:
        outcome = Outcome()
        parsed = self.parse(messages, outcome)
        if self.queue_url is not None:
            failed, outcome.resent = send_items(
                self.queue_url,
                self.queue_items(parsed),
                client=self.clients.get("sqs"),
                policy=policy,
                fifo=self.queue_fifo,
            )
            outcome.failed.update(failed)
            return outcome
        for message_id, function, payload in self.invocations(parsed, outcome):
            region = region_of(function)
            try:
                client = self.clients.get("lambda", region)
            except CLIENT_ERRORS as error:
                if region is None:
                    raise  # the run's own configuration, not a message's
                outcome.failed[message_id] = unreachable("lambda", region, error)
                continue
            problem = invoke(client, function, payload, "Event", policy)
            if problem is not None:
                outcome.failed[message_id] = problem
        return outcome


def lambda_run(
    clients: Any,
    source: QueueInfo,
    target: QueueInfo | None,
    delivery_type: type[LambdaDelivery],
    arguments: Any,
) -> tuple[Any, RedriveReport, DrainOptions]:
    """The delivery, the empty report and the options of a drain of ``source`` into Lambda
    (or the ``target`` queue), for a sync or an async driver; ``arguments`` are those
    :func:`redrive_lambda` was called with (its ``locals()``)."""
    options = drain_options(source, arguments)
    run_id = arguments["run_id"] or uuid.uuid4().hex
    function_name = arguments["function_name"]
    report = start_report(
        source,
        kind="lambda",
        target=(target.url if target else function_name) or "the function named by each record",
        run_id=run_id,
        dry_run=options.dry_run,
        max_messages=options.max_messages,
    )
    delivery = delivery_type(
        clients,
        function_name=function_name,
        queue_url=target.url if target else None,
        queue_fifo=target.fifo if target else False,
        run_id=run_id,
    )
    return delivery, report, options


def check_lambda_target(function_name: str | None, target_queue_url: str | None) -> None:
    if function_name is not None and target_queue_url is not None:
        raise ConfigurationError("target", "give function_name or target_queue_url, not both")


def redrive_lambda(
    source_queue_url: str,
    *,
    function_name: str | None = None,
    target_queue_url: str | None = None,
    client: Any = None,
    lambda_client: Any = None,
    session: Any = None,
    policy: RetryPolicy | None = None,
    max_messages: int | None = None,
    rate: float | None = None,
    filter: Filter | None = None,
    dry_run: bool = False,
    visibility_timeout: int = 120,
    wait_time_s: int = 1,
    run_id: str | None = None,
    concurrency: int = 4,
    progress: Callable[[RedriveReport], None] | None = None,
    remember_moved: int = DEFAULT_REMEMBER_MOVED,
) -> RedriveReport:
    """Re-run failed asynchronous Lambda invocations from the queue that holds them.

    Each message (an on-failure destination record or a Lambda DLQ message, see the module
    docs) is re-invoked asynchronously (``InvocationType=Event``) with its original payload on
    ``function_name``, by default on the function the record names; or, with
    ``target_queue_url``, its payload is sent to that queue instead. A message is deleted only
    once Lambda has accepted the invocation (or the queue the message); one that is not of
    either shape is reported failed and stays. The options shared with :func:`redrive_sqs`
    (``filter``, ``dry_run``, ``max_messages``, ``rate``, ``visibility_timeout``,
    ``concurrency``, ``progress``, ``remember_moved``) work the same way. Lambda retries an asynchronous
    invocation that fails again by itself; it comes back to the queue if it fails for good.
    """
    check_lambda_target(function_name, target_queue_url)
    policy = policy or DEFAULT_POLICY
    sqs = sqs_client(client, session)
    clients = Clients(session, sqs=sqs, **{"lambda": lambda_client})
    source = describe_queue(sqs, source_queue_url, policy, "source queue")
    target = None
    if target_queue_url is not None:
        target = resolve_target(sqs, source, target_queue_url, policy)
    elif function_name is not None:
        lam = clients.get("lambda", region_of(function_name))
        check_function(lam, function_name, policy, "target function")
    delivery, report, options = lambda_run(clients, source, target, LambdaDelivery, locals())
    return drain(sqs, source.url, delivery, report, options, policy)
