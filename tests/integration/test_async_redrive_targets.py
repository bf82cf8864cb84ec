"""aredrive_eventbridge and aredrive_lambda (aiobotocore) against a moto server: under chaos
every event or invocation arrives once and leaves the DLQ, counted as the sync run counts it;
what is not an event (or a failure record) fails and stays; a cancellation at any request
loses nothing and deletes nothing not accepted; every client the run opened is closed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from resilient_aws.errors import ConfigurationError, RedriveNotFoundError, RedriveTargetError
from resilient_aws.redrive import (
    RedriveReport,
    aredrive_eventbridge,
    aredrive_lambda,
    redrive_eventbridge,
    redrive_lambda,
)
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS
from tests.batch_targets import drain
from tests.integration.test_async_redrive import (
    CancelAt,
    aio_sqs,
    depth,
    fast_policy,
    new_queue,
)
from tests.integration.test_redrive_servers import lambda_without_docker, make_function

__all__ = ["aio_sqs", "lambda_without_docker"]  # fixtures, imported to be used here

ACCOUNT = "123456789012"
# A draw on every whole request of the run (over both clients) is ~1 - 0.5**20: the tests that
# need one loop seeds until it came (the number of requests varies with the tasks' timing).
FAULTS = {"partial": 0.3, "throttle": 0.3, "error5xx": 0.15, "reset": 0.05}


def aio_client(moto_server: MotoServer, service: str, region: str | None = None) -> Any:
    return get_session().create_client(
        service,
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **{**DUMMY_CREDENTIALS, "region_name": region or "us-east-1"},
    )


@pytest.fixture
async def aio_events(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with aio_client(moto_server, "events") as client:
        yield client


@pytest.fixture
async def aio_lambda(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with aio_client(moto_server, "lambda") as client:
        yield client


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- EventBridge -----------------------------------------------------------------------------


def bus_to_queue(moto_server: MotoServer, region: str = "us-east-1") -> tuple[str, str, str]:
    """A bus whose rule sends every ``shop`` event to a queue: (bus, rule ARN, queue URL)."""
    sqs = moto_server.client("sqs", region_name=region)
    events = moto_server.client("events", region_name=region)
    bus, rule = name("bus"), name("rule")
    events.create_event_bus(Name=bus)
    delivered, delivered_arn = new_queue(sqs, name("delivered"))
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["shop"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": delivered_arn}])
    return bus, f"arn:aws:events:{region}:{ACCOUNT}:rule/{bus}/{rule}", delivered


def put_dead_events(sqs: Any, dlq: str, rule_arn: str, numbers: range) -> dict[str, int]:
    """What EventBridge sends to a target's DLQ: the event, with the rule in an attribute
    (message id -> ``n``)."""
    region = rule_arn.split(":")[3]
    ids = {}
    for n in numbers:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Placed",
            "source": "shop",
            "account": ACCOUNT,
            "time": "2024-06-01T12:00:00Z",
            "region": region,
            "resources": [],
            "detail": {"n": n},
        }
        ids[
            sqs.send_message(
                QueueUrl=dlq,
                MessageBody=json.dumps(event),
                MessageAttributes={"RULE_ARN": {"DataType": "String", "StringValue": rule_arn}},
            )["MessageId"]
        ] = n
    return ids


def numbers_in(sqs: Any, url: str) -> Counter[int]:
    """The ``n`` of every event (or payload) in ``url``, counted; the queue is emptied."""
    found: Counter[int] = Counter()
    for body in drain(sqs, url):
        document = json.loads(body)
        found[document["detail"]["n"] if "detail" in document else document["n"]] += 1
    return found


async def until_faults_drawn(run: Callable[[int], Awaitable[list[Chaos]]], seed: int) -> None:
    """``run(seed)`` (which checks what it moved), with the next seeds until its chaos failed
    a whole request and withheld entries of a batch."""
    for attempt in range(seed, seed + 50, 7):
        hits = await run(attempt)
        if sum(h.stats.throttled + h.stats.errors_5xx + h.stats.resets for h in hits) and sum(
            h.stats.withheld_entries for h in hits
        ):
            return
    raise AssertionError("the chaos never drew a fault")


# -- Lambda ----------------------------------------------------------------------------------


def put_failure_records(sqs: Any, url: str, function_arn: str, numbers: range) -> dict[str, int]:
    """On-failure destination records of ``function_arn``, the event ``{"n": n}`` in each
    (message id -> ``n``)."""
    ids = {}
    for n in numbers:
        record = {
            "version": "1.0",
            "timestamp": "2019-11-14T18:16:05.568Z",
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{function_arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": {"n": n},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "responsePayload": None,
        }
        ids[sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))["MessageId"]] = n
    return ids


@pytest.mark.parametrize("kind", ["eventbridge", "lambda"])
@pytest.mark.parametrize(("seed", "concurrency"), [(1, 1), (2, 4)])
async def test_every_message_is_delivered_once_under_chaos(
    moto_server: MotoServer,
    aio_sqs: Any,
    aio_events: Any,
    aio_lambda: Any,
    lambda_without_docker: list[Any],
    kind: str,
    seed: int,
    concurrency: int,
) -> None:
    sqs = moto_server.client("sqs")
    function = make_function(moto_server, name("fn")) if kind == "lambda" else ""
    target = aio_events if kind == "eventbridge" else aio_lambda

    async def run(seed: int) -> list[Chaos]:
        lambda_without_docker.clear()
        dlq, _ = new_queue(sqs, name(f"{kind}-dlq"))
        if kind == "eventbridge":
            _, rule_arn, delivered = bus_to_queue(moto_server)
            put_dead_events(sqs, dlq, rule_arn, range(40))
            redrive, options = aredrive_eventbridge, {"events_client": target}
        else:
            put_failure_records(sqs, dlq, function, range(40))
            redrive, options = aredrive_lambda, {"lambda_client": target}
        with (
            Chaos(aio_sqs, seed=seed, **FAULTS) as on_sqs,
            Chaos(target, seed=seed, **FAULTS) as on_target,
        ):
            report = await redrive(  # type: ignore[operator]
                dlq,
                client=aio_sqs,
                policy=fast_policy(),
                wait_time_s=0,
                concurrency=concurrency,
                **options,
            )
        assert (report.received, report.moved, report.failed, report.undeleted) == (40, 40, {}, {})
        assert report.ok and report.kind == kind and report.duplicates == 0
        if kind == "eventbridge":
            assert on_target.stats.withheld_entries > 0 and report.resent > 0  # 1 - 0.7**40
            assert numbers_in(sqs, delivered) == Counter(range(40))  # each exactly once
        else:
            stats = on_target.stats  # a fault drawn on one of 40 invokes: 1 - 0.5**40
            assert stats.by_operation["Invoke"] >= 40 and stats.throttled + stats.errors_5xx > 0
            assert Counter(call["n"] for call in lambda_without_docker) == Counter(range(40))
        assert depth(sqs, dlq) == 0
        return [on_sqs, on_target]

    await until_faults_drawn(run, seed)


# -- both ------------------------------------------------------------------------------------


async def test_the_reports_are_the_sync_runs_and_what_is_not_a_failure_stays(
    moto_server: MotoServer,
    aio_sqs: Any,
    aio_events: Any,
    aio_lambda: Any,
    lambda_without_docker: list[Any],
) -> None:
    """A filter, a limit and messages of the wrong shape decide the same in both drivers."""
    sqs, events, lam = (moto_server.client(s) for s in ("sqs", "events", "lambda"))
    function = make_function(moto_server, name("fn"))
    options: dict[str, Any] = dict(
        filter="body.skip == null", max_messages=21, wait_time_s=0, run_id="r", concurrency=1
    )
    reports: dict[str, list[dict[str, Any]]] = {"eventbridge": [], "lambda": []}
    for driver in ("sync", "async"):
        _, rule_arn, delivered = bus_to_queue(moto_server)
        dlq, _ = new_queue(sqs, name("eb-same"))
        failures, _ = new_queue(sqs, name("fn-same"))
        for url in (dlq, failures):  # received first: within the limit
            for body in ("not json", json.dumps({"skip": 1}), json.dumps({"source": "shop"})):
                sqs.send_message(QueueUrl=url, MessageBody=body)
        put_dead_events(sqs, dlq, rule_arn, range(20))
        put_failure_records(sqs, failures, function, range(20))
        lambda_without_docker.clear()
        if driver == "sync":
            eb = redrive_eventbridge(dlq, client=sqs, events_client=events, **options)
            fn = redrive_lambda(failures, client=sqs, lambda_client=lam, **options)
        else:
            eb = await aredrive_eventbridge(
                dlq, client=aio_sqs, events_client=aio_events, **options
            )
            fn = await aredrive_lambda(
                failures, client=aio_sqs, lambda_client=aio_lambda, **options
            )
        for report, url, moved in (
            (eb, dlq, numbers_in(sqs, delivered)),
            (fn, failures, Counter(call["n"] for call in lambda_without_docker)),
        ):
            assert report.moved == sum(moved.values()) and max(moved.values()) == 1
            assert depth(sqs, url) == 23 - report.moved  # the rest stays (released at once)
            reports[report.kind].append(comparable(report))
    for kind, (sync, aio) in reports.items():
        assert aio == sync, kind
        assert (sync["received"], sync["moved"], sync["skipped"]) == (21, 18, 1)
        code = "NotAnEvent" if kind == "eventbridge" else "NotALambdaFailure"
        assert sync["failed"] == [code, code]  # they stay in the queue


def comparable(report: RedriveReport) -> dict[str, Any]:
    """The report without what names a run's own queues and messages."""
    out = report.to_dict()
    for key in ("source", "target"):
        out.pop(key)
    out["failed"] = sorted(reason.split(":")[0] for reason in report.failed.values())
    return out


# -- cancellation ----------------------------------------------------------------------------


def still_held(url: str) -> Counter[int]:
    """The ``n`` of every message in moto's queue, visible or held by a receive."""
    queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[url.rsplit("/", 1)[1]]
    with queue._messages_lock:
        bodies = [json.loads(m.body) for m in queue._messages]
    return Counter(b["detail"]["n"] if "detail" in b else b["requestPayload"]["n"] for b in bodies)


async def test_a_cancelled_eventbridge_run_loses_nothing(
    moto_server: MotoServer, aio_sqs: Any, aio_events: Any
) -> None:
    sqs = moto_server.client("sqs")
    cancelled_in: set[str] = set()
    # GetQueueAttributes, ReceiveMessage, PutEvents, DeleteMessageBatch, ...: of the run's 15
    for at in (1, 2, 4, 5, 6, 7, 10):
        _, rule_arn, delivered = bus_to_queue(moto_server)
        dlq, _ = new_queue(sqs, name("eb-cancel"))
        ids = put_dead_events(sqs, dlq, rule_arn, range(25))
        on_sqs, on_events = CancelAt(aio_sqs, at), CancelAt(aio_events, at)
        on_events.calls = on_sqs.calls  # one count of the run's requests
        run = aredrive_eventbridge(
            dlq,
            client=on_sqs,
            events_client=on_events,
            policy=fast_policy(),
            wait_time_s=0,
            concurrency=2,
            progress=(reports := []).append,
        )
        cancelled_in.add(await cancel(run, at, on_sqs, on_events))
        check_cancelled(reports, ids, numbers_in(sqs, delivered), still_held(dlq))
    assert {"ReceiveMessage", "PutEvents", "DeleteMessageBatch"} <= cancelled_in


async def test_a_cancelled_lambda_run_loses_nothing(
    moto_server: MotoServer, aio_sqs: Any, aio_lambda: Any, lambda_without_docker: list[Any]
) -> None:
    sqs = moto_server.client("sqs")
    function = make_function(moto_server, name("fn"))
    cancelled_in: set[str] = set()
    # GetQueueAttributes, ReceiveMessage, Invoke (10), DeleteMessageBatch, ...: of the run's 19
    for at in (1, 2, 3, 7, 12, 13, 14, 16):
        lambda_without_docker.clear()
        url, _ = new_queue(sqs, name("fn-cancel"))
        ids = put_failure_records(sqs, url, function, range(12))
        on_sqs, on_lambda = CancelAt(aio_sqs, at), CancelAt(aio_lambda, at)
        on_lambda.calls = on_sqs.calls
        run = aredrive_lambda(
            url,
            client=on_sqs,
            lambda_client=on_lambda,
            policy=fast_policy(),
            wait_time_s=0,
            concurrency=1,
            progress=(reports := []).append,
        )
        cancelled_in.add(await cancel(run, at, on_sqs, on_lambda))
        invoked = Counter(call["n"] for call in lambda_without_docker)
        check_cancelled(reports, ids, invoked, still_held(url))
    assert {"ReceiveMessage", "Invoke", "DeleteMessageBatch"} <= cancelled_in


async def cancel(run: Coroutine[Any, Any, RedriveReport], at: int, *clients: CancelAt) -> str:
    """Run ``run`` until the clients cancel it: the operation cancelled in flight."""
    task = asyncio.get_running_loop().create_task(run)
    for client in clients:
        client.task = task
    with pytest.raises(asyncio.CancelledError):
        await task
    calls = clients[0].calls
    assert len(calls) <= at + 2  # the run stopped at once
    return "".join(word.title() for word in calls[at - 1].split("_"))


def check_cancelled(
    reports: list[RedriveReport], ids: dict[str, int], arrived: Counter[int], left: Counter[int]
) -> None:
    """Nothing lost, nothing twice, nothing deleted that the target did not accept, and every
    message the run held in one bucket of its last report."""
    assert set(arrived) | set(left) == set(ids.values())
    assert max(arrived.values(), default=1) == 1 and max(left.values(), default=1) == 1
    if not reports:
        assert not arrived  # cancelled before the first batch settled
        return
    report = reports[-1]
    assert report.received == report.handled
    for message_id, reason in report.failed.items():
        assert reason.split(":")[0] in ("Cancelled", "NotSent", "OutcomeUnknown"), reason
        assert ids[message_id] in left  # never deleted without an accepted delivery
        if not reason.startswith("OutcomeUnknown"):
            assert ids[message_id] not in arrived
    for message_id, reason in report.undeleted.items():
        assert ids[message_id] in arrived
        if "OutcomeUnknown" not in reason:
            assert ids[message_id] in left, reason


# -- the clients a run opens -----------------------------------------------------------------


class Opening:
    """An aiobotocore session for the moto server that records the clients it opens and the
    ones closed again."""

    def __init__(self, moto_server: MotoServer, cut: dict[str, CancelAt] | None = None) -> None:
        self.server = moto_server
        self.opened: list[tuple[str, str | None]] = []
        self.closed: list[tuple[str, str | None]] = []
        self.cut = cut or {}  # service -> what cancels the run at one of its client's requests

    def create_client(self, service: str, region_name: str | None = None, **_: Any) -> Any:
        cut = self.cut
        context, key, closed = (
            aio_client(self.server, service, region_name),
            (service, region_name),
            self.closed,
        )
        self.opened.append(key)

        class Client:
            async def __aenter__(self) -> Any:
                client = await context.__aenter__()
                if service not in cut:
                    return client
                cut[service].client = client
                return cut[service]

            async def __aexit__(self, *exc_info: Any) -> None:
                await context.__aexit__(*exc_info)
                closed.append(key)

        return Client()


async def test_the_clients_a_run_opens_are_closed_also_when_it_is_cancelled(
    moto_server: MotoServer, lambda_without_docker: list[Any]
) -> None:
    sqs = moto_server.client("sqs")
    dlq, _ = new_queue(sqs, name("eb-own"))
    east, west = bus_to_queue(moto_server), bus_to_queue(moto_server, "us-west-2")
    put_dead_events(sqs, dlq, east[1], range(6))
    put_dead_events(sqs, dlq, west[1], range(6, 12))  # a rule in another region
    session = Opening(moto_server)
    report = await aredrive_eventbridge(dlq, session=session, policy=fast_policy(), wait_time_s=0)
    assert report.moved == 12
    west_sqs = moto_server.client("sqs", region_name="us-west-2")
    assert numbers_in(sqs, east[2]) + numbers_in(west_sqs, west[2]) == Counter(range(12))
    assert sorted(session.opened, key=str) == [
        ("events", "us-east-1"),
        ("events", "us-west-2"),
        ("sqs", None),
    ]
    assert session.closed == session.opened[::-1]

    function = make_function(moto_server, name("fn"))
    url, _ = new_queue(sqs, name("fn-own"))
    put_failure_records(sqs, url, function, range(12))
    first_invoke = CancelAt(None, at=1)  # cancels the run with that request in flight
    session = Opening(moto_server, cut={"lambda": first_invoke})
    run = aredrive_lambda(url, session=session, policy=fast_policy(), wait_time_s=0)
    assert await cancel(run, 1, first_invoke) == "Invoke"
    assert session.opened == [("sqs", None), ("lambda", "us-east-1")]
    assert session.closed == session.opened[::-1]


async def test_bad_input_is_refused_before_anything_moves(
    moto_server: MotoServer, aio_sqs: Any
) -> None:
    sqs = moto_server.client("sqs")
    dlq, _ = new_queue(sqs, name("bad"))
    other, _ = new_queue(sqs, name("bad-other"))
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    session = Opening(moto_server)
    refused: list[tuple[Awaitable[RedriveReport], type[Exception], str]] = [
        (aredrive_eventbridge(dlq, bus_name="nope", session=session), RedriveNotFoundError, "bus"),
        (aredrive_eventbridge(dlq, session=session, concurrency=0), ConfigurationError, "concur"),
        (aredrive_lambda(dlq, function_name="nope", session=session), RedriveNotFoundError, "fun"),
        (aredrive_lambda(dlq, function_name="f", target_queue_url=other), ConfigurationError, "or"),
        (aredrive_lambda(dlq, target_queue_url=dlq, client=aio_sqs), RedriveTargetError, "itself"),
    ]
    for run, error, text in refused:
        with pytest.raises(error, match=text):
            await run
    assert session.opened and sorted(session.closed) == sorted(session.opened)
    assert depth(sqs, other) == 0
    assert len(drain(sqs, dlq)) == 1  # not received (it would be invisible)


async def test_failures_go_to_a_queue(
    moto_server: MotoServer, aio_sqs: Any, lambda_without_docker: list[Any]
) -> None:
    sqs = moto_server.client("sqs")
    url, _ = new_queue(sqs, name("fn-q"))
    target, _ = new_queue(sqs, name("fn-q-target"))
    put_failure_records(sqs, url, "arn:aws:lambda:us-east-1:1:function:gone", range(15))
    with Chaos(aio_sqs, partial=0.5, seed=3) as hit:  # P(no withheld entry) = 0.5**15
        report = await aredrive_lambda(
            url, target_queue_url=target, client=aio_sqs, policy=fast_policy(), wait_time_s=0
        )
    assert hit.stats.withheld_entries > 0 and report.resent > 0
    assert (report.moved, report.target, report.failed) == (15, target, {})
    assert numbers_in(sqs, target) == Counter(range(15)) and not lambda_without_docker
    assert depth(sqs, url) == 0


def test_the_docs_example_runs(capfd: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).parents[2] / "docs" / "redrive.md").read_text()
    section = page[page.index("## On asyncio") :]
    start = section.index("```python\n", section.index("aredrive_eventbridge")) + 10
    code = section[start : section.index("\n```", start)]
    assert "aredrive_eventbridge(" in code and "aredrive_lambda(" in code
    exec(compile(code, "docs/redrive.md#on-asyncio", "exec"), {"__name__": "__main__"})
    out = capfd.readouterr().out
    assert "20 received, 20 moved, 0 skipped, 0 failed" in out
    assert "5 received, 5 moved, 0 skipped, 0 failed" in out
