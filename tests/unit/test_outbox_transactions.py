"""TransactWriteItems retries: contention is retried with the same token, conditions are not."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from resilient_aws.errors import (
    AttemptsExhaustedError,
    TransactionCanceledError,
    TransactionConditionFailedError,
)
from resilient_aws.outbox import Outbox, OutboxEvent
from resilient_aws.outbox._outbox import classify_transaction
from resilient_aws.testing import FakeClock


def canceled(stubber: Stubber, *codes: str) -> None:
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled",
        http_status_code=400,
        response_meta={},
        modeled_fields={"CancellationReasons": [{"Code": code} for code in codes]},
    )


@pytest.fixture
def client() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


def outbox_on(client: Any, clock: FakeClock) -> Outbox:
    return Outbox("orders", client=client, policy=clock.policy(max_attempts=4))


def events() -> list[OutboxEvent]:
    return [OutboxEvent("Placed", "order-1", {"n": 1}, sequence=1)]


def test_contention_is_retried(client: Any, fake_clock: FakeClock) -> None:
    with Stubber(client) as stubber:
        canceled(stubber, "None", "TransactionConflict")
        canceled(stubber, "ThrottlingError")
        stubber.add_response(
            "transact_write_items", {}, {"TransactItems": ANY, "ClientRequestToken": ANY}
        )
        outbox_on(client, fake_clock).write(events=events())
        stubber.assert_no_pending_responses()
    assert len(fake_clock.slept) == 2


def test_the_token_is_the_same_on_every_attempt(client: Any, fake_clock: FakeClock) -> None:
    seen: list[str] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        seen.append(params["ClientRequestToken"])

    client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", capture)
    with Stubber(client) as stubber:
        canceled(stubber, "TransactionConflict")
        stubber.add_response("transact_write_items", {})
        outbox_on(client, fake_clock).write(events=events())
    assert len(seen) == 2 and seen[0] == seen[1]


def test_a_failed_condition_is_not_retried(client: Any, fake_clock: FakeClock) -> None:
    with Stubber(client) as stubber:
        canceled(stubber, "ConditionalCheckFailed")
        with pytest.raises(TransactionConditionFailedError) as info:
            outbox_on(client, fake_clock).write(events=events())
    ((action, code, _),) = info.value.reasons
    assert action.startswith("event ") and action.endswith("(order-1 #1)")
    assert code == "ConditionalCheckFailed"
    assert fake_clock.slept == []


def test_other_cancellations_are_typed(client: Any, fake_clock: FakeClock) -> None:
    with Stubber(client) as stubber:
        canceled(stubber, "ValidationError")
        with pytest.raises(TransactionCanceledError) as info:
            outbox_on(client, fake_clock).write(events=events())
    assert not isinstance(info.value, TransactionConditionFailedError)


def test_contention_that_never_ends_gives_up(client: Any, fake_clock: FakeClock) -> None:
    with Stubber(client) as stubber:
        for _ in range(4):
            canceled(stubber, "TransactionConflict")
        with pytest.raises(AttemptsExhaustedError):
            outbox_on(client, fake_clock).write(events=events())


def test_classifier() -> None:
    from botocore.exceptions import ClientError

    def error(*codes: str) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "x"},
                "CancellationReasons": [{"Code": c} for c in codes],
            },  # type: ignore[typeddict-unknown-key]
            "TransactWriteItems",
        )

    assert classify_transaction(error("None", "TransactionConflict")).retryable
    assert classify_transaction(error("ProvisionedThroughputExceeded")).is_throttle
    assert not classify_transaction(
        error("ConditionalCheckFailed", "TransactionConflict")
    ).retryable
    assert not classify_transaction(error()).retryable
