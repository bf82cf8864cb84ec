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
import consumer_fifo_handler as fifo_consumer
import consumer_kinesis_handler as kinesis_consumer
import consumer_sqs_handler as sqs_consumer
import consumer_stream_handler as stream_consumer
import first_handler
import idempotent_sqs_handler as consumer
import outbox_api_handler as api
import outbox_relay_handler as relay
import outbox_sweeper_handler as sweeper
import scan_segment_handler as scan_segment
import scheduled_redrive

MODULES = [consumer, api, relay, sweeper, first_handler, scheduled_redrive]
CONSUMERS = [sqs_consumer, fifo_consumer, kinesis_consumer, stream_consumer]

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
    "ShipmentsTable": "shipments",
    "ShipmentHistoryTable": "shipment-history",
    "StockTable": "stock",
    "ShipmentRequestsQueue": "shipment-requests",
    "ShipmentRequestsDLQ": "shipment-requests-dlq",
    "StockCountsQueue": "stock-counts.fifo",
    "StockCountsDLQ": "stock-counts-dlq.fifo",
    "StreamFailuresQueue": "stream-failures",
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
        # IAM authorises SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch
        # as SendMessage, DeleteMessage and ChangeMessageVisibility: there is no batch action.
        action = operation.removesuffix("Batch")
        return [(f"sqs:{action}", f"queue/{params['QueueUrl'].rsplit('/', 1)[-1]}")]
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
    for module in MODULES + CONSUMERS:
        monkeypatch.setattr(module, "POLICY", fake_clock.policy(module.POLICY))
        module.app.cache_clear()
    first_handler.dynamodb.cache_clear()
    monkeypatch.setattr(consumer, "charged", [])
    with mock_aws():
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        api.create_orders_table(dynamodb)
        first_handler.create_tables(dynamodb)  # the idempotency table and the order lines
        queue, dlq = consumer.create_queue_with_dlq(sqs, "order-events")
        monkeypatch.setenv("EVENTS_QUEUE_URL", queue)
        monkeypatch.setenv("TARGET_QUEUE_URL", queue)
        monkeypatch.setenv("DLQ_URL", dlq)
        # the batch consumers' tables, queues and stream
        sqs_consumer.create_shipments_table(dynamodb)
        stream_consumer.create_history_table(dynamodb)
        fifo_consumer.create_stock_table(dynamodb)
        consumer.create_queue_with_dlq(sqs, "shipment-requests")
        fifo_consumer.create_fifo_queue_with_dlq(sqs, "stock-counts")
        boto3.client("kinesis").create_stream(StreamName="tracking", ShardCount=1)
        yield recorder
    for module in MODULES + CONSUMERS:
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


def queue_url(name: str) -> str:
    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def identifiers(response: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def changed_visibility(recorder: Recorder) -> bool:
    return any(operation == "ChangeMessageVisibilityBatch" for _, operation, _ in recorder.calls)


def create_shipments(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    sqs, url = boto3.client("sqs"), queue_url("shipment-requests")
    requests = [sqs_consumer.shipment_request(n) for n in ("1", "1", "2")]  # "1" delivered twice
    requests.append(sqs_consumer.shipment_request("3", address=None))  # malformed
    for body in requests:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    event = sqs_consumer.receive_event(sqs, url)
    assert len(event["Records"]) == 4
    with recorder.recording():
        response = sqs_consumer.handler(event, context())
    bad = [r["messageId"] for r in event["Records"] if r["body"] == requests[-1]]
    assert response == {"batchItemFailures": [{"itemIdentifier": bad[0]}]}  # that one only
    assert changed_visibility(recorder)  # the failed message backed off
    shipments = boto3.client("dynamodb").scan(TableName="shipments")["Items"]
    assert sorted(item["order_id"]["S"] for item in shipments) == ["1", "2"]


def record_stock_counts(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    sqs, url = boto3.client("sqs"), queue_url("stock-counts.fifo")
    counts = [("sku-a", 3), ("sku-b", 5), ("sku-a", -1), ("sku-b", 4), ("sku-a", 2)]
    for n, (sku, on_hand) in enumerate(counts):
        fifo_consumer.send_count(sqs, url, sku, on_hand, f"2024-05-01T0{n}:00:00Z")
    event = sqs_consumer.receive_event(sqs, url)
    assert [json.loads(r["body"])["on_hand"] for r in event["Records"]] == [3, 5, -1, 4, 2]
    with recorder.recording():
        response = fifo_consumer.handler(event, context())
    # the bad count of sku-a and the later one of its group; sku-b goes on
    ids = [r["messageId"] for r in event["Records"]]
    assert identifiers(response) == [ids[2], ids[4]]
    assert changed_visibility(recorder)
    stock = boto3.client("dynamodb").scan(TableName="stock")["Items"]
    assert {i["sku"]["S"]: i["on_hand"]["N"] for i in stock} == {"sku-a": "3", "sku-b": "4"}


def put_shipments(*order_ids: str) -> None:
    for order_id in order_ids:
        stream_consumer.set_status(
            boto3.client("dynamodb"), "shipments", order_id, "created", "2024-05-01T00:00:00Z"
        )


def track_shipments(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    put_shipments("1", "2")
    kinesis = boto3.client("kinesis")
    for n, order_id in enumerate(["1", "9", "2"]):  # order 9 has no shipment
        kinesis_consumer.put_scan(kinesis, "tracking", order_id, "picked", f"2024-05-01T0{n}:00Z")
    event = kinesis_consumer.kinesis_event(kinesis, "tracking")
    sequence = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    with recorder.recording():
        response = kinesis_consumer.handler(event, context())
    assert identifiers(response) == sequence[1:]  # the failure and every record after it
    items = boto3.client("dynamodb").scan(TableName="shipments")["Items"]
    assert {i["order_id"]["S"]: i["status"]["S"] for i in items} == {"1": "picked", "2": "created"}


def record_history(recorder: Recorder, chaos: Callable[..., Chaos]) -> None:
    dynamodb = boto3.client("dynamodb")
    put_shipments("1", "2")
    stream_consumer.set_status(dynamodb, "shipments", "1", "lost", "2024-05-01T01:00:00Z")
    stream_consumer.set_status(dynamodb, "shipments", "2", "picked", "2024-05-01T02:00:00Z")
    event = stream_consumer.stream_event(dynamodb, "shipments")
    sequence = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    assert len(sequence) == 4
    with recorder.recording():
        response = stream_consumer.handler(event, context())
    assert identifiers(response) == sequence[2:]  # the unknown status and every record after it
    rows = dynamodb.scan(TableName="shipment-history")["Items"]
    assert sorted((r["order_id"]["S"], r["status"]["S"]) for r in rows) == [
        ("1", "created"),
        ("2", "created"),
    ]


SCENARIOS = {
    "PlaceOrderFunction": place_orders,
    "OutboxRelayFunction": relay_events,
    "OutboxSweeperFunction": sweep,
    "ChargeOrdersFunction": charge,
    "ImportOrderFunction": import_order,
    "ScanSegmentFunction": scan_a_segment,
    "RedriveFunction": redrive,
    "CreateShipmentsFunction": create_shipments,
    "RecordStockCountsFunction": record_stock_counts,
    "TrackShipmentsFunction": track_shipments,
    "RecordShipmentHistoryFunction": record_history,
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
