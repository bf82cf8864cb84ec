"""Where redriven payloads go besides an SQS redrive: a Lambda function or a queue."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws._batching import _error_message as error_message
from resilient_aws._dataclass import lean_dataclass
from resilient_aws._json import loads_verbatim
from resilient_aws.batch import SqsSender
from resilient_aws.errors import RedriveNotFoundError, RetryError
from resilient_aws.redrive._drain import SETTLER_OPTIONS, DrainOptions, failures
from resilient_aws.redrive._message import DlqMessage, compile_filter
from resilient_aws.redrive._steps import Call, Steps, run_steps
from resilient_aws.retry import RetryPolicy

if TYPE_CHECKING:
    from resilient_aws.redrive._queues import QueueInfo

__all__ = [
    "CLIENT_ERRORS",
    "AsyncClients",
    "Clients",
    "QueueItem",
    "check_function",
    "drain_options",
    "error_text",
    "exists_steps",
    "invoke",
    "invoke_steps",
    "queue_entries",
    "send_items",
    "unreachable",
    "unwrap_sns",
]

logger = logging.getLogger("resilient_aws.redrive")

CLIENT_ERRORS = (BotoCoreError, ValueError)
"""What making a client for a region raises when the region is not one (``InvalidRegionError``)."""


class Clients:
    """The clients given, else the library's shared default clients (of ``session`` if given):
    one per service and region, botocore's own retries off, reached by ``chaos_defaults``."""

    def __init__(self, session: Any = None, **given: Any) -> None:
        self.session = session
        self.given = {name: client for name, client in given.items() if client is not None}

    def get(self, service: str, region: str | None = None) -> Any:
        if service in self.given:
            return self.given[service]
        from resilient_aws._clients import default_client

        return default_client(service, self.session, region=region)


class AsyncClients:
    """:class:`Clients` on asyncio: the aiobotocore clients given, else clients opened for the
    run from ``session`` (an aiobotocore session; default a new one), one per service and
    region, configured by ``policy`` as the sync default clients are (botocore's own retries
    off). :meth:`aclose` closes every client opened, never one given."""

    def __init__(self, session: Any, policy: RetryPolicy, **given: Any) -> None:
        self.session = session
        self.policy = policy
        self.given = {name: client for name, client in given.items() if client is not None}
        self.opened: dict[tuple[str, str | None], Any] = {}
        self._stack = contextlib.AsyncExitStack()
        self._opening: Any = None  # an asyncio.Lock, made in the loop (no asyncio at import)

    async def get(self, service: str, region: str | None = None) -> Any:
        if service in self.given:
            return self.given[service]
        key = (service, region)
        if key in self.opened:
            return self.opened[key]
        if self._opening is None:
            import asyncio

            self._opening = asyncio.Lock()
        async with self._opening:  # two tasks asking at once get one client, not two
            if key not in self.opened:
                if self.session is None:
                    from aiobotocore.session import get_session

                    self.session = get_session()
                context = self.session.create_client(
                    service, region_name=region, config=self.policy.botocore_config()
                )
                self.opened[key] = await self._stack.enter_async_context(context)
        return self.opened[key]

    async def aclose(self) -> None:
        """Close every client opened (each one, even if closing another fails or is
        cancelled). A client that fails to close is logged, not raised: the run ends with its
        report, or with the error (a cancellation) that ended it, either of which it would
        replace."""
        self.opened.clear()
        try:
            await self._stack.aclose()
        except Exception:
            logger.exception("closing a client the redrive opened failed")


def unreachable(service: str, region: str, error: BaseException) -> str:
    """Why a message fails whose own region (from its rule's or function's ARN) no ``service``
    client can be made for: it stays, as a malformed message does, and the run goes on."""
    return f"NoClient: no {service} client for region {region!r} ({error_text(error)})"


# Codes whose message quotes the request's payload (Lambda: "Could not parse payload into json:
# Unrecognized token '<payload>' ... [Source: (byte[])"<payload>" ...]").
_QUOTING_PAYLOAD = {
    "InvalidRequestContentException": "the payload is not valid JSON (message not shown: it "
    "quotes the payload)",
}


def error_text(error: BaseException) -> str:
    """``"Code: message"`` of a botocore or retry error, never the request's payload."""
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        code = detail.get("Code", "ClientError")
        return f"{code}: {_QUOTING_PAYLOAD.get(code) or detail.get('Message', '')}"
    return f"{type(error).__name__}: {error_message(error)}"


def check_function(client: Any, function: str, policy: RetryPolicy, role: str) -> None:
    """:class:`RedriveNotFoundError` if ``function`` does not exist."""
    run_steps(client, policy, function_steps(function, role))


def function_steps(function: str, role: str) -> Steps[None]:
    """:func:`check_function` for either kind of client (:mod:`._steps`)."""
    return exists_steps("get_function_configuration", {"FunctionName": function}, function, role)


def exists_steps(method: str, params: dict[str, Any], name: str, role: str) -> Steps[None]:
    """Ask ``method`` about a resource: :class:`RedriveNotFoundError` naming ``name`` (the
    ``role`` it plays in the run) if there is no such resource."""
    try:
        yield Call(method, params)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise RedriveNotFoundError(name, role) from None
        raise


def invoke(
    client: Any, function: str, payload: bytes, invocation_type: str, policy: RetryPolicy
) -> str | None:
    """Invoke ``function``; ``None`` on success, else why it failed.

    A synchronous invocation fails if the function raised (``FunctionError``) or reported
    failed records (``batchItemFailures``); an asynchronous one once Lambda has queued it.
    """
    return run_steps(client, policy, invoke_steps(function, payload, invocation_type))


def invoke_steps(function: str, payload: bytes, invocation_type: str) -> Steps[str | None]:
    """:func:`invoke` for either kind of client (:mod:`._steps`); the answer of a synchronous
    (``RequestResponse``) invocation is read as a boto3 body, so on aiobotocore only
    ``Event``."""
    try:
        response = yield Call(
            "invoke",
            {"FunctionName": function, "InvocationType": invocation_type, "Payload": payload},
        )
    except (ClientError, BotoCoreError, RetryError) as error:
        return error_text(error)
    if invocation_type == "Event":
        status = response.get("StatusCode")
        return None if status in (202, None) else f"Unexpected status {status}"
    body = response.get("Payload")
    text = body.read() if hasattr(body, "read") else body or b""
    if response.get("FunctionError"):
        return f"FunctionError: {response['FunctionError']} ({_error_type(text)})"
    failures = _batch_item_failures(text)
    if failures:
        return f"BatchItemFailures: the function reported {failures} failed record(s)"
    return None


def _error_type(text: bytes) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return "no error type"
    if isinstance(answer, dict) and answer.get("errorType"):
        return str(answer["errorType"])  # the type only: messages may quote the payload
    return "no error type"


def _batch_item_failures(text: bytes) -> int:
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        return 0
    if isinstance(answer, dict) and isinstance(answer.get("batchItemFailures"), list):
        return len(answer["batchItemFailures"])
    return 0


@lean_dataclass(frozen=True)
class QueueItem:
    """One message to send: ``entry_id`` names it in the result."""

    entry_id: str
    body: str
    group_id: str | None = None
    deduplication_id: str | None = None
    attributes: Mapping[str, Any] | None = None


def send_items(
    queue_url: str, items: Sequence[QueueItem], *, client: Any, policy: RetryPolicy, fifo: bool
) -> tuple[dict[str, str], int]:
    """Send ``items`` with :class:`SqsSender`: (entry id -> failure, entries re-sent)."""
    sender = SqsSender(queue_url, client=client, policy=policy, ordered=fifo, **SETTLER_OPTIONS)
    for entry in queue_entries(items, fifo):
        sender.send_message(**entry)
    result = sender.close()
    return failures(result), result.resent


def queue_entries(items: Iterable[QueueItem], fifo: bool) -> Iterator[dict[str, Any]]:
    """The ``send_message`` options of each item, for a sync or an async sender made with
    ``ordered=fifo`` and :data:`SETTLER_OPTIONS` (failures read from its result)."""
    for item in items:
        yield dict(
            body=item.body,
            id=item.entry_id,
            attributes=item.attributes,
            group_id=item.group_id if fifo else None,
            deduplication_id=item.deduplication_id if fifo else None,
        )


def drain_options(source: QueueInfo, arguments: dict[str, Any]) -> DrainOptions:
    """The drain options of a run of ``source``; ``arguments`` are those the redrive was
    called with (its ``locals()``: one list of options for the sync and async entry points)."""
    from resilient_aws.redrive._sqs import _DRAIN_KNOBS  # _sqs imports this module

    return DrainOptions(
        filter=compile_filter(arguments["filter"]),
        fifo=source.fifo,
        **{name: arguments[name] for name in _DRAIN_KNOBS},
    )


def unwrap_sns(message: DlqMessage) -> tuple[Any, dict[str, str]]:
    """The message's body as JSON and its attributes (name -> text), looking through an SNS
    envelope when a topic delivered it to the queue without raw message delivery.

    ``ValueError`` if the body is not JSON. Fractional numbers are ``Decimal``s spelled as in
    the body, so a payload sent on with ``dumps_verbatim`` keeps every digit.
    """
    body = loads_verbatim(message.body)
    attributes = {
        name: str(value.get("StringValue", ""))
        for name, value in message.message_attributes.items()
    }
    if (
        isinstance(body, dict)
        and body.get("Type") == "Notification"
        and isinstance(body.get("Message"), str)
        and "TopicArn" in body
    ):
        for name, value in (body.get("MessageAttributes") or {}).items():
            if isinstance(value, dict) and "Value" in value:
                attributes[name] = str(value["Value"])
        try:
            return loads_verbatim(body["Message"]), attributes
        except ValueError:
            return body["Message"], attributes
    return body, attributes
