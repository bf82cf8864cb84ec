"""The pytest plugin's fixtures against a real moto server over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from resilient_aws.retry import FailedEntry, classify_entry
from resilient_aws.testing import Chaos, FakeClock, MotoServer


def test_moto_server_fixture_serves_real_http(moto_server: MotoServer) -> None:
    sqs = moto_server.client("sqs")
    assert sqs.meta.endpoint_url == moto_server.endpoint_url
    url = sqs.create_queue(QueueName="plugin-q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hi")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hi"


def test_chaos_fixture_over_http_loses_nothing(
    moto_server: MotoServer, chaos: Callable[..., Chaos], fake_clock: FakeClock
) -> None:
    dynamodb = moto_server.client("dynamodb")
    dynamodb.create_table(
        TableName="plugin-t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    injected = chaos(dynamodb, partial=0.4, throttle=0.1, reset=0.05, seed=3)

    def send(batch: list[str]) -> list[FailedEntry[str]]:
        response = dynamodb.batch_write_item(
            RequestItems={"plugin-t": [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in batch]}
        )
        verdict = classify_entry("dynamodb", "Unprocessed")
        return [
            FailedEntry(
                r["PutRequest"]["Item"]["pk"]["S"],
                r["PutRequest"]["Item"]["pk"]["S"],
                verdict.code,
                retryable=True,
            )
            for r in response.get("UnprocessedItems", {}).get("plugin-t", [])
        ]

    keys = [f"k{i}" for i in range(200)]
    policy = fake_clock.policy(max_attempts=30)
    outcomes = [
        policy.run_partial(send, keys[i : i + 25], entry_id=str, operation="BatchWriteItem")
        for i in range(0, 200, 25)
    ]
    assert all(o.ok for o in outcomes)
    assert injected.stats.withheld_entries > 0
    injected.uninstall()
    stored: set[str] = set()
    kwargs: dict[str, Any] = {"TableName": "plugin-t"}
    while True:
        page = dynamodb.scan(**kwargs)
        stored |= {item["pk"]["S"] for item in page["Items"]}
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert stored == set(keys)


def test_reset_empties_the_server(moto_server: MotoServer) -> None:
    sqs = moto_server.client("sqs")
    sqs.create_queue(QueueName="to-forget")
    moto_server.reset()
    assert "QueueUrls" not in sqs.list_queues()


def test_each_server_binds_its_own_port_when_it_starts() -> None:
    first, second = MotoServer(), MotoServer()
    with pytest.raises(RuntimeError, match="start"):
        _ = first.endpoint_url  # no port is reserved early, so none can be taken in between
    with first, second:
        assert first.port and second.port and first.port != second.port
        for server in (first, second):
            sts = server.client("sts")
            assert sts.meta.endpoint_url == f"http://127.0.0.1:{server.port}"
            assert sts.get_caller_identity()["Account"].isdigit()  # a real answer over HTTP
