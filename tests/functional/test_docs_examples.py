"""Every ```python block of every docs page runs, so that no example rots.

Each block runs under moto (in process, or a moto server for the asyncio blocks) with the
resources its page says exist created first (``SETUPS``), and its result is checked where the
block gives something to check. A block that includes a file (``--8<-- "path"``) runs where it
lives: the example scripts under ``tests/functional/test_examples.py``, test files as tests.
A block that cannot run (a fragment, a block that needs a real account) says why in the page,
right before it: ``<!-- not run: <why> -->``. Every other block runs here: a new block is
either runnable or excused in the page.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from resilient_aws.testing import FakeLambdaContext, MotoServer, clear_default_clients
from tests import docs_support as docs
from tests.dynamo_tables import all_items

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
_EXCUSE = re.compile(r"<!-- not run: ((?:(?!-->).)+) -->\s*\Z", re.S)
_INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"$', re.M)


@dataclass(frozen=True)
class Block:
    page: str
    n: int
    source: str  # the block as written in the page
    excuse: str | None  # the reason of a <!-- not run: ... --> right before it

    @property
    def id(self) -> str:
        return f"{self.page}#{self.n}"

    @property
    def includes(self) -> list[tuple[str, str | None]]:
        return [(m.group(1), m.group(2)) for m in _INCLUDE.finditer(self.source)]

    @property
    def only_includes(self) -> bool:
        return not _INCLUDE.sub("", self.source).strip()

    @property
    def code(self) -> str:
        """The block with its includes replaced by what they include."""
        return _INCLUDE.sub(lambda m: _included(m.group(1), m.group(2)), self.source)


def _included(path: str, section: str | None) -> str:
    text = (ROOT / path).read_text()
    if section is None:
        return text
    start = text.index(f"--8<-- [start:{section}]")
    start = text.index("\n", start) + 1
    end = text.rindex("\n", 0, text.index(f"--8<-- [end:{section}]")) + 1
    return text[start:end]


def _page_blocks(page: str, text: str) -> list[Block]:
    found = []
    for n, match in enumerate(_BLOCK.finditer(text), 1):
        excuse = _EXCUSE.search(text, 0, match.start())
        reason = " ".join(excuse.group(1).split()) if excuse else None
        found.append(Block(page, n, match.group(1), reason))
    return found


def _blocks() -> list[Block]:
    return [
        block
        for page in sorted(DOCS.glob("*.md"))
        for block in _page_blocks(page.name, page.read_text())
    ]


BLOCKS = _blocks()


# --- what each page says exists --------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What a block needs before it runs and what is checked after it.

    ``aws`` creates the resources the page's text says exist (plain boto3 clients: moto in
    process, or the moto server of an async block through ``AWS_ENDPOINT_URL``); ``names``
    gives the block the names its page's text presumes (the reader's own data, a callback);
    ``after`` runs earlier blocks of the page first, in the same namespace; ``aio`` opens
    aiobotocore clients under these names for a block with a top-level ``await``; ``check``
    gets the namespace and what the block printed."""

    aws: Callable[[], object] | None = None
    names: Callable[[], dict[str, Any]] | None = None
    after: tuple[int, ...] = ()
    server: bool = False
    aio: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    check: Check | None = None


Check = Callable[[dict[str, Any], str, pytest.FixtureRequest], None]


def _items(name: str) -> list[dict[str, Any]]:
    return all_items(boto3.client("dynamodb"), name)


def _orders(*keys: str, **attributes: Any) -> Callable[[], object]:
    """The page's "orders" table (key ``pk``), holding these orders."""

    def create() -> None:
        docs.table("orders", **attributes)
        for key in keys:
            boto3.client("dynamodb").put_item(
                TableName="orders", Item={"pk": {"S": key}, "city": {"S": "Milan"}}
            )

    return create


def _dynamodb() -> dict[str, Any]:
    """The page's shared client and policy ("one client made at import")."""
    from resilient_aws.retry import RetryPolicy

    policy = RetryPolicy()
    return {"policy": policy, "dynamodb": boto3.client("dynamodb", config=policy.botocore_config())}


def _all(*steps: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        for step in steps:
            step()

    return run


def _no_failures(response: Any) -> None:
    assert response == {"batchItemFailures": []}, response


# getting-started.md ---------------------------------------------------------------------------


def _first_call(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    got = ns["handler"]({"id": "o-1"}, FakeLambdaContext())
    assert got["Item"]["pk"] == {"S": "o-1"}


# consumer.md ----------------------------------------------------------------------------------


def _sqs_consumer(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    event = docs.sqs_event_of([{"id": "o-1"}, {"id": "o-2"}])
    _no_failures(ns["handler"](event, FakeLambdaContext()))
    assert sorted(item["pk"]["S"] for item in _items("orders")) == ["o-1", "o-2"]


def _kinesis_consumer(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    _no_failures(
        ns["handler"](docs.kinesis_event([{"click": 1}, {"click": 2}]), FakeLambdaContext())
    )


def _idempotent_consumer(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    event = docs.sqs_event_of([{"order_id": "o-1"}, {"order_id": "o-2"}])
    for _ in range(2):
        _no_failures(ns["handler"](event, FakeLambdaContext()))
    assert len(_items("idempotency")) == 2  # one record per order


def _migrated_consumer(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    event = docs.sqs_event_of([{"n": 1}, {"n": 2}, {"n": 3}])
    assert ns["handler"](event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert ns["handled"] == [{"n": 1}, {"n": 2}, {"n": 3}]


def _record_handler() -> dict[str, Any]:
    handled: list[Any] = []
    return {"handled": handled, "record_handler": lambda record: handled.append(record.json_body)}


# dynamodb.md ----------------------------------------------------------------------------------


def _answered(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    answer = ns["handler"]({}, FakeLambdaContext())
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == [{"pk": "o-1", "city": "Milan", "total": 9.99}]


def _scanned(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    assert sorted(ns["read"].cursors) == list(range(8))
    assert set(ns["read"].cursors.values()) == {None}  # every segment read to its end


def _written(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    result = ns["writer"].result
    assert (result.submitted, result.succeeded, result.failed) == (11, 11, [])
    assert {item["pk"]["S"] for item in _items("orders")} == {f"o-{n}" for n in range(1, 11)}


def _got(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    result = ns["result"] if "result" in ns else ns["got"]
    assert [item["pk"] for item in result.items] == ["o-1"]
    assert (result.missing, result.failed) == ([{"pk": "o-2"}], [])


def _more_orders() -> dict[str, Any]:
    return {**_dynamodb(), "more_orders": [{"pk": f"o-{n}", "total": n} for n in range(2, 11)]}


def _order_with_total() -> None:
    docs.table("orders")
    boto3.client("dynamodb").put_item(
        TableName="orders",
        Item={"pk": {"S": "o-1"}, "city": {"S": "Milan"}, "total": {"N": "9.99"}},
    )


# idempotency.md -------------------------------------------------------------------------------


def _offloaded(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    assert out == ""  # neither "not replayed" nor "retry later"
    (stored,) = boto3.client("s3").list_objects_v2(Bucket="idempotency-results")["Contents"]
    assert stored["Key"].startswith("results/") and stored["Size"] > 1_000_000
    assert ns["report"]({"order_id": "o1"})["rows"] == "r" * 1_000_000  # replayed from S3


def _sealed(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    from resilient_aws.idempotency import idempotent

    runs: list[str] = []

    @idempotent(ns["store"], key="order_id")
    def charge(event: dict[str, Any]) -> dict[str, Any]:
        runs.append(event["order_id"])
        return {"charged": event["order_id"]}

    assert [charge({"order_id": "o-1"}) for _ in range(2)] == [{"charged": "o-1"}] * 2
    assert runs == ["o-1"]
    (record,) = _items("idempotency")
    assert record["data"]["S"].startswith("sealed:")


def _charged_once(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    answers = [ast.literal_eval(line) for line in out.splitlines()]
    assert answers == [{"order_id": "o-1", "charged": True}] * 2  # the second one replayed
    assert len(_items("idempotency")) == 1


def _replayed(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    event = {"body": {"order_id": "o-1"}}
    assert ns["handler"](event, FakeLambdaContext()) is None
    assert ns["handler"](event, FakeLambdaContext()) is None
    assert len(_items("idempotency")) == 1


_kms_idempotency = _all(docs.idempotency_table, lambda: docs.kms_alias("alias/idempotency"))

# outbox.md, payloads.md ----------------------------------------------------------------------


def _outbox_items() -> None:
    from tests.outbox_support import create_outbox_table

    dynamodb = boto3.client("dynamodb")
    create_outbox_table(dynamodb, "orders")
    for pk, sk, extra in [
        ("stock", "sku-1", {"count": {"N": "5"}}),
        ("customer#7", "profile", {}),
        ("cart#7", "cart", {}),
    ]:
        dynamodb.put_item(TableName="orders", Item={"pk": {"S": pk}, "sk": {"S": sk}, **extra})


def _outbox_written(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    items = {(i["pk"]["S"], i["sk"]["S"]): i for i in _items("orders")}
    assert items[("stock", "sku-1")]["count"] == {"N": "4"}
    assert ("cart#7", "cart") not in items and ("order#1", "order") in items
    (pending,) = ns["outbox"].pending()
    assert (pending.event.type, pending.event.sequence) == ("OrderPlaced", 1)


def _claim_check() -> dict[str, Any]:
    archived: list[Any] = []
    return {
        "queue_url": docs.queue("reports"),
        "reports": [json.dumps({"rows": "x" * 2_000_000}), json.dumps({"rows": "small"})],
        "archived": archived,
        "archive": archived.append,
    }


def _claim_checked(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    (offloaded,) = boto3.client("s3").list_objects_v2(Bucket="my-payloads")["Contents"]
    assert offloaded["Key"].startswith("orders/")
    _no_failures(ns["handler"](docs.sqs_event(ns["queue_url"]), FakeLambdaContext()))
    assert ns["archived"] == [{"rows": "x" * 2_000_000}, {"rows": "small"}]


def _event_claim_check() -> dict[str, Any]:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="orders")
    delivered = docs.queue("delivered")
    events.put_rule(
        Name="reports", EventBusName="orders", EventPattern='{"source": ["shop.reports"]}'
    )
    events.put_targets(
        Rule="reports",
        EventBusName="orders",
        Targets=[{"Id": "q", "Arn": docs.queue_arn(delivered)}],
    )
    archived: list[Any] = []
    return {
        "delivered": delivered,
        "report": {"rows": "x" * 2_000_000},
        "archived": archived,
        "archive": archived.append,
        "sqs": sqs,
    }


def _event_claim_checked(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    assert ns["events"].result.succeeded == 1
    (message,) = ns["sqs"].receive_message(QueueUrl=ns["delivered"])["Messages"]
    event = json.loads(message["Body"])
    assert "s3Key" in event["detail"]  # the pointer went through EventBridge
    ns["handler"](event, FakeLambdaContext())
    assert ns["archived"] == [{"rows": "x" * 2_000_000}]


def _swept(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    pattern = r"s3://my-payloads/orders/: [\d,]+ listed, [\d,]+ deleted, [\d,]+ kept, 0 failed"
    assert re.fullmatch(pattern, out.strip()), out
    assert ns["result"].ok and ns["result"].listed == ns["result"].kept == 2


def _objects(bucket: str, *keys: str) -> Callable[[], None]:
    def create() -> None:
        docs.bucket(bucket)
        for key in keys:
            boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"{}")

    return create


def _sealing(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    from resilient_aws.batch import SqsSender
    from resilient_aws.payloads import resolve

    url = docs.queue("sealed")
    sqs = boto3.client("sqs")
    with SqsSender(url, payloads=ns["store"], client=sqs) as sender:
        sender.send_message("x" * 300_000)
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    (stored,) = boto3.client("s3").list_objects_v2(Bucket="payloads")["Contents"]
    body = boto3.client("s3").get_object(Bucket="payloads", Key=stored["Key"])["Body"].read()
    assert b"xxxx" not in body  # sealed
    assert resolve(message, ns["store"])["Body"] == "x" * 300_000


# powertools.md ---------------------------------------------------------------------------------


def _metrics_handler(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    with pytest.warns(UserWarning, match="No application metrics"):  # flushed by log_metrics
        assert ns["handler"]({}, FakeLambdaContext()) is None


def _charged_once_each(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    event = docs.sqs_event_of([{"order_id": "o-1", "total": 3}, {"order_id": "o-2", "total": 5}])
    for _ in range(2):  # delivered twice
        _no_failures(ns["handler"](event, FakeLambdaContext()))
    assert ns["charged"] == ["o-1", "o-2"]


def _metrics_test(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    ns["test_every_withheld_entry_is_counted"](
        boto3.client("dynamodb"), request.getfixturevalue("capsys")
    )


_POWERTOOLS_ENV = {"POWERTOOLS_METRICS_NAMESPACE": "Orders"}


# redrive.md ------------------------------------------------------------------------------------


def _dead_letters() -> dict[str, Any]:
    dlq = docs.dlq_with_source("orders")
    sqs = boto3.client("sqs")
    for n in range(20):
        kind = "order" if n % 4 else "refund"
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"type": kind, "n": n}))
    return {"dlq_url": dlq}


def _redriven(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    report = ns["report"]
    assert report.ok and (report.moved, report.skipped) == (15, 5), report
    assert "15 moved, 5 skipped, 0 failed" in out  # progress=print


def _lambda_failures() -> dict[str, Any]:
    role = boto3.client("iam").create_role(
        RoleName="billing", AssumeRolePolicyDocument="{}", Path="/"
    )["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName="billing",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": docs.zipped("app.py", "def handler(event, context): pass\n")},
    )
    return {
        "failures_queue_url": docs.queue("invoke-failures"),
        "lambda_dlq_url": docs.queue("billing-dlq"),
        "work": docs.queue("work"),
    }


def _event_bus_dlq() -> dict[str, Any]:
    boto3.client("events").create_event_bus(Name="replay")
    return {"target_dlq_url": docs.queue("placed-dlq")}


def _ok(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    assert ns["report"].ok


# retry.md --------------------------------------------------------------------------------------


def _partial() -> dict[str, Any]:
    from resilient_aws.retry import FailedEntry
    from resilient_aws.testing import FakeClock

    refused: set[str] = {"2"}

    def send(batch: list[dict[str, str]]) -> list[FailedEntry[dict[str, str]]]:
        failed = [
            FailedEntry(entry, entry["Id"], "Throttling", "slow down", retryable=True)
            for entry in batch
            if entry["Id"] in refused
        ]
        refused.clear()  # throttled once, then taken
        return failed

    return {
        "policy": FakeClock().policy(),
        "send": send,
        "entries": [{"Id": str(n)} for n in range(5)],
    }


def _settled(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    outcome = ns["outcome"]
    assert (outcome.total, outcome.failed, outcome.resent) == (5, (), 1)


def _metrics_recorder() -> dict[str, Any]:
    added: list[tuple[str, int]] = []
    return {"added": added, "metrics": SimpleNamespace(add=lambda *args: added.append(args))}


def _counted(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    from resilient_aws.retry import RetryEvent, emit

    emit(RetryEvent(kind="retry", operation="PutItem", attempt=1))
    emit(RetryEvent(kind="recovered", operation="PutItem", attempt=2))
    assert ns["added"] == [("retry_retry", 1)]


def _jitters(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    from resilient_aws.retry import JITTERS

    assert [line.split()[0] for line in out.splitlines()] == list(JITTERS)


# testing.md ------------------------------------------------------------------------------------


def _code_under_test() -> dict[str, Any]:
    from resilient_aws.dynamodb import BatchWriter
    from resilient_aws.testing import FakeClock

    dynamodb = boto3.client("dynamodb")

    def run_the_code_under_test() -> None:
        with BatchWriter("orders", client=dynamodb, policy=FakeClock().policy()) as writer:
            writer.put_many({"pk": f"o-{n}"} for n in range(100))

    return {"dynamodb": dynamodb, "run_the_code_under_test": run_the_code_under_test}


def _chaos_stats(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
    assert out.startswith("ChaosStats(") and ns["c"].stats.withheld_entries > 0
    assert len(_items("orders")) == 100


def _app() -> dict[str, Any]:
    from resilient_aws.dynamodb import BatchWriter
    from resilient_aws.retry import RetryPolicy

    def handler(event: dict[str, Any], context: Any) -> None:
        with BatchWriter("orders", policy=app.policy) as writer:  # the default client
            writer.put_many(event["orders"])

    app = SimpleNamespace(policy=RetryPolicy(), handler=handler)
    return {
        "app": app,
        "create_orders_table": lambda: docs.table("orders"),
        "orders": [{"pk": f"o-{n}"} for n in range(100)],
    }


def _test_passes(name: str, *fixtures: str) -> Check:
    def check(ns: dict[str, Any], out: str, request: pytest.FixtureRequest) -> None:
        ns[name](*(request.getfixturevalue(f) for f in fixtures))

    return check


SETUPS: dict[str, Setup] = {
    "async.md#2": Setup(aws=_orders("o-1"), server=True, aio={"dynamodb": "dynamodb"}, check=_got),
    "getting-started.md#1": Setup(aws=_orders("o-1"), check=_first_call),
    "consumer.md#1": Setup(aws=_orders(), check=_sqs_consumer),
    "consumer.md#2": Setup(aws=_orders(), after=(1,), check=_kinesis_consumer),
    "consumer.md#3": Setup(
        aws=_all(_orders(), docs.idempotency_table), after=(1,), check=_idempotent_consumer
    ),
    "consumer.md#4": Setup(names=_record_handler, check=_migrated_consumer),
    "dynamodb.md#2": Setup(aws=lambda: docs.table("orders", range_key=("sk", "S"))),
    "dynamodb.md#3": Setup(aws=_order_with_total, names=_dynamodb, check=_answered),
    "dynamodb.md#4": Setup(
        aws=_orders(*(f"o-{n}" for n in range(30))), names=_dynamodb, check=_scanned
    ),
    "dynamodb.md#6": Setup(aws=_orders("o-0"), names=_more_orders, check=_written),
    "dynamodb.md#7": Setup(aws=_orders("o-1"), check=_got),
    "idempotency.md#4": Setup(
        aws=_all(docs.idempotency_table, lambda: docs.bucket("idempotency-results")),
        after=(3,),
        check=_offloaded,
    ),
    "idempotency.md#5": Setup(aws=_kms_idempotency, check=_sealed),
    "idempotency.md#6": Setup(aws=_kms_idempotency, after=(5,), check=_sealed),
    "idempotency.md#7": Setup(aws=docs.idempotency_table, server=True, check=_charged_once),
    "idempotency.md#8": Setup(aws=docs.idempotency_table, check=_replayed),
    "outbox.md#2": Setup(aws=_outbox_items, names=_dynamodb, check=_outbox_written),
    "payloads.md#1": Setup(
        aws=lambda: docs.bucket("my-payloads"), names=_claim_check, check=_claim_checked
    ),
    "payloads.md#2": Setup(aws=lambda: docs.bucket("my-payloads"), names=_claim_check, after=(1,)),
    "payloads.md#3": Setup(
        aws=lambda: docs.bucket("my-payloads"), names=_event_claim_check, check=_event_claim_checked
    ),
    "payloads.md#4": Setup(aws=_objects("my-payloads", "orders/a", "orders/b"), check=_swept),
    "payloads.md#5": Setup(
        aws=_all(_objects("my-payloads", "orders/a", "orders/b"), _outbox_items), after=(4,)
    ),
    "powertools.md#2": Setup(env=_POWERTOOLS_ENV, check=_metrics_handler),
    "powertools.md#3": Setup(aws=docs.idempotency_table, check=_charged_once_each),
    "powertools.md#4": Setup(env=_POWERTOOLS_ENV, after=(2,)),
    "powertools.md#5": Setup(aws=_orders(), env=_POWERTOOLS_ENV, check=_metrics_test),
    "redrive.md#2": Setup(names=_dead_letters, check=_redriven),
    "redrive.md#5": Setup(names=_lambda_failures, check=_ok),
    "redrive.md#6": Setup(names=_event_bus_dlq, check=_ok),
    "redrive.md#7": Setup(names=_dead_letters, after=(2,), check=_redriven),
    "retry.md#3": Setup(after=(2,), names=lambda: {"context": FakeLambdaContext()}),
    "retry.md#4": Setup(names=_partial, check=_settled),
    "retry.md#5": Setup(names=_metrics_recorder, check=_counted),
    "retry.md#6": Setup(check=_jitters),
    "testing.md#1": Setup(aws=_orders(), names=_code_under_test, check=_chaos_stats),
    "testing.md#3": Setup(
        names=_app, check=_test_passes("test_handler_survives_faults", "monkeypatch")
    ),
    "testing.md#4": Setup(
        check=_test_passes(
            "test_a_throttled_idempotency_table_charges_each_order_once",
            "chaos_defaults",
            "fake_clock",
            "monkeypatch",
        )
    ),
    "payloads.md#6": Setup(
        aws=_all(lambda: docs.bucket("payloads"), lambda: docs.kms_alias("alias/payloads")),
        check=_sealing,
    ),
}


# --- running a block -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_server() -> Iterator[MotoServer]:
    """A moto server of this module's own (resetting the session's would reset other tests')."""
    with MotoServer() as server:
        yield server


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a block may change for the whole process is put back after it: the global retry
    listeners, the library logger's handlers, the default clients."""
    from resilient_aws.retry import _events

    monkeypatch.setattr(_events, "_listeners", _events._listeners)
    library = logging.getLogger("resilient_aws")
    saved = (list(library.handlers), library.propagate, library.level)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "docs",
    }.items():
        monkeypatch.setenv(name, value)
    clear_default_clients()
    yield
    clear_default_clients()
    library.handlers[:], library.propagate = saved[0], saved[1]
    library.setLevel(saved[2])


def _compile(block: Block) -> Any:
    return compile(block.code, f"docs/{block.id}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _run(block: Block, setup: Setup, namespace: dict[str, Any], server: MotoServer | None) -> None:
    for n in setup.after:
        (earlier,) = (b for b in BLOCKS if b.id == f"{block.page}#{n}")
        exec(_compile(earlier), namespace)
    code = _compile(block)
    if not code.co_flags & inspect.CO_COROUTINE and not setup.aio:
        exec(code, namespace)
        return

    async def main() -> None:
        from aiobotocore.session import get_session

        async with AsyncExitStack() as stack:
            for name, service in setup.aio.items():
                assert server is not None, f"{block.id}: aiobotocore clients need server=True"
                namespace[name] = await stack.enter_async_context(
                    get_session().create_client(service, endpoint_url=server.endpoint_url)
                )
            result = eval(code, namespace)
            if asyncio.iscoroutine(result):
                await result

    asyncio.run(main())


RUN = [b for b in BLOCKS if b.excuse is None and not b.only_includes]


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_the_block_runs(
    block: Block,
    isolated: None,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup = SETUPS.get(block.id, Setup())
    server = request.getfixturevalue("docs_server") if setup.server else None
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    with ExitStack() as stack:
        if server is None:
            stack.enter_context(mock_aws())
        else:
            server.reset()
            monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
        for name, value in setup.env.items():
            monkeypatch.setenv(name, value)
        if setup.aws:
            setup.aws()
        if setup.names:
            namespace.update(setup.names())
        _run(block, setup, namespace, server)
        if setup.check:
            setup.check(namespace, capsys.readouterr().out, request)


# --- every block is run, here or where it lives, or excused ----------------------------------


def test_every_block_is_run_or_excused() -> None:
    assert len(BLOCKS) > 50
    for block in BLOCKS:
        if block.excuse is not None:
            assert len(block.excuse) > 10, f"{block.id}: say why it does not run"
            continue
        assert block in RUN or block.only_includes, block.id


def test_an_excuse_is_read_right_before_its_block_only() -> None:
    page = (
        "<!-- not run: needs a real account -->\n```python\na = 1\n```\n\n"
        "text\n\n```python\nb = 2\n```\n<!-- a comment -->\n```python\nc = 3\n```\n"
    )
    assert [b.excuse for b in _page_blocks("p.md", page)] == ["needs a real account", None, None]


def test_excuses_are_few() -> None:
    excused = [b.id for b in BLOCKS if b.excuse is not None]
    assert len(excused) <= 8, excused


def test_setups_name_blocks_that_run() -> None:
    for key in SETUPS:
        assert key in {b.id for b in RUN}, f"{key}: no such runnable block"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.only_includes], ids=lambda b: b.id)
def test_an_included_file_runs_where_it_lives(block: Block) -> None:
    for path, section in block.includes:
        text = _included(path, section)
        name = Path(path).name
        if path.startswith("examples/") and not name.startswith("test_"):
            assert Path(path).parent.name == "examples"  # test_examples.py runs each as a script
        else:
            assert name.startswith("test_") and path.split("/")[0] in {"tests", "examples"}
            whole = (ROOT / path).read_text()
            before = whole[: whole.index(f"[start:{section}]")] if section else ""
            enclosing = re.findall(r"^(?:async )?def (\w+)", before, re.M)[-1:]
            inside_a_test = text.startswith(" ") and enclosing and enclosing[0].startswith("test_")
            assert re.search(r"^(async )?def test_", text, re.M) or inside_a_test, (path, section)
