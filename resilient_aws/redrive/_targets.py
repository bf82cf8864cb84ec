"""Where redriven payloads go besides an SQS redrive: a Lambda function or a queue."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws._json import loads_verbatim
from resilient_aws.batch import SqsSender
from resilient_aws.errors import RedriveNotFoundError, RetryError
from resilient_aws.redrive._message import DlqMessage
from resilient_aws.retry import RetryPolicy

__all__ = [
    "Clients",
    "QueueItem",
    "check_function",
    "error_text",
    "invoke",
    "send_items",
    "unwrap_sns",
]


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


def error_text(error: BaseException) -> str:
    """``"Code: message"`` of a botocore or retry error, never the request's payload."""
    if isinstance(error, ClientError):
        detail = error.response.get("Error", {})
        return f"{detail.get('Code', 'ClientError')}: {detail.get('Message', '')}"
    return f"{type(error).__name__}: {error}"


def check_function(client: Any, function: str, policy: RetryPolicy, role: str) -> None:
    """:class:`RedriveNotFoundError` if ``function`` does not exist."""
    try:
        policy.call(client.get_function_configuration, FunctionName=function)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise RedriveNotFoundError(function, role) from None
        raise


def invoke(
    client: Any, function: str, payload: bytes, invocation_type: str, policy: RetryPolicy
) -> str | None:
    """Invoke ``function``; ``None`` on success, else why it failed.

    A synchronous invocation fails if the function raised (``FunctionError``) or reported
    failed records (``batchItemFailures``); an asynchronous one once Lambda has queued it.
    """
    try:
        response = policy.call(
            client.invoke, FunctionName=function, InvocationType=invocation_type, Payload=payload
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
    sender = SqsSender(
        queue_url,
        client=client,
        policy=policy,
        concurrency=1,
        ordered=fifo,
        raise_on_failure=False,
        on_invalid="report",
        keep_answers=False,
    )
    for item in items:
        sender.send_message(
            item.body,
            id=item.entry_id,
            attributes=item.attributes,
            group_id=item.group_id if fifo else None,
            deduplication_id=item.deduplication_id if fifo else None,
        )
    result = sender.close()
    return {f.entry_id: f"{f.code}: {f.message}" for f in result.failed}, result.resent


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
