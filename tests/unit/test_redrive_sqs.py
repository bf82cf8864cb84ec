"""redrive_sqs against botocore's Stubber: the exact requests, in order, and what is deleted.

The native path (StartMessageMoveTask / ListMessageMoveTasks) is tested here only: moto does
not implement those two APIs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from resilient_aws.errors import (
    AmbiguousTargetError,
    ConfigurationError,
    QueueNotFoundError,
    RedriveTargetError,
    TargetTypeMismatchError,
)
from resilient_aws.redrive import DlqMessage, RedriveReport, fresh_deduplication_id, redrive_sqs
from resilient_aws.redrive._drain import _Drain
from resilient_aws.testing import FakeClock

ACCOUNT = "https://sqs.us-east-1.amazonaws.com/123456789012"
DLQ, SRC = f"{ACCOUNT}/dlq", f"{ACCOUNT}/src"
FDLQ, FSRC = f"{ACCOUNT}/dlq.fifo", f"{ACCOUNT}/src.fifo"


def arn(url: str) -> str:
    return "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[1]


@pytest.fixture
def sqs() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture(autouse=True)
def _no_visibility_timer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # The timer wakes on real time while these tests move a fake clock: a stalled machine could
    # let it extend visibility between two stubbed calls. Only the timer's own test keeps it.
    if "visibility_timer" not in request.keywords:
        monkeypatch.setattr(_Drain, "_keep_visible", lambda self, done: None)


@pytest.fixture
def stub(sqs: Any, caplog: pytest.LogCaptureFixture) -> Any:
    with caplog.at_level(logging.WARNING, logger="resilient_aws.redrive"), Stubber(sqs) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()
    # an unexpected call (a visibility change the test did not stub) is logged, not raised
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def queue(stub: Stubber, url: str, depth: int = 0) -> None:
    attributes = {
        "QueueArn": arn(url),
        "ApproximateNumberOfMessages": str(depth),
    }
    if url.endswith(".fifo"):
        attributes["FifoQueue"] = "true"
    stub.add_response(
        "get_queue_attributes", {"Attributes": attributes}, {"QueueUrl": url, "AttributeNames": ANY}
    )


def message(
    n: int, *, group: str | None = None, dedup: str | None = None, **attrs: str
) -> dict[str, Any]:
    system = {"SentTimestamp": "1", "ApproximateReceiveCount": "1"}
    if group:
        system["MessageGroupId"] = group
    if dedup:
        system["MessageDeduplicationId"] = dedup
    raw: dict[str, Any] = {
        "MessageId": f"m{n}",
        "ReceiptHandle": f"rh{n}",
        "Body": f'{{"n": {n}}}',
        "Attributes": system,
    }
    if attrs:
        raw["MessageAttributes"] = {
            k: {
                "DataType": "String",
                "StringValue": v,
                "StringListValues": [],
                "BinaryListValues": [],
            }
            for k, v in attrs.items()
        }
    return raw


def receive(
    stub: Stubber,
    messages: list[dict[str, Any]],
    url: str = DLQ,
    count: Any = ANY,
    *,
    routed: bool = False,
) -> None:
    # Routing by source asks for the message system attributes (DeadLetterQueueSourceArn is one
    # of them); otherwise the request is the one every redrive source has always sent.
    attributes = {"MessageSystemAttributeNames": ["All"]} if routed else {"AttributeNames": ["All"]}
    stub.add_response(
        "receive_message",
        {"Messages": messages} if messages else {},
        {
            "QueueUrl": url,
            "MaxNumberOfMessages": count,
            "VisibilityTimeout": ANY,
            "WaitTimeSeconds": 0,
            **attributes,
            "MessageAttributeNames": ["All"],
            **({"ReceiveRequestAttemptId": ANY} if url.endswith(".fifo") else {}),
        },
    )


def drained(stub: Stubber, url: str = DLQ, *, routed: bool = False) -> None:
    receive(stub, [], url, routed=routed)
    receive(stub, [], url, routed=routed)


def sent(
    stub: Stubber, entries: Any, *, failed: dict[int, str] | None = None, url: str = SRC
) -> None:
    count = len(entries) if isinstance(entries, list) else 1
    failed = failed or {}
    stub.add_response(
        "send_message_batch",
        {
            "Successful": [
                {"Id": str(i), "MessageId": f"new{i}", "MD5OfMessageBody": "x"}
                for i in range(count)
                if i not in failed
            ],
            "Failed": [
                {"Id": str(i), "SenderFault": True, "Code": code, "Message": "no"}
                for i, code in failed.items()
            ],
        },
        {"QueueUrl": url, "Entries": entries},
    )


def deleted(
    stub: Stubber, handles: list[str], *, failed: dict[int, str] | None = None, url: str = DLQ
) -> None:
    failed = failed or {}
    stub.add_response(
        "delete_message_batch",
        {
            "Successful": [{"Id": str(i)} for i in range(len(handles)) if i not in failed],
            "Failed": [
                {"Id": str(i), "SenderFault": True, "Code": code, "Message": "no"}
                for i, code in failed.items()
            ],
        },
        {
            "QueueUrl": url,
            "Entries": [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)],
        },
    )


def released(stub: Stubber, handles: list[str], timeout: int = 0, url: str = DLQ) -> None:
    stub.add_response(
        "change_message_visibility_batch",
        {"Successful": [{"Id": str(i)} for i in range(len(handles))], "Failed": []},
        {
            "QueueUrl": url,
            "Entries": [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": timeout}
                for i, h in enumerate(handles)
            ],
        },
    )


def run(sqs: Any, clock: FakeClock, **options: Any) -> RedriveReport:
    options.setdefault("target_queue_url", SRC)
    source = options.pop("source", DLQ)
    return redrive_sqs(
        source,
        client=sqs,
        policy=clock.policy(max_attempts=4),
        wait_time_s=0,
        concurrency=1,
        **options,
    )


def body_entry(n: int, **extra: Any) -> dict[str, Any]:
    return {"Id": ANY, "MessageBody": f'{{"n": {n}}}', **extra}


def test_only_the_messages_whose_send_succeeded_are_deleted(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ, depth=3)
    queue(stub, SRC)
    receive(stub, [message(1, kind="a"), message(2), message(3)], count=10)
    attributes = {"kind": {"DataType": "String", "StringValue": "a"}}  # list values dropped
    sent(
        stub,
        [body_entry(1, MessageAttributes=attributes), body_entry(2), body_entry(3)],
        failed={1: "InvalidMessageContents"},
    )
    deleted(stub, ["rh1", "rh3"])
    drained(stub)
    released(stub, ["rh2"])  # the message that stayed is visible again at the end

    report = run(sqs, fake_clock)

    assert (report.received, report.moved, report.expected) == (3, 2, 3)
    assert report.failed == {"m2": "InvalidMessageContents: no"}
    assert not report.ok


def test_a_delete_that_fails_is_reported_as_delivered_but_not_deleted(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1), message(2)])
    sent(stub, [body_entry(1), body_entry(2)])
    deleted(stub, ["rh1", "rh2"], failed={0: "ReceiptHandleIsInvalid"})
    drained(stub)

    report = run(sqs, fake_clock)

    assert report.moved == 1
    assert list(report.undeleted) == ["m1"]
    assert "ReceiptHandleIsInvalid" in report.undeleted["m1"]
    assert not report.ok
    assert report.to_dict()["undeleted"] == report.undeleted


def test_a_message_received_again_after_delivery_is_deleted_not_sent_twice(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1)])
    sent(stub, [body_entry(1)])
    deleted(stub, ["rh1"])
    again = {**message(1), "ReceiptHandle": "rh1-again"}  # SQS delivers at least once
    receive(stub, [again])
    deleted(stub, ["rh1-again"])
    receive(stub, [])  # a receive of nothing new counts towards "drained", as an empty one

    report = run(sqs, fake_clock)

    assert (report.received, report.moved, report.duplicates) == (1, 1, 1)
    assert report.ok


def test_fifo_keeps_groups_and_gives_fresh_deduplication_ids(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, FDLQ)
    queue(stub, FSRC)
    receive(
        stub,
        [message(1, group="g1", dedup="orig-1"), message(2, group="g2", dedup="orig-2")],
        url=FDLQ,
    )
    fresh = [fresh_deduplication_id("run-1", f"m{n}") for n in (1, 2)]
    sent(
        stub,
        [
            body_entry(1, MessageGroupId="g1", MessageDeduplicationId=fresh[0]),
            body_entry(2, MessageGroupId="g2", MessageDeduplicationId=fresh[1]),
        ],
        url=FSRC,
    )
    deleted(stub, ["rh1", "rh2"], url=FDLQ)
    drained(stub, FDLQ)

    report = run(sqs, fake_clock, source=FDLQ, target_queue_url=FSRC, run_id="run-1")

    assert report.moved == 2
    assert fresh[0] == hashlib.sha256(b"run-1:m1").hexdigest()


def test_fifo_can_preserve_the_original_deduplication_id(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, FDLQ)
    queue(stub, FSRC)
    receive(stub, [message(1, group="g", dedup="orig-1")], url=FDLQ)
    sent(stub, [body_entry(1, MessageGroupId="g", MessageDeduplicationId="orig-1")], url=FSRC)
    deleted(stub, ["rh1"], url=FDLQ)
    drained(stub, FDLQ)

    assert run(sqs, fake_clock, source=FDLQ, target_queue_url=FSRC, preserve_dedup_id=True).ok


def test_fifo_holds_the_rest_of_a_group_behind_a_failed_message(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, FDLQ)
    queue(stub, FSRC)
    receive(stub, [message(1, group="g"), message(2, group="h")], url=FDLQ)
    sent(
        stub,
        [
            body_entry(1, MessageGroupId="g", MessageDeduplicationId=ANY),
            body_entry(2, MessageGroupId="h", MessageDeduplicationId=ANY),
        ],
        failed={0: "InvalidMessageContents"},
        url=FSRC,
    )
    deleted(stub, ["rh2"], url=FDLQ)
    receive(stub, [message(3, group="g")], url=FDLQ)  # later message of the failed group
    drained(stub, FDLQ)
    released(stub, ["rh1", "rh3"], url=FDLQ)

    report = run(sqs, fake_clock, source=FDLQ, target_queue_url=FSRC)

    assert report.moved == 1
    assert report.failed["m1"].startswith("InvalidMessageContents")
    assert report.failed["m3"].startswith("HeldBehindFailure")


def test_the_default_target_is_the_dlqs_only_source_queue(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    stub.add_response(
        "list_dead_letter_source_queues",
        {"queueUrls": [SRC]},
        {"QueueUrl": DLQ, "MaxResults": 1000},
    )
    queue(stub, SRC)
    drained(stub)

    report = run(sqs, fake_clock, target_queue_url=None)

    assert report.target == SRC
    assert report.received == 0


def test_no_source_queue_is_ambiguous(sqs: Any, stub: Stubber, fake_clock: FakeClock) -> None:
    queue(stub, DLQ)
    stub.add_response(
        "list_dead_letter_source_queues", {"queueUrls": []}, {"QueueUrl": DLQ, "MaxResults": 1000}
    )

    with pytest.raises(AmbiguousTargetError) as raised:
        run(sqs, fake_clock, target_queue_url=None)
    assert raised.value.candidates == []


OTHER = f"{ACCOUNT}/other"
FAR_ARN = "arn:aws:sqs:us-east-1:999999999999:far"  # a source in another account: not listed
FAR = "https://sqs.us-east-1.amazonaws.com/999999999999/far"
GONE_ARN = "arn:aws:sqs:us-east-1:123456789012:gone"


def from_source(n: int, source_arn: str | None) -> dict[str, Any]:
    raw = message(n)
    if source_arn is not None:
        raw["Attributes"]["DeadLetterQueueSourceArn"] = source_arn
    return raw


def sources_listed(stub: Stubber, urls: list[str]) -> None:
    stub.add_response(
        "list_dead_letter_source_queues", {"queueUrls": urls}, {"QueueUrl": DLQ, "MaxResults": 1000}
    )


def test_several_sources_each_message_goes_back_to_its_own(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ, depth=7)
    sources_listed(stub, [SRC, OTHER])
    queue(stub, SRC)  # every listed source is checked before anything is received
    queue(stub, OTHER)
    receive(
        stub,
        [
            from_source(1, arn(SRC)),
            from_source(2, arn(OTHER)),
            from_source(3, None),
            from_source(4, FAR_ARN),
            from_source(5, GONE_ARN),
            from_source(6, arn(SRC)),
            from_source(7, GONE_ARN),
        ],
        routed=True,
    )
    # An ARN outside the list: its URL from the name and owner account in the ARN, accepted
    # because its RedrivePolicy names this DLQ; looked up once.
    stub.add_response(
        "get_queue_url",
        {"QueueUrl": FAR},
        {"QueueName": "far", "QueueOwnerAWSAccountId": "999999999999"},
    )
    redrive_policy = f'{{"deadLetterTargetArn": "{arn(DLQ)}", "maxReceiveCount": 3}}'
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": FAR_ARN, "RedrivePolicy": redrive_policy}},
        {"QueueUrl": FAR, "AttributeNames": ["QueueArn", "FifoQueue", "RedrivePolicy"]},
    )
    stub.add_client_error(
        "get_queue_url",
        service_error_code="AWS.SimpleQueueService.NonExistentQueue",
        http_status_code=400,
        expected_params={"QueueName": "gone", "QueueOwnerAWSAccountId": "123456789012"},
    )  # once: m7 names the same queue and is refused from the cache
    sent(stub, [body_entry(1), body_entry(6)], url=SRC)  # one sender per target
    sent(stub, [body_entry(2)], url=OTHER)
    sent(stub, [body_entry(4)], url=FAR)
    deleted(stub, ["rh1", "rh2", "rh4", "rh6"])
    drained(stub, routed=True)
    released(stub, ["rh3", "rh5", "rh7"])

    report = run(sqs, fake_clock, target_queue_url=None)

    assert (report.received, report.moved, report.target) == (7, 4, None)
    assert report.targets == {SRC: 2, OTHER: 1, FAR: 1}
    assert report.failed["m3"].startswith("NoSourceQueue: ")
    assert (
        report.failed["m5"]
        == report.failed["m7"]
        == f"SourceQueueNotFound: {GONE_ARN} does not exist"
    )
    assert report.to_dict()["targets"] == report.targets
    assert f"2 to {SRC}" in str(report)


def test_a_queue_that_does_not_name_the_dlq_is_no_source(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    sources_listed(stub, [SRC, OTHER])
    queue(stub, SRC)
    queue(stub, OTHER)
    stranger = "arn:aws:sqs:us-east-1:123456789012:stranger"
    receive(stub, [from_source(1, stranger), from_source(2, "not-an-arn")], routed=True)
    stub.add_response(
        "get_queue_url",
        {"QueueUrl": f"{ACCOUNT}/stranger"},
        {"QueueName": "stranger", "QueueOwnerAWSAccountId": "123456789012"},
    )
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": stranger}},  # no RedrivePolicy
        {"QueueUrl": f"{ACCOUNT}/stranger", "AttributeNames": ANY},
    )
    drained(stub, routed=True)
    released(stub, ["rh1", "rh2"])

    report = run(sqs, fake_clock, target_queue_url=None)

    assert report.moved == 0
    assert report.failed == {
        "m1": f"NotASourceQueue: {stranger} is not a source queue of this dead-letter queue",
        "m2": "NotASourceQueue: not-an-arn is not an SQS queue ARN",
    }


def test_several_sources_are_checked_before_anything_moves(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    sources_listed(stub, [SRC, FSRC])
    queue(stub, SRC)
    queue(stub, FSRC)

    with pytest.raises(TargetTypeMismatchError):
        run(sqs, fake_clock, target_queue_url=None)


def test_a_missing_queue_is_a_typed_error_before_anything_moves(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    stub.add_client_error(
        "get_queue_attributes",
        service_error_code="AWS.SimpleQueueService.NonExistentQueue",
        http_status_code=400,
    )

    with pytest.raises(QueueNotFoundError) as raised:
        run(sqs, fake_clock)
    assert raised.value.queue == SRC
    assert "target queue" in str(raised.value)


@pytest.mark.parametrize(("source", "target"), [(DLQ, FSRC), (FDLQ, SRC)])
def test_fifo_and_standard_do_not_mix(
    sqs: Any, stub: Stubber, fake_clock: FakeClock, source: str, target: str
) -> None:
    queue(stub, source)
    queue(stub, target)

    with pytest.raises(TargetTypeMismatchError):
        run(sqs, fake_clock, source=source, target_queue_url=target)


def test_the_source_is_not_a_target(sqs: Any, stub: Stubber, fake_clock: FakeClock) -> None:
    queue(stub, DLQ)
    queue(stub, DLQ)

    with pytest.raises(RedriveTargetError):
        run(sqs, fake_clock, target_queue_url=DLQ)


def test_a_jmespath_filter_picks_what_moves_the_rest_is_released(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1, kind="order"), message(2, kind="other"), message(3)])
    sent(
        stub,
        [body_entry(1, MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}})],
    )
    deleted(stub, ["rh1"])
    drained(stub)
    released(stub, ["rh2", "rh3"])

    report = run(sqs, fake_clock, filter="messageAttributes.kind == 'order'")

    assert (report.moved, report.skipped, report.failed) == (1, 2, {})


def test_a_callable_filter_that_raises_fails_its_message_only(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1), message(2)])
    sent(stub, [body_entry(2)])
    deleted(stub, ["rh2"])
    drained(stub)
    released(stub, ["rh1"])

    def only_even(m: DlqMessage) -> bool:
        if m.json()["n"] == 1:
            raise KeyError("boom")
        return True

    report = run(sqs, fake_clock, filter=only_even)

    assert report.moved == 1
    assert report.failed["m1"].startswith("FilterError: KeyError")


def test_an_invalid_jmespath_filter_is_refused_before_receiving(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)

    with pytest.raises(ConfigurationError, match="filter"):
        run(sqs, fake_clock, filter="body.[")


def test_dry_run_moves_nothing_and_shows_what_would_move(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1), message(2)])
    drained(stub)
    released(stub, ["rh1", "rh2"])

    report = run(sqs, fake_clock, dry_run=True, filter="body.n == `2`")

    assert (report.moved, report.skipped, report.would_move) == (0, 1, ["m2"])
    assert "would move" in str(report)


def test_max_messages_limits_what_is_received(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ, depth=50)
    queue(stub, SRC)
    receive(stub, [message(1), message(2), message(3)], count=3)
    sent(stub, [body_entry(1), body_entry(2), body_entry(3)])
    deleted(stub, ["rh1", "rh2", "rh3"])

    report = run(sqs, fake_clock, max_messages=3)

    assert (report.received, report.moved, report.expected) == (3, 3, 3)


def test_rate_paces_on_the_policys_clock(sqs: Any, stub: Stubber, fake_clock: FakeClock) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1), message(2)], count=2)
    sent(stub, [body_entry(1), body_entry(2)])
    deleted(stub, ["rh1", "rh2"])
    receive(stub, [message(3), message(4)], count=2)
    sent(stub, [body_entry(3), body_entry(4)])
    deleted(stub, ["rh3", "rh4"])
    drained(stub)

    report = run(sqs, fake_clock, rate=2.0)

    assert report.moved == 4
    assert fake_clock.slept == [1.0]  # 2 messages at 2/s: the second batch waits a second


def test_visibility_is_extended_before_a_backoff_outlasts_it(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1)])
    stub.add_client_error(
        "send_message_batch", service_error_code="RequestThrottled", http_status_code=400
    )
    released(stub, ["rh1"], timeout=4)  # extended before sleeping past half of it
    sent(stub, [body_entry(1)])
    released(stub, ["rh1"], timeout=4)  # half of the extension has passed again
    deleted(stub, ["rh1"])
    drained(stub)

    policy = fake_clock.policy(max_attempts=4, base_delay=3.0, max_delay=3.0, jitter="none")
    report = redrive_sqs(
        DLQ,
        target_queue_url=SRC,
        client=sqs,
        policy=policy,
        wait_time_s=0,
        concurrency=1,
        visibility_timeout=4,
    )

    assert report.moved == 1
    assert fake_clock.slept == [3.0]


@pytest.mark.visibility_timer
def test_the_timer_extends_visibility_while_a_request_hangs(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    extended = threading.Event()
    hangs = [True]

    def hang_until_extended(**_: Any) -> None:
        if hangs:
            hangs.pop()
            fake_clock.advance(3.0)  # past half of the 4 s visibility, while the send hangs
            assert extended.wait(30), "the timer never extended the held message"

    def note_extension(**_: Any) -> None:
        extended.set()

    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", hang_until_extended)
    sqs.meta.events.register("after-call.sqs.ChangeMessageVisibilityBatch", note_extension)
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1)])
    released(stub, ["rh1"], timeout=4)  # by the timer: no worker is free to do it
    sent(stub, [body_entry(1)])
    deleted(stub, ["rh1"])
    drained(stub)

    report = run(sqs, fake_clock, visibility_timeout=4)

    assert report.moved == 1 and extended.is_set()


def test_an_exception_from_progress_stops_the_run_like_a_kill(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    receive(stub, [message(1), message(2)])
    sent(stub, [body_entry(1), body_entry(2)], failed={1: "InvalidMessageContents"})
    deleted(stub, ["rh1"])
    # nothing after: no further receive, and the failed message is not released

    def stop(report: RedriveReport) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(sqs, fake_clock, progress=stop)


@pytest.mark.parametrize(
    "option",
    [{"filter": "body"}, {"dry_run": True}, {"max_messages": 5}, {"preserve_dedup_id": True}],
)
def test_native_refuses_what_it_cannot_do(
    sqs: Any, stub: Stubber, fake_clock: FakeClock, option: dict[str, Any]
) -> None:
    queue(stub, DLQ)

    with pytest.raises(ConfigurationError, match="native"):
        run(sqs, fake_clock, native=True, **option)


def task(
    status: str, moved: int, *, handle: str | None = "task-1", reason: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Status": status,
        "SourceArn": arn(DLQ),
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": 100,
        "StartedTimestamp": 1,
    }
    if handle:
        entry["TaskHandle"] = handle
    if reason:
        entry["FailureReason"] = reason
    return entry


def test_native_follows_the_move_task_until_it_completes(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ, depth=100)
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-1"},
        {"SourceArn": arn(DLQ), "MaxNumberOfMessagesPerSecond": 50},
    )
    listed = {"SourceArn": arn(DLQ)}
    stub.add_response("list_message_move_tasks", {"Results": [task("RUNNING", 10)]}, listed)
    stub.add_response("list_message_move_tasks", {"Results": [task("RUNNING", 60)]}, listed)
    # a finished task has no handle any more: it is the most recent one
    done = [task("COMPLETED", 100, handle=None), task("COMPLETED", 7, handle=None)]
    stub.add_response("list_message_move_tasks", {"Results": done}, listed)
    seen: list[int] = []

    report = run(
        sqs,
        fake_clock,
        target_queue_url=None,
        native=True,
        rate=50,
        progress=lambda r: seen.append(r.moved),
    )

    assert seen == [10, 60, 100]
    assert fake_clock.slept == [5.0, 5.0]
    assert report.ok
    assert report.native == {
        "task_handle": "task-1",
        "status": "COMPLETED",
        "moved": 100,
        "to_move": 100,
    }
    assert report.to_dict()["kind"] == "sqs-native"


def test_native_reports_a_failed_task(sqs: Any, stub: Stubber, fake_clock: FakeClock) -> None:
    queue(stub, DLQ)
    queue(stub, SRC)
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "task-1"},
        {"SourceArn": arn(DLQ), "DestinationArn": arn(SRC)},
    )
    stub.add_response(
        "list_message_move_tasks",
        {
            "Results": [
                task("FAILED", 3, handle=None, reason="AWS.SimpleQueueService.NonExistentQueue")
            ]
        },
        {"SourceArn": arn(DLQ)},
    )

    report = run(sqs, fake_clock, native=True)

    assert not report.ok
    assert report.native is not None
    assert report.native["failure_reason"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert "FAILED" in str(report)


def test_native_checks_the_target_type_before_starting(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    queue(stub, FSRC)

    with pytest.raises(TargetTypeMismatchError):
        run(sqs, fake_clock, target_queue_url=FSRC, native=True)


def test_native_stops_following_at_the_deadline(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ)
    stub.add_response("start_message_move_task", {"TaskHandle": "task-1"}, {"SourceArn": arn(DLQ)})
    stub.add_response(
        "list_message_move_tasks", {"Results": [task("RUNNING", 10)]}, {"SourceArn": arn(DLQ)}
    )

    policy = fake_clock.policy().with_deadline(fake_clock.deadline(3.0))
    report = redrive_sqs(DLQ, client=sqs, policy=policy, native=True)

    assert not report.ok
    assert report.native is not None
    assert "deadline" in report.native["failure_reason"]


def test_a_passed_deadline_takes_no_new_batch(
    sqs: Any, stub: Stubber, fake_clock: FakeClock
) -> None:
    queue(stub, DLQ, depth=5)
    queue(stub, SRC)  # and no receive: the Lambda running this is about to end

    policy = fake_clock.policy().with_deadline(fake_clock.deadline(0.0))
    report = redrive_sqs(DLQ, target_queue_url=SRC, client=sqs, policy=policy, wait_time_s=0)

    assert (report.received, report.expected) == (0, 5)
