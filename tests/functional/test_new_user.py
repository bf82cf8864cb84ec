"""A new user's first handler and first test, written from README + docs (issue 16, items 1, 3,
8): the library's default clients are shared and reached by ``chaos_defaults``, a handler's
answer with DynamoDB numbers is JSON, and ``@idempotent`` works inside Powertools'
``BatchProcessor``."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr
from moto import mock_aws

from resilient_aws import json as rjson
from resilient_aws._clients import default_client
from resilient_aws.batch import SqsSender
from resilient_aws.dynamodb import BatchWriter, scan
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos, chaos_defaults
from resilient_aws.testing import clear_default_clients as clear
from tests.dynamo_tables import create_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_default_clients() -> Iterator[None]:
    # what docs/testing.md tells a user to put in conftest.py
    clear()
    yield
    clear()


# -- the handler, as the README's "Use" section writes it (default clients: no client=) ---------

policy = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=5.0)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    p = policy.for_lambda(context, margin_s=1.0)
    with BatchWriter("orders", policy=p, concurrency=4) as writer:
        writer.put_many(event["orders"])
    milan = scan("orders", policy=p, FilterExpression=Attr("city").eq("Milan"))
    return {"statusCode": 200, "body": rjson.dumps({"orders": list(milan)})}


def test_the_first_test_of_a_readme_handler_gets_faults_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setitem(globals(), "policy", clock.policy(policy))
    orders = [
        {"pk": f"o-{i}", "city": "Milan" if i % 2 else "Rome", "total": 9.99 + i}
        for i in range(300)
    ]
    with mock_aws():
        create_table(boto3.client("dynamodb"), "orders")
        with chaos_defaults(partial=0.3, throttle=0.05, error5xx=0.02, seed=1) as faults:
            answer = handler(
                {"orders": orders}, FakeLambdaContext(timeout_s=30, clock=clock.monotonic)
            )
        stored = list(scan("orders", client=boto3.client("dynamodb"), numbers="native"))

    assert faults.stats.faults > 0
    assert faults.stats.withheld_entries > 0
    assert faults.stats.by_operation["BatchWriteItem"] > 0
    assert faults.stats.by_operation["Scan"] > 0
    assert len(faults.injectors) == 1  # one shared DynamoDB client for writer and scan
    assert sorted(item["pk"] for item in stored) == sorted(o["pk"] for o in orders)
    body = json.loads(answer["body"])
    assert sorted(o["pk"] for o in body["orders"]) == [
        o["pk"] for o in sorted(orders, key=lambda o: o["pk"]) if o["city"] == "Milan"
    ]
    assert {round(o["total"] - 9.99, 6) for o in body["orders"]} == {
        float(i) for i in range(1, 300, 2)
    }


def test_default_clients_are_shared_and_retry_nothing_themselves() -> None:
    with mock_aws():
        create_table(boto3.client("dynamodb"), "orders")
        first = BatchWriter("orders")
        second = BatchWriter("orders")
        read = scan("orders")
        assert first.client is second.client is read.client
        retries = first.client.meta.config.retries
        assert retries["total_max_attempts"] == 1  # policy.botocore_config(): the core retries
        sender = SqsSender("https://sqs.us-east-1.amazonaws.com/123456789012/q")
        assert sender.client is default_client("sqs")
        assert sender.client is not first.client


def test_one_client_per_region_credentials_and_session(monkeypatch: pytest.MonkeyPatch) -> None:
    here = default_client("dynamodb")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    there = default_client("dynamodb")
    assert there is not here
    assert there.meta.region_name == "eu-west-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another")
    assert default_client("dynamodb") is not there
    monkeypatch.undo()
    assert default_client("dynamodb") is here

    session = boto3.session.Session(region_name="ap-south-1")
    mine = default_client("dynamodb", session)
    assert mine is default_client("dynamodb", session) is BatchWriter("t", session=session).client
    assert mine.meta.region_name == "ap-south-1"

    clear()
    assert default_client("dynamodb") is not here


def test_default_clients_are_made_once_across_threads() -> None:
    made: list[Any] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        made.append(default_client("dynamodb"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in made}) == 1


def test_a_default_client_made_before_mock_aws_still_reaches_moto() -> None:
    early = default_client("dynamodb")
    with mock_aws():
        create_table(boto3.client("dynamodb"), "orders")
        with BatchWriter("orders") as writer:
            writer.put({"pk": "a"})
        assert [item["pk"] for item in scan("orders", client=early)] == ["a"]
        # moto sets its own credentials in the environment: a client of its own, fresh cache
        assert default_client("dynamodb") is not early


def test_chaos_defaults_reaches_clients_made_before_and_stops_at_the_end() -> None:
    with mock_aws():
        create_table(boto3.client("dynamodb"), "orders")
        before = default_client("dynamodb")
        with chaos_defaults(throttle=1.0, services={"dynamodb"}) as faults:
            with pytest.raises(Exception, match="ProvisionedThroughputExceeded"):
                before.describe_table(TableName="orders")
            sqs = default_client("sqs")  # not a service asked for
            sqs.list_queues()
        assert faults.stats.throttled == 1
        assert [i.client for i in faults.injectors] == [before]
        before.describe_table(TableName="orders")  # uninstalled
    with pytest.raises(ValueError, match="probability"):
        chaos_defaults(partial=2.0)


# -- handler responses: Decimal (item 3) --------------------------------------------------------


def test_items_read_with_decimals_are_json_for_a_handler() -> None:
    item = {
        "n": Decimal("3"),
        "price": Decimal("9.99"),
        "big": Decimal("123456789012345678901234567890"),
        "precise": Decimal("0.12345678901234567890123"),
        "tags": {"b", "a"},
        "scores": {Decimal("2"), Decimal("1.5")},
        "raw": b"\x00\x01",
    }
    with pytest.raises(TypeError):
        json.dumps(item)
    decoded = json.loads(rjson.dumps(item))
    assert decoded == {
        "n": 3,
        "price": 9.99,
        "big": 123456789012345678901234567890,
        "precise": "0.12345678901234567890123",  # a float would round it: exact text
        "tags": ["a", "b"],
        "scores": [1.5, 2],
        "raw": "AAE=",
    }
    assert json.dumps({"x": Decimal("1.5")}, default=rjson.default) == '{"x": 1.5}'
    with pytest.raises(TypeError):
        rjson.dumps({"when": object()})


# -- docs/powertools.md: @idempotent inside BatchProcessor (item 8) ----------------------------


def _doc_block(page: str, marker: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    matching = [block for block in blocks if marker in block]
    assert len(matching) == 1, f"{page}: one python block with {marker!r}"
    return matching[0]


def test_the_powertools_batch_processor_example_charges_each_order_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("aws_lambda_powertools")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders")
    code = _doc_block("powertools.md", "process_partial_response")
    records = [
        {
            "messageId": f"m-{i}",
            "receiptHandle": "r",
            "body": json.dumps({"order_id": f"o-{i % 3}", "total": 10}),
            "attributes": {},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
            "awsRegion": "us-east-1",
        }
        for i in range(6)
    ]
    # About nine calls whose content holds timestamps, so a seed does not fix the faults: each
    # run is checked, and one in ~200 would see no throttle at all; a second run makes that one
    # in ~40,000, a third one in ~8 million.
    for seed in (4, 5, 6):
        with mock_aws():
            create_table(boto3.client("dynamodb"), "idempotency", hash_key=("id", "S"))
            namespace: dict[str, Any] = {"__name__": "powertools_batch_example"}
            exec(compile(code, "docs/powertools.md", "exec"), namespace)
            charged: list[str] = namespace["charged"]
            with chaos(namespace["dynamodb"], throttle=0.45, seed=seed) as faults:
                answer = namespace["handler"]({"Records": records}, FakeLambdaContext())
        failed = {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}
        assert sorted(charged) == sorted({f"o-{i % 3}" for i in range(6) if f"m-{i}" not in failed})
        if faults.stats.throttled > 0:
            break
    assert faults.stats.throttled > 0
