"""An adversarial review of abatch_get, aredrive_eventbridge and aredrive_lambda (and their
sync twins, which share their decisions): one key or message the service refuses, or cannot
be reached for, does not take the others with it; a cancellation leaves no task and no client
behind; the texts a run reports name entries, never payloads."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, ParamValidationError

from resilient_aws._clients import clear_default_clients
from resilient_aws.dynamodb import abatch_get, batch_get
from resilient_aws.errors import InvalidKeyError
from resilient_aws.redrive import (
    RedriveReport,
    aredrive_eventbridge,
    aredrive_lambda,
    redrive_eventbridge,
    redrive_lambda,
)
from resilient_aws.redrive._targets import AsyncClients, error_text
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS
from resilient_aws.testing.emulators import NodeEmulator
from tests.batch_targets import drain
from tests.dynamo_tables import create_table
from tests.integration.test_async_redrive import CancelAt, aio_sqs, fast_policy, new_queue
from tests.integration.test_async_redrive_targets import (
    Opening,
    aio_lambda,
    bus_to_queue,
    name,
    numbers_in,
    put_dead_events,
    put_failure_records,
)
from tests.integration.test_redrive_servers import lambda_without_docker, make_function

__all__ = ["aio_lambda", "aio_sqs", "lambda_without_docker"]  # fixtures, imported to be used

_tables = iter(range(1_000_000))


@pytest.fixture
async def aio_ddb(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


def table_of(moto_server: MotoServer, kind: str, items: list[tuple[Any, Any]]) -> str:
    """A table keyed ``pk`` (S) and ``sk`` (``kind``) holding ``items`` (pk, sk), ``v`` = 1."""
    ddb = moto_server.client("dynamodb")
    name = f"review-{next(_tables)}"
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": kind},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for pk, sk in items:
        ddb.put_item(TableName=name, Item={"pk": {"S": pk}, "sk": {kind: sk}, "v": {"N": "1"}})
    return name


def balanced(result: Any) -> bool:
    return bool(result.submitted == result.succeeded + len(result.failed) + result.deduplicated)


# -- abatch_get ------------------------------------------------------------------------------


@pytest.mark.emulator
async def test_one_key_the_service_refuses_does_not_fail_the_others(
    dynalite_server: NodeEmulator,
) -> None:
    """With ``key=`` (no types known), a key of the wrong type reaches DynamoDB (dynalite),
    which refuses the whole request: the other keys of that request are read all the same."""
    ddb = dynalite_server.client("dynamodb")
    table = create_table(ddb, f"review-{next(_tables)}", range_key=("sk", "N"))
    for i in range(150):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}})
    wanted: list[dict[str, Any]] = [{"pk": f"p{i}", "sk": i} for i in range(150)]
    wanted.insert(70, {"pk": "p0", "sk": "not-a-number"})
    async with get_session().create_client(
        "dynamodb", endpoint_url=dynalite_server.endpoint_url, **DUMMY_CREDENTIALS
    ) as client:
        got = await abatch_get(
            table, wanted, client=client, key=("pk", "sk"), raise_on_failure=False
        )
    same = batch_get(table, wanted, client=ddb, key=("pk", "sk"), raise_on_failure=False)
    for result in (got, same):
        assert [f.entry_id for f in result.failed] == [f"{table}[pk=p0,sk=not-a-number]"]
        assert result.failed[0].code == "ValidationException"
        assert sorted(i["sk"] for i in result.items) == list(range(150))
        assert balanced(result) and result.missing == []


# -- the redrives: a message's own region ----------------------------------------------------

POISON_REGION = "bad!region"  # botocore refuses to make a client for it


def dead_events_with_a_poison(moto_server: MotoServer) -> tuple[str, str, dict[str, int], str]:
    """A DLQ of 6 events of a rule in us-east-1 and, in the middle, one whose RULE_ARN names
    a region no client can be made for: (dlq, queue the rule delivers to, ids, poison id)."""
    sqs = moto_server.client("sqs")
    _, rule_arn, delivered = bus_to_queue(moto_server)
    dlq, _ = new_queue(sqs, name("review-eb"))
    ids = put_dead_events(sqs, dlq, rule_arn, range(3))
    poison = put_dead_events(sqs, dlq, rule_arn.replace("us-east-1", POISON_REGION), range(3, 4))
    ids.update(put_dead_events(sqs, dlq, rule_arn, range(4, 7)))
    return dlq, delivered, ids, next(iter(poison))


def failure_records_with_a_poison(moto_server: MotoServer) -> tuple[str, str]:
    """A queue of 6 failure records of a function in us-east-1 and one of a function whose ARN
    names a region no client can be made for: (queue, poison id)."""
    sqs = moto_server.client("sqs")
    function = make_function(moto_server, name("fn"))
    url, _ = new_queue(sqs, name("review-fn"))
    put_failure_records(sqs, url, function, range(3))
    poison = put_failure_records(
        sqs, url, function.replace("us-east-1", POISON_REGION), range(3, 4)
    )
    put_failure_records(sqs, url, function, range(4, 7))
    return url, next(iter(poison))


def check_poison_stays(report: RedriveReport, poison: str) -> None:
    assert (report.received, report.moved, list(report.failed)) == (7, 6, [poison])
    reason = report.failed[poison]
    assert reason.startswith("NoClient:") and POISON_REGION in reason, reason


async def test_a_message_naming_a_region_no_client_is_made_for_fails_alone(
    moto_server: MotoServer,
    lambda_without_docker: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The region comes from the message (its rule's or function's ARN): a client that cannot
    be made for it fails that message, as a malformed one does, and the run goes on; every
    client the run opened is closed. The sync twins decide the same."""
    sqs = moto_server.client("sqs")
    dlq, delivered, ids, poison = dead_events_with_a_poison(moto_server)
    session = Opening(moto_server)
    report = await aredrive_eventbridge(
        dlq, session=session, policy=fast_policy(), wait_time_s=0, concurrency=1
    )
    check_poison_stays(report, poison)
    assert numbers_in(sqs, delivered) == Counter(n for n in ids.values() if n != 3)
    assert sorted(session.closed, key=str) == [("events", "us-east-1"), ("sqs", None)]
    assert len(drain(sqs, dlq)) == 1

    url, poison = failure_records_with_a_poison(moto_server)
    session = Opening(moto_server)
    report = await aredrive_lambda(
        url, session=session, policy=fast_policy(), wait_time_s=0, concurrency=1
    )
    check_poison_stays(report, poison)
    assert sorted(call["n"] for call in lambda_without_docker) == [0, 1, 2, 4, 5, 6]
    assert sorted(session.closed, key=str) == [("lambda", "us-east-1"), ("sqs", None)]

    # the sync twins, on default clients made for the moto server
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    for key, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key.upper() if key != "region_name" else "AWS_DEFAULT_REGION", value)
    dlq, delivered, ids, poison = dead_events_with_a_poison(moto_server)
    lambda_without_docker.clear()
    url, fn_poison = failure_records_with_a_poison(moto_server)
    try:
        check_poison_stays(redrive_eventbridge(dlq, wait_time_s=0, concurrency=1), poison)
        check_poison_stays(redrive_lambda(url, wait_time_s=0, concurrency=1), fn_poison)
    finally:
        clear_default_clients()
    assert numbers_in(sqs, delivered) == Counter(n for n in ids.values() if n != 3)
    assert sorted(call["n"] for call in lambda_without_docker) == [0, 1, 2, 4, 5, 6]


async def test_an_invoke_throttled_to_the_end_is_reported_as_the_sync_run_reports_it(
    moto_server: MotoServer, aio_sqs: Any, aio_lambda: Any, lambda_without_docker: list[Any]
) -> None:
    sqs, lam = moto_server.client("sqs"), moto_server.client("lambda")
    function = make_function(moto_server, name("fn"))
    reasons = []
    for driver in ("sync", "async"):
        url, _ = new_queue(sqs, name("review-throttled"))
        ids = put_failure_records(sqs, url, function, range(3))
        options: dict[str, Any] = dict(
            policy=FakeClock().policy(max_attempts=3), wait_time_s=0, concurrency=1
        )
        if driver == "sync":
            with Chaos(lam, throttle=1.0, seed=1) as hit:
                report = redrive_lambda(url, client=sqs, lambda_client=lam, **options)
        else:
            with Chaos(aio_lambda, throttle=1.0, seed=1) as hit:
                report = await aredrive_lambda(
                    url, client=aio_sqs, lambda_client=aio_lambda, **options
                )
        assert hit.stats.by_operation["Invoke"] == 9  # each retried, up to max_attempts
        assert (report.received, report.moved, set(report.failed)) == (3, 0, set(ids))
        assert not lambda_without_docker and len(drain(sqs, url)) == 3
        reasons.append(sorted(report.failed.values()))
    assert reasons[0] == reasons[1]
    assert all("ThrottlingException" in reason for reason in reasons[0]), reasons[0]


class Racing:
    """An aiobotocore-like session whose clients take a few loop turns to open."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str | None]] = []
        self.closed: list[tuple[str, str | None]] = []
        self.hold: asyncio.Event | None = None  # the next close waits on it
        self.holding = asyncio.Event()  # set once a close waits

    def create_client(self, service: str, region_name: str | None = None, **_: Any) -> Any:
        key, session = (service, region_name), self
        opened, closed = self.opened, self.closed

        class Context:
            async def __aenter__(self) -> Any:
                for _ in range(3):
                    await asyncio.sleep(0)
                opened.append(key)
                return object()

            async def __aexit__(self, *exc_info: Any) -> None:
                try:
                    hold, session.hold = session.hold, None
                    if hold is not None:
                        session.holding.set()
                        await hold.wait()
                finally:
                    closed.append(key)

        return Context()


async def test_a_cancellation_while_clients_open_or_close_leaves_none_open() -> None:
    session = Racing()
    clients = AsyncClients(session, fast_policy())
    await clients.get("sqs")
    opening = asyncio.create_task(clients.get("events", "eu-west-1"))
    await asyncio.sleep(0)  # inside the client's __aenter__
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    await clients.get("events", "us-east-1")
    session.hold = asyncio.Event()  # never set: the close waits until it is cancelled
    closing = asyncio.create_task(clients.aclose())
    await session.holding.wait()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert session.opened == [("sqs", None), ("events", "us-east-1")]
    assert session.closed == session.opened[::-1]  # the one cancelled in its close as well


async def test_tasks_racing_for_a_client_share_one_and_it_is_closed_once() -> None:
    clients = AsyncClients(Racing(), fast_policy())
    got = await asyncio.gather(*(clients.get("events", "eu-west-1") for _ in range(4)))
    other = await clients.get("events", "us-east-1")
    assert len({id(c) for c in got}) == 1 and other is not got[0]
    await clients.aclose()
    session = clients.session
    assert session.opened == [("events", "eu-west-1"), ("events", "us-east-1")]
    assert session.closed == session.opened[::-1]


# -- abatch_get: what a cancelled or failing read leaves behind -------------------------------


class Hanging:
    """An async DynamoDB client whose ``operation`` never answers until cancelled; the others
    are refused as a test failure."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.started = asyncio.Event()
        self.cancelled = 0

    def __getattr__(self, method: str) -> Any:
        if method != self.operation:
            raise AssertionError(f"{method} called")

        async def call(**_: Any) -> Any:
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

        return call


async def test_a_read_cancelled_in_its_describe_table_sends_nothing_and_leaves_no_task() -> None:
    client = Hanging("describe_table")
    read = asyncio.create_task(abatch_get("t", [{"pk": "a"}], client=client))
    await client.started.wait()
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    assert client.cancelled == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_keys_that_raise_midway_send_nothing_and_leave_no_task() -> None:
    class BrokenSourceError(Exception):
        pass

    async def keys() -> AsyncIterator[dict[str, Any]]:
        for i in range(250):
            yield {"pk": f"p{i}"}
        raise BrokenSourceError

    client = Hanging("nothing")  # any request is a test failure
    with pytest.raises(BrokenSourceError):
        await abatch_get("t", keys(), client=client, key="pk", concurrency=8)
    # a key missing its range attribute is named, before anything is sent
    with pytest.raises(InvalidKeyError, match=r"t\[pk=p1,sk=None\].*'sk' is missing"):
        await abatch_get(
            "t", [{"pk": "p0", "sk": 0}, {"pk": "p1"}], client=client, key=("pk", "sk")
        )
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_binary_keys_under_chaos_at_concurrency_8_are_read_as_the_sync_read_reads_them(
    moto_server: MotoServer, aio_ddb: Any
) -> None:
    present = [(f"p{i % 5}", bytes([i % 256, 0, 255 - i % 256])) for i in range(240)]
    table = table_of(moto_server, "B", present)
    wanted: list[dict[str, Any]] = [{"pk": pk, "sk": sk} for pk, sk in present]
    wanted += [{"pk": "p0", "sk": bytearray(b"absent-%d" % i)} for i in range(30)]
    wanted += [{"pk": pk, "sk": bytearray(sk)} for pk, sk in present[:20]]  # the same keys
    seed = 0
    while True:
        seed += 1
        with Chaos(aio_ddb, partial=0.3, throttle=0.2, error5xx=0.1, seed=seed) as hit:
            got = await abatch_get(
                table,
                wanted,
                client=aio_ddb,
                concurrency=8,
                keep_order=True,
                policy=FakeClock(seed=seed).policy(),
            )
        assert (got.submitted, got.deduplicated, got.succeeded, got.failed) == (290, 20, 270, [])
        assert [(i["pk"], bytes(i["sk"])) for i in got.items] == present
        assert len(got.missing) == 30 and balanced(got)
        if hit.stats.withheld_entries and hit.stats.throttled and hit.stats.errors_5xx:
            break
    same = batch_get(table, wanted, client=moto_server.client("dynamodb"), keep_order=True)
    assert (same.items, same.missing) == (got.items, got.missing)


# -- the redrives: closing the clients a run opened ------------------------------------------


class FailingToClose(Opening):
    """:class:`Opening`, whose clients raise once closed (an HTTP session that fails to
    close)."""

    def create_client(self, service: str, region_name: str | None = None, **options: Any) -> Any:
        context = super().create_client(service, region_name, **options)

        class Client:
            async def __aenter__(self) -> Any:
                return await context.__aenter__()

            async def __aexit__(self, *exc_info: Any) -> None:
                await context.__aexit__(*exc_info)
                raise OSError("the connector failed to close")

        return Client()


async def test_a_client_that_fails_to_close_replaces_neither_the_report_nor_a_cancellation(
    moto_server: MotoServer, lambda_without_docker: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    sqs = moto_server.client("sqs")
    _, rule_arn, delivered = bus_to_queue(moto_server)
    dlq, _ = new_queue(sqs, name("review-close"))
    put_dead_events(sqs, dlq, rule_arn, range(5))
    session = FailingToClose(moto_server)
    report = await aredrive_eventbridge(dlq, session=session, policy=fast_policy(), wait_time_s=0)
    assert report.moved == 5 and numbers_in(sqs, delivered) == Counter(range(5))
    assert sorted(session.closed, key=str) == [("events", "us-east-1"), ("sqs", None)]
    assert "the connector failed to close" in caplog.text  # said, not raised

    url, _ = new_queue(sqs, name("review-close-fn"))
    put_failure_records(sqs, url, make_function(moto_server, name("fn")), range(5))
    first_invoke = CancelAt(None, at=1)
    session = FailingToClose(moto_server, cut={"lambda": first_invoke})
    run = asyncio.get_running_loop().create_task(
        aredrive_lambda(url, session=session, policy=fast_policy(), wait_time_s=0)
    )
    first_invoke.task = run
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(session.closed, key=str) == [("lambda", "us-east-1"), ("sqs", None)]


# -- the redrives: what a reason says --------------------------------------------------------

SECRET = "card-4111111111111111"


class RefusingPayloads:
    """A Lambda client (sync or async) that refuses every payload as Lambda refuses one that is
    not JSON: with a message that quotes it."""

    def __init__(self, client: Any, is_async: bool) -> None:
        self.client = client
        self.is_async = is_async

    def __getattr__(self, method: str) -> Any:
        return getattr(self.client, method)

    def refuse(self, Payload: bytes, **_: Any) -> Any:  # noqa: N803 (the API's name)
        text = Payload.decode()
        message = (
            f"Could not parse request body into json: Could not parse payload into json: "
            f"Unrecognized token '{text}': was expecting ('true', 'false' or 'null')\n at "
            f'[Source: (byte[])"{text}"; line: 1, column: {len(text)}]'
        )
        raise ClientError(
            {"Error": {"Code": "InvalidRequestContentException", "Message": message}}, "Invoke"
        )

    def invoke(self, **params: Any) -> Any:
        if not self.is_async:
            return self.refuse(**params)

        async def refused() -> Any:
            return self.refuse(**params)

        return refused()


async def test_a_refused_invocation_is_reported_without_its_payload(
    moto_server: MotoServer, aio_sqs: Any, aio_lambda: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sqs, lam = moto_server.client("sqs"), moto_server.client("lambda")
    function = make_function(moto_server, name("fn"))
    reports = []
    for driver in ("sync", "async"):
        url, _ = new_queue(sqs, name("review-secret"))
        sqs.send_message(  # a Lambda DLQ message whose event is not JSON
            QueueUrl=url,
            MessageBody=SECRET,
            MessageAttributes={"RequestID": {"DataType": "String", "StringValue": "r-1"}},
        )
        options: dict[str, Any] = dict(function_name=function, wait_time_s=0, concurrency=1)
        if driver == "sync":
            lambda_client = RefusingPayloads(lam, is_async=False)
            report = redrive_lambda(url, client=sqs, lambda_client=lambda_client, **options)
        else:
            lambda_client = RefusingPayloads(aio_lambda, is_async=True)
            report = await aredrive_lambda(
                url, client=aio_sqs, lambda_client=lambda_client, **options
            )
        [reason] = report.failed.values()
        assert reason.startswith("InvalidRequestContentException:"), reason
        reports.append((report.received, report.moved, reason))
    assert reports[0] == reports[1]
    assert SECRET not in str(reports) and SECRET not in caplog.text
    # botocore's own refusal of a parameter quotes its value too
    refused = ParamValidationError(report=f"Invalid type for parameter Payload, value: {SECRET}")
    assert error_text(refused) == (
        "ParamValidationError: Parameter validation failed (values not shown): Payload"
    )
