"""The policies of examples/template.yaml allow every AWS call the example handlers make.

Each handler runs against moto through the paths that reach AWS differently (success, a failed
condition, a refused queue until an event is blocked, a released idempotency key...), with its
boto3 clients recording every call as IAM authorises it: ``TransactWriteItems`` as one
``PutItem``/``UpdateItem``/``ConditionCheckItem`` per action, a query of an index on the index,
a batch on each of its tables. Every call must be granted by its function's statements or SAM
policy templates, on the resource it touches — so a policy narrowed too far fails here, not in
production.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.testing import Chaos, FakeClock, FakeLambdaContext
from tests.examples_template import EXAMPLES, functions, referenced, template

sys.path.insert(0, str(EXAMPLES))
import first_handler
import idempotent_sqs_handler as consumer
import outbox_api_handler as api
import outbox_relay_handler as relay
import outbox_sweeper_handler as sweeper
import scan_segment_handler as scan_segment
import scheduled_redrive

MODULES = [consumer, api, relay, sweeper, first_handler, scheduled_redrive]

# The actions SAM documents for each policy template (on the table and its indexes, the queue).
SAM_POLICY_TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "DynamoDBCrudPolicy": (
        "TableName",
        [
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        ],
    ),
    "DynamoDBReadPolicy": (
        "TableName",
        [
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
        ],
    ),
    "DynamoDBWritePolicy": (
        "TableName",
        ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"],
    ),
    "SQSSendMessagePolicy": ("QueueName", ["sqs:SendMessage*"]),
    "SQSPollerPolicy": (
        "QueueName",
        [
            "sqs:ChangeMessageVisibility",
            "sqs:ChangeMessageVisibilityBatch",
            "sqs:DeleteMessage",
            "sqs:DeleteMessageBatch",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
        ],
    ),
}

# The template's resources as the scenarios below create them in moto.
LOCAL_NAMES = {
    "OrdersTable": "orders",
    "IdempotencyTable": "idempotency",
    "OrderLinesTable": "order-lines",
    "OrderEventsQueue": "order-events",
    "OrderEventsDLQ": "order-events-dlq",
}

_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def resource(name: str) -> str:
    kind = template()["Resources"][name]["Type"]
    assert name in LOCAL_NAMES, f"{name}: add how the scenarios name it to LOCAL_NAMES"
    prefix = {"AWS::DynamoDB::Table": "table", "AWS::SQS::Queue": "queue"}[kind]
    return f"{prefix}/{LOCAL_NAMES[name]}"


def grants(function: dict[str, Any]) -> list[tuple[str, str]]:
    """(action pattern, resource pattern) for every permission of a function's policies."""
    granted: list[tuple[str, str]] = []
    for policy in function["Policies"]:
        for kind, parameters in policy.items():
            if kind == "Statement":
                for statement in parameters:
                    actions = statement["Action"]
                    targets = statement["Resource"]
                    for target in targets if isinstance(targets, list) else [targets]:
                        name = referenced(target)
                        assert name is not None, f"a statement on an ARN built by hand: {target}"
                        granted += [
                            (action, resource(name))
                            for action in ([actions] if isinstance(actions, str) else actions)
                        ]
            else:
                parameter, actions = SAM_POLICY_TEMPLATES[kind]
                base = resource(str(referenced(parameters[parameter])))
                targets = [base, f"{base}/index/*"] if base.startswith("table/") else [base]
                granted += [(action, target) for action in actions for target in targets]
    return granted


def needed(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """What IAM checks for one call: (action, resource)."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return [
                (f"dynamodb:{_TRANSACT_ACTIONS[kind]}", f"table/{action['TableName']}")
                for item in params["TransactItems"]
                for kind, action in item.items()
            ]
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return [(f"dynamodb:{operation}", f"table/{table}") for table in params["RequestItems"]]
        target = f"table/{params['TableName']}"
        if params.get("IndexName"):
            target += f"/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", target)]
    if service == "sqs":
        return [(f"sqs:{operation}", f"queue/{params['QueueUrl'].rsplit('/', 1)[-1]}")]
    raise AssertionError(f"no IAM mapping for {service}:{operation} yet: add it")


class Recorder:
    """Hands out boto3 clients that record their calls while ``recording()`` is on."""

    def __init__(self, make_client: Callable[..., Any]) -> None:
        self.make_client = make_client
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.on = False

    def client(self, *args: Any, **kwargs: Any) -> Any:
        client = self.make_client(*args, **kwargs)
        client.meta.events.register("provide-client-params", self._record)
        return client

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.on:
            service = model.service_model.service_name
            self.calls.append((service, model.name, copy.deepcopy(params)))

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self.on = True
        try:
            yield
        finally:
            self.on = False


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, fake_clock: FakeClock) -> Iterator[Recorder]:
    recorder = Recorder(boto3.client)
    monkeypatch.setattr(boto3, "client", recorder.client)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SWEEP_GRACE_S", "0")
    for module in MODULES:
        monkeypatch.setattr(module, "POLICY", fake_clock.policy(module.POLICY))
        module.app.cache_clear()
    first_handler.dynamodb.cache_clear()
    monkeypatch.setattr(consumer, "charged", [])
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        api.create_orders_table(dynamodb)
        first_handler.create_tables(dynamodb)  # the idempotency table and the order lines
        queue, dlq = consumer.create_queue_with_dlq(boto3.client("sqs"), "order-events")
        monkeypatch.setenv("EVENTS_QUEUE_URL", queue)
        monkeypatch.setenv("TARGET_QUEUE_URL", queue)
        monkeypatch.setenv("DLQ_URL", dlq)
        yield recorder
    for module in MODULES:
        module.app.cache_clear()
    first_handler.dynamodb.cache_clear()


def context() -> Any:
    return FakeLambdaContext(timeout_s=60)


def place(order_id: str) -> int:
    body = {"order_id": order_id, "customer": "ada", "total": 10}
    return int(api.handler(api.http_event("POST /orders", body), context())["statusCode"])


def cancel(order_id: str, version: int) -> int:
    event = api.http_event(
        "POST /orders/{order_id}/cancel", {"version": version}, order_id=order_id
    )
    return int(api.handler(event, context())["statusCode"])


# -- what each function does, recorded ------------------------------------------------------------


def place_orders(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    with recorder.recording():
        assert [place("1"), place("1"), cancel("1", 1), cancel("1", 1)] == [201, 409, 200, 409]


def relay_events(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    place("1")
    place("2")
    batch = relay.stream_event(boto3.client("dynamodb"), "orders")
    with recorder.recording():
        refusing = chaos(relay.app().target.client, partial=1.0, seed=1)
        for _ in range(relay.app().outbox.max_attempts):  # until the events are blocked
            relay.handler(batch, context())
        refusing.uninstall()
        relay.handler(batch, context())
    assert relay.app().outbox.blocked()


def sweep(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    place("1")
    with recorder.recording():
        refusing = chaos(sweeper.app().target.client, partial=1.0, seed=2)
        for _ in range(sweeper.app().outbox.max_attempts):
            sweeper.handler({}, context())
        refusing.uninstall()
        summary = sweeper.handler({"unblock": ["order#1"]}, context())
    assert summary["delivered"] == summary["unblocked"] == 1


def charge(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    no_total = {"event_id": "e-2", "type": "OrderPlaced", "payload": {"order_id": "2"}}
    bodies = [consumer.order_placed("e-1", "1", 10)] * 2  # the second replays the first
    bodies.append(json.dumps(no_total))  # fails after taking its key, which is released
    event = {"Records": [{"messageId": f"m-{n}", "body": b} for n, b in enumerate(bodies)]}
    with recorder.recording():
        response = consumer.handler(event, context())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert consumer.charged == ["1"]


def import_order(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    with recorder.recording():
        first = first_handler.handler(first_handler.request("o-1", 30), context())
        again = first_handler.handler(first_handler.request("o-1", 30), context())
    assert first == again


def scan_a_segment(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    for n in range(5):
        place(str(n))
    state: dict[str, Any] = {"table": "orders", "segment": 0, "total_segments": 1}
    with recorder.recording():
        state = scan_segment.handler(state, context())
    assert state["done"]
    assert state["processed"] == 10  # the orders and their outbox records


def redrive(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    sqs = boto3.client("sqs")
    for body in [consumer.order_placed("e-1", "1", 10), "not an event"]:
        sqs.send_message(QueueUrl=os.environ["DLQ_URL"], MessageBody=body)
    with recorder.recording():
        report = scheduled_redrive.handler({}, context())
    assert (report["received"], report["moved"], report["skipped"]) == (2, 1, 1)


SCENARIOS = {
    "PlaceOrderFunction": place_orders,
    "OutboxRelayFunction": relay_events,
    "OutboxSweeperFunction": sweep,
    "ChargeOrdersFunction": charge,
    "ImportOrderFunction": import_order,
    "ScanSegmentFunction": scan_a_segment,
    "RedriveFunction": redrive,
}


def test_every_function_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(functions())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_policies_allow_every_call_the_handler_makes(
    name: str, recorder: Recorder, chaos: Callable[..., Chaos]
) -> None:
    SCENARIOS[name](recorder, chaos)

    granted = grants(functions()[name])
    assert recorder.calls, f"{name} made no AWS call"
    missing = {
        (action, target)
        for service, operation, params in recorder.calls
        for action, target in needed(service, operation, params)
        if not any(
            fnmatch.fnmatchcase(action, allowed_action) and fnmatch.fnmatchcase(target, allowed)
            for allowed_action, allowed in granted
        )
    }
    assert missing == set(), f"{name} is not allowed: {sorted(missing)}"
