"""Records written by Powertools for AWS Lambda are ours, and ours are theirs: no double runs.

Each test wraps the *same* function with both decorators (so both derive the same
``{function}.{module}.{qualname}`` prefix) and calls them against one moto table.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency import (
    idempotent as powertools_idempotent,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyValidationError as PowertoolsValidationError,
)

from resilient_aws.idempotency import (
    IdempotencyInProgressError,
    IdempotencyValidationError,
    idempotent,
)
from resilient_aws.idempotency.powertools import ResilientDynamoDBPersistenceLayer
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeLambdaContext, chaos
from tests.idempotency_support import create_idempotency_table, real_store

EVENT = {"body": {"order_id": "o-1", "amount": 25}, "headers": {"x": "1"}}


@pytest.fixture(autouse=True)
def function_name(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-fn")
    return "orders-fn"


@pytest.fixture
def table(ddb: Any) -> str:
    return create_idempotency_table(ddb)


class Handler:
    """A Lambda handler with a side effect we can count."""

    def __init__(self) -> None:
        self.runs = 0
        self.during: Any = None

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.runs += 1
        if self.during is not None:
            self.during()
        return {"order_id": event["body"]["order_id"], "run": self.runs}


def both(ddb: Any, table: str, handler: Any, **config: Any) -> tuple[Any, Any]:
    """The same handler under Powertools' decorator and under ours."""

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return handler(event, context)  # type: ignore[no-any-return]

    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=ddb)
    theirs = powertools_idempotent(
        persistence_store=layer,
        config=IdempotencyConfig(
            event_key_jmespath="body.order_id",
            payload_validation_jmespath=config.get("validate", ""),
        ),
    )(lambda_handler)
    ours = idempotent(real_store(ddb, table), key="body.order_id", **config)(lambda_handler)
    return theirs, ours


def test_a_powertools_record_is_replayed_by_us(ddb: Any, table: str) -> None:
    handler = Handler()
    theirs, ours = both(ddb, table, handler)
    first = theirs(EVENT, FakeLambdaContext())
    assert ours(EVENT, FakeLambdaContext()) == first
    assert handler.runs == 1


def test_our_record_is_replayed_by_powertools(ddb: Any, table: str) -> None:
    handler = Handler()
    theirs, ours = both(ddb, table, handler)
    first = ours(EVENT, FakeLambdaContext())
    assert theirs(EVENT, FakeLambdaContext()) == first
    assert handler.runs == 1


def test_same_key_same_record(ddb: Any, table: str) -> None:
    handler = Handler()
    theirs, ours = both(ddb, table, handler)
    theirs(EVENT, FakeLambdaContext())
    (record,) = ddb.scan(TableName=table)["Items"]
    ddb.delete_item(TableName=table, Key={"id": record["id"]})
    ours(EVENT, FakeLambdaContext())
    (again,) = ddb.scan(TableName=table)["Items"]
    assert again["id"] == record["id"]
    assert record["id"]["S"].startswith("orders-fn.")
    assert set(record) <= set(again)


def test_in_progress_under_powertools_blocks_us(ddb: Any, table: str) -> None:
    handler = Handler()
    theirs, ours = both(ddb, table, handler)
    seen: list[BaseException] = []

    def duplicate_arrives() -> None:
        with pytest.raises(IdempotencyInProgressError) as info:
            ours(EVENT, FakeLambdaContext())
        seen.append(info.value)

    handler.during = duplicate_arrives
    theirs(EVENT, FakeLambdaContext())
    handler.during = None
    assert handler.runs == 1 and len(seen) == 1


def test_in_progress_under_us_blocks_powertools(ddb: Any, table: str) -> None:
    handler = Handler()
    theirs, ours = both(ddb, table, handler)
    seen: list[BaseException] = []

    def duplicate_arrives() -> None:
        with pytest.raises(IdempotencyAlreadyInProgressError) as info:
            theirs(EVENT, FakeLambdaContext())
        seen.append(info.value)

    handler.during = duplicate_arrives
    ours(EVENT, FakeLambdaContext())
    handler.during = None
    assert handler.runs == 1 and len(seen) == 1


def test_validation_hashes_agree(ddb: Any, table: str) -> None:
    handler = Handler()
    theirs, ours = both(ddb, table, handler, validate="body.amount")
    theirs(EVENT, FakeLambdaContext())
    assert ours(EVENT, FakeLambdaContext())["run"] == 1
    changed = {"body": {"order_id": "o-1", "amount": 26}}
    with pytest.raises(IdempotencyValidationError):
        ours(changed, FakeLambdaContext())
    with pytest.raises(PowertoolsValidationError):
        theirs(changed, FakeLambdaContext())
    assert handler.runs == 1


@pytest.mark.filterwarnings("ignore:Couldn't determine the remaining time left")
def test_idempotent_function_and_payload_parameter(ddb: Any, table: str) -> None:
    runs: list[str] = []

    def process(order: dict[str, Any]) -> dict[str, Any]:
        runs.append(order["id"])
        return {"processed": order["id"]}

    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=ddb)
    theirs = idempotent_function(
        data_keyword_argument="order",
        persistence_store=layer,
        config=IdempotencyConfig(event_key_jmespath="id"),
    )(process)
    ours = idempotent(real_store(ddb, table), payload="order", key="id")(process)

    assert theirs(order={"id": "a"}) == ours(order={"id": "a"}) == {"processed": "a"}
    assert ours({"id": "b"}) == theirs(order={"id": "b"}) == {"processed": "b"}
    assert runs == ["a", "b"]


def test_the_resilient_layer_survives_throttling_that_fails_powertools(
    ddb: Any, table: str
) -> None:
    def run(layer: Any) -> list[str]:
        outcomes = []

        def handler(event: dict[str, Any], context: Any) -> str:
            return "ok"

        wrapped = powertools_idempotent(
            persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="id")
        )(handler)
        with chaos(ddb, throttle=0.3, seed=11):
            for i in range(30):
                try:
                    outcomes.append(wrapped({"id": i}, FakeLambdaContext()))
                except IdempotencyPersistenceLayerError:
                    outcomes.append("failed")
        return outcomes

    plain = run(DynamoDBPersistenceLayer(table_name=table, boto3_client=ddb))
    assert "failed" in plain
    ddb.delete_table(TableName=table)
    create_idempotency_table(ddb, table)
    policy = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.01)
    resilient = run(ResilientDynamoDBPersistenceLayer(table, boto3_client=ddb, policy=policy))
    assert resilient == ["ok"] * 30
