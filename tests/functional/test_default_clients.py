"""A new user's first test reaches the library's default clients (issue 16, item 1).

``IdempotencyStore("table")``, ``Outbox("table")`` and the redrive functions, written without
``client=`` as the docs show them, run on the library's shared default clients: the
``chaos_defaults`` fixture (resilient_aws's pytest plugin) injects faults on them, the retry
core absorbs the faults, and the outcome is still right.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws._clients import default_client, default_clients
from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.outbox import Outbox, OutboxEvent, OutboxSweeper, SqsTarget
from resilient_aws.redrive import redrive_sqs
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import ChaosStats, FakeClock, clear_default_clients
from resilient_aws.testing._defaults import ChaosDefaults
from tests.batch_targets import depth, dlq_with_source, make_queue, take_all
from tests.outbox_support import create_outbox_table, make_moto_dynamodb_atomic
from tests.redrive_support import make_moto_sqs_atomic

pytest_plugins = ["pytester"]

ChaosDefaultsFixture = Callable[..., ChaosDefaults]


@pytest.fixture(autouse=True)
def fresh_default_clients() -> Iterator[None]:
    clear_default_clients()
    yield
    clear_default_clients()


# The store's records hold a random owner token, so the seed does not fix which calls are
# throttled: 65 calls at 0.2 make a run with no throttle one in ~2e6, and a call throttled
# through all ten attempts one in ~1e5 (20 orders at 0.3 were one in ~7,000 for each).
# --8<-- [start:first-test]
# app.py: written from the docs, no client= anywhere
store = IdempotencyStore("idempotency", policy=RetryPolicy(max_attempts=10))  # a Lambda global
charged: list[str] = []


@idempotent(store, key="order_id", key_prefix="orders")
def charge(order: dict[str, Any]) -> dict[str, Any]:
    charged.append(order["order_id"])
    return {"charged": order["total"]}


# test_app.py: the first test (chaos_defaults and fake_clock are resilient_aws's fixtures)
def test_a_throttled_idempotency_table_charges_each_order_once(
    chaos_defaults: Any, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "policy", fake_clock.policy(store.policy))  # instant backoff
    charged.clear()
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        faults = chaos_defaults(throttle=0.2, seed=1)  # every client the library makes itself
        answers = [charge({"order_id": f"o-{i % 5}", "total": i % 5}) for i in range(60)]

    assert faults.stats.throttled > 0  # the store's calls really were throttled...
    assert sorted(charged) == [f"o-{i}" for i in range(5)]  # ...and each order charged once
    assert answers == [{"charged": i % 5} for i in range(60)]


# --8<-- [end:first-test]


def test_a_store_made_before_the_test_follows_the_default_clients_it_is_given() -> None:
    # The Lambda global above was made at import, before any default client: it holds none.
    assert store._client is None
    with mock_aws():
        first = store.client
        assert first is default_client("dynamodb")
        clear_default_clients()
        assert store.client is not first  # a cleared default is not kept alive by the store
        assert store.client is default_client("dynamodb")


def test_outbox_write_without_client_is_faulted_and_applied_once(
    chaos_defaults: ChaosDefaultsFixture, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_moto_dynamodb_atomic(monkeypatch)
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_outbox_table(dynamodb, "orders")
        outbox = Outbox("orders", policy=fake_clock.policy(max_attempts=20))
        # A transaction holds random event ids, so the seed does not fix the draw: 40 writes
        # make a run with no throttle one in ~1e9 (20 were one in ~45,000).
        faults = chaos_defaults(throttle=0.4, seed=2, services={"dynamodb"})
        for i in range(40):
            outbox.write(
                puts=[{"pk": f"order#{i}", "sk": "order", "total": i}],
                events=[OutboxEvent("OrderPlaced", f"order#{i}", {"n": i})],
            )
        items = dynamodb.scan(TableName="orders", ConsistentRead=True)["Items"]

    assert faults.stats.throttled > 0
    assert faults.stats.by_operation["TransactWriteItems"] >= 40  # calls seen on the client
    assert len(faults.injectors) == 1  # one shared DynamoDB client
    orders = sorted(i["pk"]["S"] for i in items if i["sk"]["S"] == "order")
    assert orders == sorted(f"order#{i}" for i in range(40))
    events = [i for i in items if i["sk"]["S"] != "order"]
    assert len(events) == 40  # one outbox record per event: none lost, none doubled


def test_the_sweeper_and_its_target_without_clients_deliver_every_event_under_faults(
    chaos_defaults: ChaosDefaultsFixture, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_moto_dynamodb_atomic(monkeypatch)
    make_moto_sqs_atomic(monkeypatch)
    with mock_aws():
        create_outbox_table(boto3.client("dynamodb"), "orders")
        sqs = boto3.client("sqs")
        queue, _ = make_queue(sqs, "order-events")
        fake_clock.now = 2_000_000_000.0
        policy = fake_clock.policy(max_attempts=20)
        outbox = Outbox("orders", policy=policy, clock=fake_clock.monotonic)
        for i in range(6):
            outbox.write(events=[OutboxEvent("OrderPlaced", f"order#{i}", {"n": i})])
        faults = chaos_defaults(throttle=0.3, partial=0.3, seed=3)
        fake_clock.advance(61)  # past the sweeper's grace: the stream relay missed them
        report = OutboxSweeper(outbox, SqsTarget(queue, policy=policy), grace_s=60).run()
        pending = outbox.pending()
        bodies = [json.loads(m["Body"]) for m in take_all(sqs, queue)]

    assert faults.stats.faults > 0
    services = {client.meta.service_model.service_name for client in _reached(faults)}
    assert services == {"dynamodb", "sqs"}  # the outbox's table and the target's queue
    assert len(report.delivered) == 6 and pending == []
    ids = Counter(body["payload"]["n"] for body in bodies)
    assert sorted(ids) == list(range(6))


def test_redrive_sqs_without_client_is_faulted_and_moves_every_message_once(
    chaos_defaults: ChaosDefaultsFixture, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_moto_sqs_atomic(monkeypatch)
    with mock_aws():
        sqs = boto3.client("sqs")
        dlq, source = dlq_with_source(sqs, "orders")
        for i in range(30):
            sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"n": i}))
        faults = chaos_defaults(throttle=0.4, partial=0.2, seed=4)
        report = redrive_sqs(
            dlq, target_queue_url=source, policy=fake_clock.policy(max_attempts=30), wait_time_s=0
        )
        moved = Counter(json.loads(m["Body"])["n"] for m in take_all(sqs, source))
        left = depth(sqs, dlq)

    assert report.ok, report
    assert report.moved == 30
    assert faults.stats.throttled > 0 and faults.stats.withheld_entries > 0
    assert [service for service, _ in default_clients()] == ["sqs"]
    assert sorted(moved) == list(range(30)) and set(moved.values()) == {1}
    assert left == 0


def test_the_fixture_clears_the_default_clients_and_removes_its_faults(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        from moto import mock_aws

        from resilient_aws._clients import default_client, default_clients

        made = []

        def test_faulted(chaos_defaults):
            with mock_aws():
                faults = chaos_defaults(throttle=1.0, services={"sqs"})
                made.append(default_client("sqs"))
                try:
                    made[0].list_queues()
                except Exception as error:
                    assert "Throttl" in type(error).__name__ + str(error)
                else:
                    raise AssertionError("not throttled")
                assert faults.stats.throttled == 1

        def test_after():
            assert default_clients() == []
            with mock_aws():
                made[0].list_queues()  # no fault left on it
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def _reached(faults: ChaosDefaults) -> list[Any]:
    return [injector.client for injector in faults.injectors]


def test_chaos_stats_add_up_over_clients_reached(chaos_defaults: ChaosDefaultsFixture) -> None:
    with mock_aws():
        faults = chaos_defaults(throttle=1.0, services={"sqs", "sns"})
        for service in ("sqs", "sns"):
            with pytest.raises(Exception, match="Throttl"):
                (
                    default_client(service).list_queues()
                    if service == "sqs"
                    else default_client(service).list_topics()
                )
    assert isinstance(faults.stats, ChaosStats)
    assert faults.stats.throttled == 2 and len(faults.injectors) == 2
