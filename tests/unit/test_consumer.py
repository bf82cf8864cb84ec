"""resilient_aws.consumer without AWS: what each source reports, and what it never loses."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError

from resilient_aws.consumer import (
    NOT_PROCESSED,
    PRECEDING_RECORD_FAILED,
    BatchProcessor,
    DynamoDBStreamRecord,
    KinesisStreamRecord,
    SQSRecord,
    VisibilityBackoff,
    process_partial_response,
)
from resilient_aws.errors import ConfigurationError, EntryValidationError
from resilient_aws.retry import RetryEvent
from resilient_aws.testing import FakeClock, FakeLambdaContext

ARN = "arn:aws:sqs:us-east-1:123456789012:orders"


def sqs_event(n: int, *, fifo_groups: list[str] | None = None, arn: str = ARN) -> dict[str, Any]:
    records = []
    for i in range(n):
        attributes: dict[str, Any] = {"ApproximateReceiveCount": "1"}
        if fifo_groups is not None:
            attributes["MessageGroupId"] = fifo_groups[i]
        records.append(
            {
                "messageId": f"m-{i}",
                "receiptHandle": f"rh-{i}",
                "body": json.dumps({"n": i}),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn + (".fifo" if fifo_groups is not None else ""),
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def kinesis_event(n: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": "k",
                    "sequenceNumber": f"4959{i:04d}",
                    "data": base64.b64encode(json.dumps({"n": i}).encode()).decode(),
                    "approximateArrivalTimestamp": 1_700_000_000.0,
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000:4959{i:04d}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks",
            }
            for i in range(n)
        ]
    }


def dynamodb_event(n: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventID": f"e{i}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "Keys": {"pk": {"S": f"order#{i}"}},
                    "NewImage": {"pk": {"S": f"order#{i}"}, "n": {"N": str(i)}},
                    "SequenceNumber": f"{100 + i}",
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
            for i in range(n)
        ]
    }


def n_of(record: Any) -> int:
    if isinstance(record, SQSRecord):
        return int(record.json_body["n"])
    if isinstance(record, KinesisStreamRecord):
        return int(record.kinesis.data_as_json()["n"])
    assert isinstance(record, DynamoDBStreamRecord)
    return int(record.dynamodb.new_image["n"])  # type: ignore[index]


def failing_at(*bad: int, seen: list[int] | None = None) -> Any:
    def record_function(record: Any) -> None:
        n = n_of(record)
        if seen is not None:
            seen.append(n)
        if n in bad:
            raise ValueError(f"record {n} is bad")

    return record_function


def ids(response: dict[str, Any]) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


LIGHT = BatchProcessor(records="light")


# -- the three sources ----------------------------------------------------------------------------


def test_sqs_reports_exactly_the_records_that_failed() -> None:
    seen: list[int] = []
    batch = LIGHT.process(sqs_event(10), failing_at(3, 7, seen=seen))
    assert ids(batch.response) == ["m-3", "m-7"]
    assert seen == list(range(10))
    assert (batch.total, batch.succeeded) == (10, 8)
    assert [f.code for f in batch.failed] == ["ValueError", "ValueError"]
    assert all(isinstance(f.error, ValueError) for f in batch.failed)


def test_kinesis_stops_at_the_first_failure_and_reports_the_rest() -> None:
    seen: list[int] = []
    response = process_partial_response(kinesis_event(10), failing_at(4, seen=seen), LIGHT)
    assert ids(response) == [f"4959{i:04d}" for i in range(4, 10)]
    assert seen == [0, 1, 2, 3, 4]  # nothing after the failure ran


def test_dynamodb_streams_stop_at_the_first_failure() -> None:
    seen: list[int] = []
    batch = LIGHT.process(dynamodb_event(6), failing_at(2, seen=seen))
    assert ids(batch.response) == ["102", "103", "104", "105"]
    assert [f.code for f in batch.failed] == ["ValueError"] + [PRECEDING_RECORD_FAILED] * 3
    assert seen == [0, 1, 2]


def test_streams_unordered_report_only_the_failures() -> None:
    processor = BatchProcessor(ordered=False, records="light")
    assert ids(processor.process(kinesis_event(6), failing_at(1, 4)).response) == [
        "49590001",
        "49590004",
    ]


def test_fifo_skips_the_rest_of_the_failed_group_only() -> None:
    groups = ["a", "b", "a", "b", "a", "b", "a", "b"]
    seen: list[int] = []
    batch = LIGHT.process(sqs_event(8, fifo_groups=groups), failing_at(2, seen=seen))
    # a: 0 ok, 2 fails, 4 and 6 skipped; b: every record runs
    assert ids(batch.response) == ["m-2", "m-4", "m-6"]
    assert seen == [0, 1, 2, 3, 5, 7]
    assert [f.code for f in batch.failed] == ["ValueError", PRECEDING_RECORD_FAILED] * 1 + [
        PRECEDING_RECORD_FAILED
    ]


def test_a_standard_queue_can_be_made_to_stop_at_its_first_failure() -> None:
    processor = BatchProcessor(ordered=True, records="light")
    assert ids(processor.process(sqs_event(5), failing_at(1)).response) == [
        "m-1",
        "m-2",
        "m-3",
        "m-4",
    ]


def test_a_batch_that_all_fails_is_answered_not_raised() -> None:
    batch = LIGHT.process(sqs_event(3), failing_at(0, 1, 2))
    assert batch.all_failed
    assert ids(batch.response) == ["m-0", "m-1", "m-2"]


def test_an_empty_batch_has_nothing_to_report() -> None:
    assert LIGHT.process({"Records": []}, failing_at()).response == {"batchItemFailures": []}


def test_base_exceptions_are_not_swallowed() -> None:
    def interrupted(record: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        LIGHT.process(sqs_event(2), interrupted)


# -- the deadline -----------------------------------------------------------------------------


def test_records_are_not_started_when_the_invocation_is_about_to_end() -> None:
    clock = FakeClock()
    context = FakeLambdaContext(timeout_s=0.3, clock=clock.monotonic)
    processor = BatchProcessor(margin_s=0.05, clock=clock.monotonic, records="light")
    seen: list[int] = []

    def slow(record: Any) -> None:
        seen.append(n_of(record))
        clock.advance(0.1)

    batch = processor.process(sqs_event(10), slow, context)
    assert seen == [0, 1]  # a third would end at 0.3 s, past the 0.25 s deadline
    assert ids(batch.response) == [f"m-{i}" for i in range(2, 10)]
    assert {f.code for f in batch.failed} == {NOT_PROCESSED}
    assert context.get_remaining_time_in_millis() >= 50  # returned with the margin left


def test_the_deadline_cut_on_a_stream_reports_everything_from_the_cut() -> None:
    clock = FakeClock()
    context = FakeLambdaContext(timeout_s=1.0, clock=clock.monotonic)
    processor = BatchProcessor(margin_s=0.0, clock=clock.monotonic, records="light")

    def slow(record: Any) -> None:
        clock.advance(0.3)

    batch = processor.process(kinesis_event(5), slow, context)
    assert ids(batch.response) == ["49590003", "49590004"]


def test_without_a_context_there_is_no_cut() -> None:
    clock = FakeClock()
    processor = BatchProcessor(clock=clock.monotonic, records="light")
    batch = processor.process(sqs_event(5), lambda record: clock.advance(100))
    assert batch.response == {"batchItemFailures": []}


# -- per-record retries through the core -----------------------------------------------------


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutItem")


def test_retryable_errors_are_retried_through_the_policy() -> None:
    clock = FakeClock()
    processor = BatchProcessor(policy=clock.policy(max_attempts=3), records="light")
    fails = {"m-1": 2, "m-2": 5}

    def flaky(record: SQSRecord) -> None:
        if fails.get(record.message_id, 0) > 0:
            fails[record.message_id] -= 1
            raise throttled()

    batch = processor.process(sqs_event(3), flaky)
    assert ids(batch.response) == ["m-2"]  # m-1 recovered on its third attempt
    assert batch.failed[0].code == "AttemptsExhaustedError"
    assert len(clock.slept) == 4  # two backoffs for each


def test_the_policy_is_bounded_by_the_invocations_deadline() -> None:
    clock = FakeClock()
    context = FakeLambdaContext(timeout_s=3.0, clock=clock.monotonic)
    policy = clock.policy(max_attempts=50, throttle_base_delay=1.0, max_delay=1.0, jitter="none")
    processor = BatchProcessor(policy=policy, margin_s=1.0, clock=clock.monotonic, records="light")

    def always(record: Any) -> None:
        raise throttled()

    batch = processor.process(sqs_event(2), always, context)
    assert batch.failed[0].code == "DeadlineExceededError"
    assert clock.total_slept < 2.0
    assert ids(batch.response) == ["m-0", "m-1"]


def test_errors_the_core_does_not_retry_fail_at_once() -> None:
    clock = FakeClock()
    processor = BatchProcessor(policy=clock.policy(), records="light")
    batch = processor.process(sqs_event(2), failing_at(0))
    assert ids(batch.response) == ["m-0"]
    assert clock.slept == []


# -- the record function ----------------------------------------------------------------------


def test_the_context_is_passed_to_a_function_that_takes_it() -> None:
    context = FakeLambdaContext()
    got: list[Any] = []

    def two(record: Any, lambda_context: Any) -> None:
        got.append(lambda_context)

    def named(record: Any, *, lambda_context: Any = None) -> None:
        got.append(lambda_context)

    LIGHT.process(sqs_event(1), two, context)
    LIGHT.process(sqs_event(1), named, context)
    assert got == [context, context]


def test_the_decorator_makes_a_lambda_handler() -> None:
    @LIGHT.handler
    def handler(record: SQSRecord) -> None:
        """Charge an order."""
        if record.message_id == "m-1":
            raise RuntimeError("no")

    assert handler(sqs_event(3), FakeLambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}]
    }
    assert handler.__name__ == "handler"
    assert handler.__doc__ == "Charge an order."


def test_light_records_speak_powertools_attribute_names() -> None:
    seen: dict[str, Any] = {}

    def look(record: Any) -> None:
        seen[type(record).__name__] = record

    LIGHT.process(sqs_event(1, fifo_groups=["g"]), look)
    LIGHT.process(kinesis_event(1), look)
    LIGHT.process(dynamodb_event(1), look)
    sqs, kinesis, stream = (
        seen["SQSRecord"],
        seen["KinesisStreamRecord"],
        seen["DynamoDBStreamRecord"],
    )
    assert sqs.message_id == "m-0" and sqs.receipt_handle == "rh-0"
    assert sqs.json_body == {"n": 0} and sqs["body"] == '{"n": 0}'
    assert sqs.attributes.message_group_id == "g"
    assert sqs.attributes.approximate_receive_count == "1"
    assert sqs.queue_url == "https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo"
    assert sqs.raw_event["messageId"] == "m-0"
    assert kinesis.kinesis.sequence_number == "49590000"
    assert kinesis.kinesis.data_as_json() == {"n": 0}
    assert kinesis.kinesis.partition_key == "k"
    assert stream.dynamodb.sequence_number == "100"
    assert stream.dynamodb.new_image == {"pk": "order#0", "n": 0}
    assert stream.dynamodb.keys == {"pk": "order#0"}
    assert stream.event_name == "INSERT"
    assert "body" not in repr(sqs) and '"n"' not in repr(sqs)  # reprs never show the payload


def test_raw_records_are_the_events_dicts() -> None:
    got: list[Any] = []
    BatchProcessor(records="raw").process(sqs_event(1), got.append)
    assert got == sqs_event(1)["Records"]


def test_powertools_records_are_powertools_data_classes() -> None:
    pytest.importorskip("aws_lambda_powertools")
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord as Theirs

    got: list[Any] = []
    BatchProcessor(records="powertools").process(sqs_event(1), got.append)
    assert isinstance(got[0], Theirs)
    got.clear()
    BatchProcessor().process(sqs_event(1), got.append)  # auto: Powertools is imported here
    assert isinstance(got[0], Theirs)


def test_one_record_function_serves_powertools_and_this_processor() -> None:
    pytest.importorskip("aws_lambda_powertools")
    from aws_lambda_powertools.utilities.batch import BatchProcessor as TheirProcessor
    from aws_lambda_powertools.utilities.batch import EventType
    from aws_lambda_powertools.utilities.batch import (
        process_partial_response as their_process_partial_response,
    )

    def record_handler(record: Any) -> None:
        if record.json_body["n"] in (3, 7):
            raise ValueError("bad")

    event = sqs_event(10)
    theirs = their_process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=TheirProcessor(event_type=EventType.SQS),
        context=FakeLambdaContext(),
    )
    ours = process_partial_response(event, record_handler, LIGHT, FakeLambdaContext())
    assert ours == theirs == {"batchItemFailures": [{"itemIdentifier": f"m-{i}"} for i in (3, 7)]}


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "named", "says"),
    [
        ("not an event", "event", "must be a dict"),
        ({"records": []}, "event", "no 'Records' list"),
        ({"Records": [{"eventSource": "aws:sqs", "messageId": "a"}, 7]}, "record 1", "dict"),
        ({"Records": [{"eventSource": "aws:sqs", "body": "x"}]}, "record 0", "messageId"),
        ({"Records": [{"eventSource": "aws:sqs", "messageId": ""}]}, "record 0", "messageId"),
        (
            {"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]},
            "record 0",
            "sequenceNumber",
        ),
        ({"Records": [{"eventSource": "aws:kinesis"}]}, "record 0", "'kinesis'"),
        (
            {"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {}}]},
            "record 0",
            "SequenceNumber",
        ),
        ({"Records": [{"eventSource": "aws:s3", "messageId": "a"}]}, "record 0", "aws:s3"),
        ({"Records": [{"messageId": "a"}]}, "record 0", "no eventSource"),
    ],
)
def test_a_malformed_event_is_a_typed_error_naming_the_record(
    event: Any, named: str, says: str
) -> None:
    ran: list[Any] = []
    with pytest.raises(EntryValidationError) as raised:
        LIGHT.process(event, ran.append)
    assert raised.value.entry_id == named
    assert says in str(raised.value)
    assert ran == []  # refused before any record ran


def test_records_of_two_sources_are_refused_before_any_runs() -> None:
    event = {"Records": sqs_event(2)["Records"] + kinesis_event(1)["Records"]}
    ran: list[Any] = []
    with pytest.raises(EntryValidationError, match="record 2"):
        LIGHT.process(event, ran.append)
    assert ran == []


def test_a_fifo_record_without_its_group_is_refused() -> None:
    event = sqs_event(3, fifo_groups=["a", "a", "a"])
    del event["Records"][1]["attributes"]["MessageGroupId"]
    with pytest.raises(EntryValidationError, match=r"record 1.*\(m-1\).*MessageGroupId"):
        LIGHT.process(event, failing_at())


def test_a_declared_source_reads_records_without_event_source() -> None:
    event = kinesis_event(3)
    for record in event["Records"]:
        del record["eventSource"]
    processor = BatchProcessor(source="kinesis", records="light")
    assert ids(processor.process(event, failing_at(1)).response) == ["49590001", "49590002"]
    with pytest.raises(EntryValidationError, match="record 0"):
        BatchProcessor(source="sqs").process(kinesis_event(1), failing_at())


def test_error_messages_never_quote_the_payload() -> None:
    event = sqs_event(1)
    event["Records"][0]["body"] = "SECRET-CARD-NUMBER"
    del event["Records"][0]["messageId"]
    with pytest.raises(EntryValidationError) as raised:
        LIGHT.process(event, failing_at())
    assert "SECRET" not in str(raised.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("source", "s3"),
        ("ordered", "yes"),
        ("margin_s", -1),
        ("margin_s", float("nan")),
        ("concurrency", 0),
        ("records", "pydantic"),
        ("policy", object()),
        ("visibility", 30),
    ],
)
def test_bad_options_are_configuration_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        BatchProcessor(**{option: value})
    assert raised.value.field == option


def test_the_processor_is_immutable() -> None:
    with pytest.raises(AttributeError):
        LIGHT.margin_s = 3  # type: ignore[misc]


# -- logs and metrics -------------------------------------------------------------------------


def test_failures_are_told_to_listeners_per_code_and_logged_by_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[RetryEvent] = []
    processor = BatchProcessor(listeners=(events.append,), records="light")

    def record_function(record: SQSRecord) -> None:
        if record.message_id in ("m-1", "m-2"):
            raise ValueError(record.body)  # an exception quoting the payload

    with caplog.at_level("WARNING", logger="resilient_aws.consumer"):
        processor.process(sqs_event(4), record_function)
    assert [(e.kind, e.operation, e.error_code, e.entries) for e in events] == [
        ("partial_failure", "consume:sqs", "ValueError", 2)
    ]
    assert "m-1 (ValueError), m-2 (ValueError)" in caplog.text
    assert '"n"' not in caplog.text  # never the body, nor the exception's message


# -- async record functions -------------------------------------------------------------------


def test_async_functions_run_with_bounded_concurrency() -> None:
    running, most = [0], [0]

    async def record_function(record: SQSRecord) -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running[0] -= 1
        if record.message_id in ("m-3", "m-7"):
            raise ValueError("bad")

    processor = BatchProcessor(concurrency=3, records="light")
    batch = processor.process(sqs_event(10), record_function)
    assert ids(batch.response) == ["m-3", "m-7"]
    assert most[0] == 3


def test_async_fifo_groups_run_in_order_and_skip_after_a_failure() -> None:
    order: list[int] = []

    async def record_function(record: SQSRecord) -> None:
        n = record.json_body["n"]
        await asyncio.sleep(0)
        order.append(n)
        if n == 2:
            raise ValueError("bad")

    groups = ["a", "b", "a", "b", "a", "b"]
    batch = LIGHT.process(sqs_event(6, fifo_groups=groups), record_function)
    assert ids(batch.response) == ["m-2", "m-4"]
    assert [n for n in order if n % 2 == 0] == [0, 2]
    assert [n for n in order if n % 2 == 1] == [1, 3, 5]


def test_async_streams_stay_in_order() -> None:
    order: list[int] = []

    async def record_function(record: KinesisStreamRecord) -> None:
        await asyncio.sleep(0)
        n = record.kinesis.data_as_json()["n"]
        order.append(n)
        if n == 4:
            raise ValueError("bad")

    batch = BatchProcessor(concurrency=10, records="light").process(
        kinesis_event(8), record_function
    )
    assert order == [0, 1, 2, 3, 4]
    assert len(batch.failed) == 4


def test_async_records_are_cut_at_the_deadline() -> None:
    clock = FakeClock()
    context = FakeLambdaContext(timeout_s=0.3, clock=clock.monotonic)
    processor = BatchProcessor(margin_s=0.05, clock=clock.monotonic, concurrency=1, records="light")

    async def slow(record: Any) -> None:
        clock.advance(0.1)

    batch = processor.process(sqs_event(10), slow, context)
    assert batch.succeeded == 2
    assert {f.code for f in batch.failed} == {NOT_PROCESSED}
    assert len(batch.failed) == 8


def test_async_retries_go_through_the_policy() -> None:
    clock = FakeClock()
    fails = [throttled(), throttled()]

    async def flaky(record: Any) -> None:
        if fails:
            raise fails.pop()

    processor = BatchProcessor(policy=clock.policy(max_attempts=5), records="light")
    assert processor.process(sqs_event(1), flaky).response == {"batchItemFailures": []}
    assert len(clock.slept) == 2


async def test_aprocess_runs_in_a_running_loop() -> None:
    async def record_function(record: Any) -> None:
        if record.message_id == "m-0":
            raise ValueError("bad")

    batch = await LIGHT.aprocess(sqs_event(2), record_function)
    assert ids(batch.response) == ["m-0"]
    with pytest.raises(RuntimeError, match="aprocess"):
        LIGHT.process(sqs_event(1), record_function)


# -- visibility backoff arithmetic ------------------------------------------------------------


def test_visibility_grows_with_the_receive_count_up_to_the_cap() -> None:
    backoff = VisibilityBackoff(base_s=10, max_s=60, jitter="none")
    assert [backoff.timeout_for(n) for n in (1, 2, 3, 4, 5, 9)] == [10, 20, 40, 60, 60, 60]
    equal = VisibilityBackoff(base_s=10, max_s=60)
    import random

    seeded = VisibilityBackoff(base_s=10, max_s=60, rng=random.Random(1))
    for n in range(1, 8):
        ceiling = min(60, 10 * 2 ** (n - 1))
        assert ceiling / 2 <= equal.timeout_for(n) <= ceiling
        assert ceiling / 2 <= seeded.timeout_for(n) <= ceiling


@pytest.mark.parametrize(
    ("option", "value"),
    [("base_s", -1), ("max_s", 50_000), ("jitter", "lots"), ("base_s", float("inf"))],
)
def test_bad_visibility_options_are_configuration_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        VisibilityBackoff(**{option: value})
    assert raised.value.field == option


def test_a_standard_queues_fair_groups_order_nothing() -> None:
    event = sqs_event(4, fifo_groups=["a", "a", "a", "a"])
    for record in event["Records"]:
        record["eventSourceARN"] = ARN  # a standard queue: groups are for fairness only
    assert ids(LIGHT.process(event, failing_at(1)).response) == ["m-1"]


def test_fifo_messages_skipped_behind_a_failure_take_its_visibility() -> None:
    calls: list[tuple[list[tuple[str, Any]], dict[str, str] | None]] = []

    class Recording(VisibilityBackoff):
        def apply(self, failed: Any, deadline: Any, *, follow: Any = None) -> dict[str, int]:
            calls.append(([m for m, _ in failed], follow))
            return {}

    processor = BatchProcessor(visibility=Recording(), records="light")
    processor.process(sqs_event(6, fifo_groups=list("ababab")), failing_at(2))
    assert calls == [(["m-2", "m-4"], {"m-4": "m-2"})]


# -- found in review: every record succeeds or is reported, whatever goes wrong around it ------


class _AsyncCallable:
    """A record function object with an ``async def __call__`` (not a coroutine function)."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, record: SQSRecord) -> None:
        await asyncio.sleep(0)
        self.ran.append(record.message_id)
        raise ValueError("always fails")


def test_an_async_callable_object_runs_and_its_failures_are_reported() -> None:
    handler = _AsyncCallable()
    batch = LIGHT.process(sqs_event(2), handler)
    assert handler.ran == ["m-0", "m-1"]  # awaited, not dropped as a never-awaited coroutine
    assert ids(batch.response) == ["m-0", "m-1"]


async def test_an_async_callable_object_runs_under_aprocess() -> None:
    handler = _AsyncCallable()
    batch = await LIGHT.aprocess(sqs_event(2), handler)
    assert ids(batch.response) == ["m-0", "m-1"]


def test_a_sync_function_returning_a_coroutine_is_not_a_silent_success() -> None:
    async def fails(record: Any) -> None:
        raise ValueError("bad")

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "coroutine was never awaited"
        batch = LIGHT.process(sqs_event(2), lambda record: fails(record))
    assert ids(batch.response) == ["m-0", "m-1"]
    assert {f.code for f in batch.failed} == {"TypeError"}


async def test_under_aprocess_a_returned_awaitable_is_awaited() -> None:
    async def fails(record: Any) -> None:
        if record.message_id == "m-1":
            raise ValueError("bad")

    batch = await LIGHT.aprocess(sqs_event(2), lambda record: fails(record))
    assert ids(batch.response) == ["m-1"]


def test_an_error_whose_code_cannot_be_read_is_still_reported() -> None:
    class OddError(Exception):
        response: ClassVar[dict[str, Any]] = {"Error": None}  # not botocore's response

    class WorseError(Exception):
        @property
        def response(self) -> Any:
            raise RuntimeError("no response")

    def record_function(record: SQSRecord) -> None:
        raise (OddError if record.message_id == "m-0" else WorseError)()

    batch = LIGHT.process(sqs_event(3), record_function)
    assert ids(batch.response) == ["m-0", "m-1", "m-2"]
    assert [f.code for f in batch.failed] == ["OddError", "WorseError", "WorseError"]


def test_a_broken_log_filter_does_not_lose_the_response() -> None:
    import logging

    class Broken(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("broken filter")

    events: list[RetryEvent] = []
    broken = Broken()
    consumer_logger = logging.getLogger("resilient_aws.consumer")
    consumer_logger.addFilter(broken)
    try:
        batch = BatchProcessor(listeners=(events.append,), records="light").process(
            sqs_event(3), failing_at(1)
        )
    finally:
        consumer_logger.removeFilter(broken)
    assert ids(batch.response) == ["m-1"]
    assert [e.entries for e in events] == [1]  # the metrics still went out


def test_a_failing_visibility_call_never_crashes_the_response() -> None:
    class Broken:
        def change_message_visibility_batch(self, **kwargs: Any) -> Any:
            raise RuntimeError("a bug in the client stack")

    processor = BatchProcessor(
        visibility=VisibilityBackoff(client=Broken(), queue_url="https://sqs.example/1/q"),
        records="light",
    )
    batch = processor.process(sqs_event(3), failing_at(0, 2))
    assert ids(batch.response) == ["m-0", "m-2"]  # still reported, not turned into successes
    assert batch.visibility == {}


def test_async_a_cancelled_await_inside_a_record_is_that_records_failure() -> None:
    async def record_function(record: SQSRecord) -> None:
        await asyncio.sleep(0)
        if record.message_id == "m-1":
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            await future  # raises CancelledError: this record failed, not the invocation

    batch = LIGHT.process(sqs_event(3), record_function)
    assert ids(batch.response) == ["m-1"]
    assert batch.failed[0].code == "CancelledError"


def test_async_an_interrupt_leaves_no_record_running_into_the_next_invocation() -> None:
    ran: list[str] = []

    async def record_function(record: SQSRecord) -> None:
        if record.message_id == "m-0":
            raise KeyboardInterrupt
        for _ in range(3):
            await asyncio.sleep(0)
        ran.append(record.message_id)

    with pytest.raises(KeyboardInterrupt):
        LIGHT.process(sqs_event(4), record_function)

    async def next_invocation(record: Any) -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    try:
        batch = LIGHT.process(sqs_event(1), next_invocation)  # the same thread and loop
    except KeyboardInterrupt:
        pytest.fail("the interrupted batch's KeyboardInterrupt came out of the next invocation")
    assert batch.response == {"batchItemFailures": []}
    assert ran == []  # nothing of the interrupted batch ran after it was given up


async def test_aprocess_cancelled_from_outside_leaves_no_record_running() -> None:
    started = asyncio.Event()
    ran: list[str] = []

    async def record_function(record: SQSRecord) -> None:
        started.set()
        for _ in range(5):
            await asyncio.sleep(0)
        ran.append(record.message_id)

    task = asyncio.ensure_future(LIGHT.aprocess(sqs_event(4), record_function))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(10):
        await asyncio.sleep(0)
    assert ran == []


def test_the_visibility_timeout_stays_under_sqs_12_hour_total() -> None:
    # SQS counts 12 hours from the receive, not from the ChangeMessageVisibility call: a
    # message received (by Lambda's poller, before the batching window and the invocation)
    # cannot be given 43200 s more; SQS rejects it and the message keeps the queue's timeout.
    backoff = VisibilityBackoff(base_s=43_200, max_s=43_200, jitter="none")
    assert backoff.timeout_for(1) <= 43_200 - 900 - 300
