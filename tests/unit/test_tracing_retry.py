"""The retry core's spans: one per call, one per attempt once an attempt failed, the retry
events on the call's span; the same for ``acall``, ``@retry`` and ``run_partial``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from resilient_aws import tracing
from resilient_aws.errors import AttemptsExhaustedError
from resilient_aws.retry import FailedEntry, SendResult, arun_partial, retry, run_partial
from resilient_aws.retry._run import span_identity
from resilient_aws.testing import FakeClock

KEY = {"pk": {"S": "order-1"}}
RPC = {
    "aws.operation": "GetItem",
    "rpc.system": "aws-api",
    "rpc.service": "DynamoDB",
    "rpc.method": "GetItem",
}


@pytest.fixture
def dynamodb() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stubber:
        yield client, stubber


def throttle(stubber: Stubber, times: int) -> None:
    for _ in range(times):
        stubber.add_client_error(
            "get_item", "ThrottlingException", "card 4111 was throttled", http_status_code=400
        )


def events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [(event.name, dict(event.attributes or {})) for event in span.events]


def attempt_numbers(spans: tuple[ReadableSpan, ...]) -> list[Any]:
    return [dict(s.attributes or {}).get("resilient_aws.attempt") for s in spans]


def test_a_throttled_call_reads_as_its_attempts_and_the_backoff_between_them(
    exporter: InMemorySpanExporter, dynamodb: tuple[Any, Stubber]
) -> None:
    client, stubber = dynamodb
    throttle(stubber, 2)
    stubber.add_response("get_item", {"Item": KEY})
    clock = FakeClock()
    with tracing.span("handler"):
        assert clock.policy().call(client.get_item, TableName="orders", Key=KEY) == {"Item": KEY}
    *attempts, call, handler = exporter.get_finished_spans()
    assert [s.name for s in attempts] == ["DynamoDB.GetItem attempt"] * 3
    assert call.name == "DynamoDB.GetItem"
    assert dict(call.attributes or {}) == {**RPC, "resilient_aws.attempts": 3}
    assert call.parent is not None and call.parent.span_id == handler.context.span_id
    for number, span in enumerate(attempts, 1):
        assert span.parent is not None and span.parent.span_id == call.context.span_id
        expected = {**RPC, "resilient_aws.attempt": number}
        if number < 3:
            expected["error.type"] = "ThrottlingException"
            assert span.status.status_code is StatusCode.ERROR
        else:
            assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {}) == expected
    # the attempts follow one another, the gaps between them being the backoff
    assert attempts[0].start_time <= attempts[0].end_time <= attempts[1].start_time
    assert call.start_time <= attempts[0].start_time
    assert attempts[2].end_time <= call.end_time
    assert events(call) == [
        (
            "retry",
            {
                "resilient_aws.operation": "get_item",
                "resilient_aws.attempt": 1,
                "error.type": "ThrottlingException",
                "resilient_aws.retry.delay_s": clock.slept[0],
            },
        ),
        (
            "retry",
            {
                "resilient_aws.operation": "get_item",
                "resilient_aws.attempt": 2,
                "error.type": "ThrottlingException",
                "resilient_aws.retry.delay_s": clock.slept[1],
            },
        ),
        (
            "recovered",
            {
                "resilient_aws.operation": "get_item",
                "resilient_aws.attempt": 3,
                "error.type": "ThrottlingException",
            },
        ),
    ]
    assert call.status.status_code is StatusCode.UNSET
    assert "4111" not in "".join(s.to_json() for s in exporter.get_finished_spans())


def test_a_healthy_call_is_one_span(
    exporter: InMemorySpanExporter, dynamodb: tuple[Any, Stubber]
) -> None:
    client, stubber = dynamodb
    stubber.add_response("get_item", {})
    FakeClock().policy().call(client.get_item, TableName="orders", Key=KEY)
    (call,) = exporter.get_finished_spans()
    assert call.name == "DynamoDB.GetItem"
    assert dict(call.attributes or {}) == {**RPC, "resilient_aws.attempts": 1}
    assert call.events == ()


def test_a_call_that_gives_up_says_why(
    exporter: InMemorySpanExporter, dynamodb: tuple[Any, Stubber]
) -> None:
    client, stubber = dynamodb
    throttle(stubber, 3)
    with pytest.raises(AttemptsExhaustedError):
        FakeClock().policy(max_attempts=3).call(client.get_item, TableName="orders", Key=KEY)
    *attempts, call = exporter.get_finished_spans()
    assert attempt_numbers(attempts) == [1, 2, 3]
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
    assert call.status.status_code is StatusCode.ERROR
    assert dict(call.attributes or {})["error.type"] == "AttemptsExhaustedError"
    assert dict(call.attributes or {})["resilient_aws.attempts"] == 3
    assert [name for name, _ in events(call)] == ["retry", "retry", "give_up"]
    assert events(call)[-1][1]["resilient_aws.retry.reason"] == "attempts"


def test_a_permanent_error_is_the_call_and_its_one_attempt(
    exporter: InMemorySpanExporter, dynamodb: tuple[Any, Stubber]
) -> None:
    client, stubber = dynamodb
    stubber.add_client_error("get_item", "ValidationException", http_status_code=400)
    with pytest.raises(ClientError):
        FakeClock().policy().call(client.get_item, TableName="orders", Key=KEY)
    attempt, call = exporter.get_finished_spans()
    assert attempt.name == "DynamoDB.GetItem attempt"
    assert dict(attempt.attributes or {})["error.type"] == "ValidationException"
    assert dict(call.attributes or {})["error.type"] == "ValidationException"
    assert dict(call.attributes or {})["resilient_aws.attempts"] == 1
    assert call.events == ()


def test_an_interrupted_first_attempt_is_recorded_too(exporter: InMemorySpanExporter) -> None:
    def charge() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        FakeClock().policy().call(charge)
    attempt, call = exporter.get_finished_spans()
    assert (attempt.name, call.name) == ("charge attempt", "charge")
    assert dict(attempt.attributes or {}) == {
        "aws.operation": "charge",
        "resilient_aws.attempt": 1,
        "error.type": "KeyboardInterrupt",
    }


async def test_acall_and_the_decorator_trace_alike(exporter: InMemorySpanExporter) -> None:
    failures = [ClientError({"Error": {"Code": "Throttling"}}, "Charge")]

    @retry(FakeClock().policy())
    async def charge(order: str) -> str:
        if failures:
            raise failures.pop()
        return order

    assert await charge("o-1") == "o-1"
    first, second, call = exporter.get_finished_spans()
    assert (first.name, second.name, call.name) == ("charge attempt", "charge attempt", "charge")
    assert attempt_numbers((first, second)) == [1, 2]
    assert dict(first.attributes or {})["error.type"] == "Throttling"
    assert "error.type" not in dict(second.attributes or {})
    assert dict(call.attributes or {}) == {"aws.operation": "charge", "resilient_aws.attempts": 2}
    assert [name for name, _ in events(call)] == ["retry", "recovered"]
    exporter.clear()
    assert await charge("o-2") == "o-2"
    (healthy,) = exporter.get_finished_spans()
    assert dict(healthy.attributes or {})["resilient_aws.attempts"] == 1


async def test_an_async_permanent_error_is_the_call_and_its_one_attempt(
    exporter: InMemorySpanExporter,
) -> None:
    async def charge() -> None:
        raise ValueError("declined")

    with pytest.raises(ValueError, match="declined"):
        await FakeClock().policy().acall(charge)
    attempt, call = exporter.get_finished_spans()
    assert dict(attempt.attributes or {})["error.type"] == "ValueError"
    assert dict(call.attributes or {})["error.type"] == "ValueError"


def test_a_sync_decorated_function_is_traced(exporter: InMemorySpanExporter) -> None:
    @retry(FakeClock().policy())
    def load() -> int:
        return 1

    assert load() == 1
    assert [s.name for s in exporter.get_finished_spans()] == ["load"]


def test_a_resource_method_is_named_by_its_service() -> None:
    table = boto3.resource(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).Table("orders")
    name, attributes = span_identity(table.put_item)
    assert name == "DynamoDB.PutItem"
    assert attributes["rpc.method"] == "PutItem"
    assert span_identity(len) == ("len", {"aws.operation": "len"})

    class Client:
        meta = type("Meta", (), {"method_to_api_mapping": {}, "service_model": None})()

        def get(self) -> None:
            return None

    assert span_identity(Client().get) == ("get", {"aws.operation": "get"})


def test_tracing_off_leaves_the_core_as_it_was(dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = dynamodb
    throttle(stubber, 1)
    stubber.add_response("get_item", {})
    tracing.set_tracer_provider(None)
    clock = FakeClock()
    assert clock.policy().call(client.get_item, TableName="orders", Key=KEY) == {}
    assert len(clock.slept) == 1


# -- run_partial ---------------------------------------------------------------------------------


def _sender(rounds: list[set[str]]) -> Any:
    """A send that fails, in round ``i``, the entries named in ``rounds[i]`` (retryable)."""

    def send(batch: list[str]) -> SendResult[str]:
        failing = rounds.pop(0) if rounds else set()
        return SendResult(
            [FailedEntry(e, e, "InternalError", "x", retryable=True) for e in batch if e in failing]
        )

    return send


def test_run_partial_shows_each_request_once_one_failed(exporter: InMemorySpanExporter) -> None:
    entries = ["a", "b", "c"]
    outcome = run_partial(
        FakeClock().policy(),
        _sender([{"a", "b"}, {"b"}]),
        entries,
        entry_id=str,
        operation="PutRecords",
    )
    assert outcome.ok
    *requests, run = exporter.get_finished_spans()
    assert [s.name for s in requests] == ["PutRecords attempt"] * 3
    assert [dict(s.attributes or {}) for s in requests] == [
        {
            "aws.operation": "PutRecords",
            "resilient_aws.attempt": 1,
            "resilient_aws.entries": 3,
            "resilient_aws.failed": 2,
        },
        {
            "aws.operation": "PutRecords",
            "resilient_aws.attempt": 2,
            "resilient_aws.entries": 2,
            "resilient_aws.failed": 1,
        },
        {
            "aws.operation": "PutRecords",
            "resilient_aws.attempt": 3,
            "resilient_aws.entries": 1,
            "resilient_aws.failed": 0,
        },
    ]
    assert dict(run.attributes or {}) == {
        "aws.operation": "PutRecords",
        "resilient_aws.entries": 3,
        "resilient_aws.attempts": 3,
        "resilient_aws.failed": 0,
    }
    assert [name for name, _ in events(run)] == [
        "partial_failure",
        "retry",
        "partial_failure",
        "retry",
        "recovered",
    ]
    assert all(r.parent is not None and r.parent.span_id == run.context.span_id for r in requests)


def test_run_partial_that_succeeds_at_once_is_one_span(exporter: InMemorySpanExporter) -> None:
    run_partial(FakeClock().policy(), _sender([]), ["a"], entry_id=str, operation="PutRecords")
    (run,) = exporter.get_finished_spans()
    assert dict(run.attributes or {})["resilient_aws.attempts"] == 1


def test_run_partial_whose_request_raises(exporter: InMemorySpanExporter) -> None:
    def send(batch: list[str]) -> list[FailedEntry[str]]:
        raise ClientError({"Error": {"Code": "AccessDenied"}}, "PutRecords")

    outcome = run_partial(
        FakeClock().policy(), send, ["a", "b"], entry_id=str, operation="PutRecords"
    )
    assert len(outcome.failed) == 2
    attempt, run = exporter.get_finished_spans()
    assert dict(attempt.attributes or {})["error.type"] == "AccessDenied"
    assert dict(run.attributes or {})["resilient_aws.failed"] == 2


async def test_arun_partial_traces_alike(exporter: InMemorySpanExporter) -> None:
    sync_send = _sender([{"b"}])

    async def send(batch: list[str]) -> SendResult[str]:
        return sync_send(batch)  # type: ignore[no-any-return]

    outcome = await arun_partial(
        FakeClock().policy(), send, ["a", "b"], entry_id=str, operation="SendMessageBatch"
    )
    assert outcome.ok
    first, second, run = exporter.get_finished_spans()
    assert attempt_numbers((first, second)) == [1, 2]
    assert dict(first.attributes or {})["resilient_aws.failed"] == 1
    assert dict(second.attributes or {})["resilient_aws.failed"] == 0
    assert dict(run.attributes or {})["resilient_aws.attempts"] == 2
    exporter.clear()

    async def broken(batch: list[str]) -> list[FailedEntry[str]]:
        raise ClientError({"Error": {"Code": "AccessDenied"}}, "SendMessageBatch")

    failed = await arun_partial(
        FakeClock().policy(), broken, ["a"], entry_id=str, operation="SendMessageBatch"
    )
    assert len(failed.failed) == 1
    attempt, run = exporter.get_finished_spans()
    assert dict(attempt.attributes or {})["error.type"] == "AccessDenied"
    exporter.clear()
    healthy = await arun_partial(
        FakeClock().policy(), send, ["c"], entry_id=str, operation="SendMessageBatch"
    )
    assert healthy.ok
    assert [s.name for s in exporter.get_finished_spans()] == ["SendMessageBatch"]
