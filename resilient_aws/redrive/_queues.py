"""What the redrive needs to know about a queue before anything moves."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import QueueNotFoundError
from resilient_aws.redrive._steps import Call, Steps, run_steps
from resilient_aws.retry import RetryPolicy

__all__ = [
    "QueueInfo",
    "describe_queue",
    "describe_queue_steps",
    "is_missing_queue",
    "source_queues",
    "source_queues_steps",
    "sqs_client",
]

_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


@lean_dataclass(frozen=True)
class QueueInfo:
    url: str
    arn: str
    fifo: bool
    depth: int


def is_missing_queue(error: BaseException) -> bool:
    return (
        isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in _MISSING
    )


def describe_queue(client: Any, url: str, policy: RetryPolicy, role: str) -> QueueInfo:
    """ARN, type and approximate depth; :class:`QueueNotFoundError` if there is no such queue."""
    return run_steps(client, policy, describe_queue_steps(url, role))


def describe_queue_steps(url: str, role: str) -> Steps[QueueInfo]:
    """:func:`describe_queue` for either kind of client (:mod:`._steps`)."""
    try:
        answer = yield Call(
            "get_queue_attributes",
            {
                "QueueUrl": url,
                "AttributeNames": ["QueueArn", "FifoQueue", "ApproximateNumberOfMessages"],
            },
        )
    except ClientError as error:
        if is_missing_queue(error):
            raise QueueNotFoundError(url, role) from None
        raise
    attributes = answer.get("Attributes", {})
    return QueueInfo(
        url=url,
        arn=str(attributes.get("QueueArn", "")),
        fifo=str(attributes.get("FifoQueue", "false")).lower() == "true",
        depth=int(attributes.get("ApproximateNumberOfMessages", 0) or 0),
    )


def source_queues(client: Any, dlq_url: str, policy: RetryPolicy) -> list[str]:
    """The queues whose ``RedrivePolicy`` names ``dlq_url`` as their dead-letter queue."""
    return run_steps(client, policy, source_queues_steps(dlq_url))


def source_queues_steps(dlq_url: str) -> Steps[list[str]]:
    """:func:`source_queues` for either kind of client (:mod:`._steps`)."""
    urls: list[str] = []
    token: str | None = None
    while True:
        options: dict[str, Any] = {"QueueUrl": dlq_url, "MaxResults": 1000}
        if token:
            options["NextToken"] = token
        page = yield Call("list_dead_letter_source_queues", options)
        urls += page.get("queueUrls", [])
        token = page.get("NextToken")
        if not token:
            return urls


def sqs_client(client: Any, session: Any) -> Any:
    """``client``, else the library's shared default SQS client (of ``session`` if given)."""
    if client is not None:
        return client
    from resilient_aws._clients import default_client

    return default_client("sqs", session)
