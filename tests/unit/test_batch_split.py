"""A batch the service refuses whole for one entry's sake: halved until that entry stands
alone, every other entry sent, the culprit reported by name (botocore's Stubber)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from resilient_aws.batch import SnsPublisher, SqsSender
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
TOPIC = "arn:aws:sns:us-east-1:123456789012:t"

SENDERS = [
    pytest.param(
        "sqs", "send_message_batch", "AWS.SimpleQueueService.BatchRequestTooLong", id="sqs"
    ),
    pytest.param("sqs", "send_message_batch", "InvalidMessageContents", id="sqs-invalid-contents"),
    pytest.param("sns", "publish_batch", "BatchRequestTooLong", id="sns"),
]


OPTIONS: dict[str, Any] = {"raise_on_failure": False, "keep_answers": True}


def make_sender(service: str, client: Any) -> Any:
    policy = FakeClock().policy(max_attempts=3)
    if service == "sqs":
        return SqsSender(QUEUE, client=client, policy=policy, concurrency=1, **OPTIONS)
    return SnsPublisher(TOPIC, client=client, policy=policy, concurrency=1, **OPTIONS)


def add(sender: Any, body: str) -> None:
    if isinstance(sender, SqsSender):
        sender.send_message(body, id=body)
    else:
        sender.publish(body, id=body)


@pytest.mark.parametrize(("service", "operation", "code"), SENDERS)
def test_a_request_refused_whole_is_halved_until_the_culprit_stands_alone(
    service: str, operation: str, code: str
) -> None:
    client = boto3.client(service, region_name="us-east-1")
    extra = {"MD5OfMessageBody": "0"} if service == "sqs" else {}

    def refused() -> None:
        stub.add_client_error(operation, service_error_code=code, http_status_code=400)

    def accepted(count: int) -> None:
        ok = [{"Id": str(i), "MessageId": f"m{i}", **extra} for i in range(count)]
        stub.add_response(operation, {"Successful": ok, "Failed": []})

    with Stubber(client) as stub:
        refused()  # a, b, c, d
        refused()  # a, b
        accepted(1)  # a
        refused()  # b: alone, so it is the culprit
        accepted(2)  # c, d
        sender = make_sender(service, client)
        for body in "abcd":
            add(sender, body)
        result = sender.close()
        stub.assert_no_pending_responses()

    assert result.succeeded == 3 and result.requests == 5
    assert [(f.entry_id, f.code) for f in result.failed] == [("b", code)]
    assert sorted(a.entry_id for a in result.answers) == ["a", "c", "d"]
