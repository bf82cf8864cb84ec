"""The batch engine accounts for every entry even when things go wrong around the requests:
answers that cannot be trusted, an interrupt or a bug mid-request, a close that fails, the
interval flusher's own requests and errors, a halving past the deadline.

``submitted == succeeded + len(failed) + deduplicated`` is checked after each scenario.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from resilient_aws._batching import BatchEngine
from resilient_aws.batch import SqsSender
from resilient_aws.errors import BatchWriteError
from resilient_aws.results import BatchResult
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
FIFO = QUEUE + ".fifo"


def balanced(result: BatchResult[Any]) -> bool:
    return result.submitted == result.succeeded + len(result.failed) + result.deduplicated


def accepted(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in entries], "Failed": []}


class Scripted:
    """An SQS client whose n-th SendMessageBatch does what ``script[n]`` says (default: accept)."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls = 0
        self.started = threading.Event()
        self.lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self.lock:
            step = self.script[self.calls] if self.calls < len(self.script) else accepted
            self.calls += 1
        self.started.set()
        return step(Entries)


def raises(error: BaseException) -> Any:
    def step(entries: list[dict[str, Any]]) -> Any:
        raise error

    return step


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            lambda ids: {"Successful": [{"Id": ids[0]}, {"Id": ids[0]}], "Failed": []},
            id="one-id-twice",
        ),
        pytest.param(
            lambda ids: {
                "Successful": [{"Id": ids[0]}],
                "Failed": [{"Id": ids[0], "Code": "X", "SenderFault": True}],
            },
            id="succeeded-and-failed",
        ),
        pytest.param(
            lambda ids: {"Successful": [{"Id": ids[0]}, {"Id": "-1"}], "Failed": []},
            id="negative-id",
        ),
        pytest.param(
            lambda ids: {"Successful": [{"Id": ids[0]}, {"Id": "7"}], "Failed": []},
            id="unknown-id",
        ),
    ],
)
def test_answers_that_do_not_name_each_entry_once_are_not_trusted(answer: Any) -> None:
    # Two answers for two entries, but not one for each: counting them would call an entry sent
    # that never was (a redrive would then delete its only copy).
    client = Scripted(lambda entries: answer([e["Id"] for e in entries]))
    sender = SqsSender(QUEUE, client=client, raise_on_failure=False, concurrency=1)
    sender.send_message("a", id="a")
    sender.send_message("b", id="b")
    result = sender.close()
    assert [(f.entry_id, f.code) for f in result.failed] == [
        ("a", "InconsistentResponseError"),
        ("b", "InconsistentResponseError"),
    ]
    assert result.succeeded == 0 and result.answers == [] and balanced(result)


def test_an_interrupt_mid_request_leaves_every_entry_accounted() -> None:
    client = Scripted(accepted, raises(KeyboardInterrupt()))
    sender = SqsSender(QUEUE, client=client, concurrency=1)
    with pytest.raises(KeyboardInterrupt), sender:
        for i in range(20):
            sender.send_message(f"m{i}", id=f"m{i}")
    result = sender.result
    assert result.succeeded == 10  # the first request's
    assert {f.code for f in result.failed} == {"OutcomeUnknown"}
    assert sorted(f.entry_id for f in result.failed) == sorted(f"m{i}" for i in range(10, 20))
    assert balanced(result)


def test_a_worker_error_surfacing_while_waiting_for_a_slot_takes_no_entry_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BatchEngine, "_cpu_share", 0.0)  # workers from the first request
    # The third chunk waits for a free slot; the first request's error surfaces during that
    # wait. The third chunk must still be in the buffer, and be sent when the block exits.
    client = Scripted(raises(RuntimeError("a bug in request 1")))
    sender = SqsSender(QUEUE, client=client, concurrency=2)
    with pytest.raises(RuntimeError, match="a bug in request 1"), sender:
        for i in range(30):
            sender.send_message(f"m{i}", id=f"m{i}")
    result = sender.result
    assert result.succeeded == 20
    assert sorted(f.entry_id for f in result.failed) == sorted(f"m{i}" for i in range(10))
    assert balanced(result)


def test_a_failed_close_reports_what_it_could_not_send() -> None:
    # A FIFO group goes one message per request: when the first request fails with a bug, the
    # group's later messages are still buffered; the close that raises reports them as not sent.
    client = Scripted(raises(RuntimeError("a bug")))
    sender = SqsSender(FIFO, client=client, concurrency=1)
    for i in range(5):
        sender.send_message(f"m{i}", id=f"m{i}", group_id="g", deduplication_id=f"d{i}")
    with pytest.raises(RuntimeError, match="a bug"):
        sender.close()
    codes = {f.entry_id: f.code for f in sender.result.failed}
    assert codes == {"m0": "OutcomeUnknown", **{f"m{i}": "NotSent" for i in range(1, 5)}}
    assert balanced(sender.result)
    with pytest.raises(BatchWriteError):  # closing again does not pretend all went well
        sender.close()


def test_close_waits_for_the_interval_flushers_request_and_raises_its_failure() -> None:
    release = threading.Event()

    def slow_refusal(entries: list[dict[str, Any]]) -> Any:
        assert release.wait(30)
        failed = [
            {"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True} for e in entries
        ]
        return {"Successful": [], "Failed": failed}

    client = Scripted(slow_refusal)
    sender = SqsSender(QUEUE, client=client, concurrency=1, flush_interval=0.01)
    sender.send_message("a", id="a")
    assert client.started.wait(30)  # the flusher took the message and is sending it
    threading.Timer(0.05, release.set).start()
    with pytest.raises(BatchWriteError):
        sender.close()
    assert [(f.entry_id, f.code) for f in sender.result.failed] == [("a", "InvalidParameterValue")]


def test_an_error_in_the_interval_flushers_request_is_raised_by_close() -> None:
    client = Scripted(raises(RuntimeError("a bug in the background")))
    sender = SqsSender(QUEUE, client=client, concurrency=1, flush_interval=0.01)
    sender.send_message("a", id="a")
    assert client.started.wait(30)
    with pytest.raises(RuntimeError, match="a bug in the background"):
        sender.close()
    assert [(f.entry_id, f.code) for f in sender.result.failed] == [("a", "OutcomeUnknown")]
    assert balanced(sender.result)


def test_halving_a_refused_batch_stops_at_the_deadline() -> None:
    from botocore.exceptions import ClientError

    too_long = ClientError(
        {"Error": {"Code": "AWS.SimpleQueueService.BatchRequestTooLong", "Message": "no"}},
        "SendMessageBatch",
    )
    client = Scripted(*[raises(too_long)] * 20)
    clock = FakeClock()
    policy = clock.policy().with_deadline(clock.deadline(5))
    sender = SqsSender(QUEUE, client=client, policy=policy, concurrency=1, raise_on_failure=False)
    for i in range(9):  # under a full request: nothing is sent before close()
        sender.send_message(f"m{i}")
    clock.advance(10)  # the Lambda's time is up: no more requests to find the culprit
    result = sender.close()
    assert client.calls == 1
    assert {f.gave_up for f in result.failed} == {"deadline"} and len(result.failed) == 9
    assert balanced(result)


def test_halving_that_fails_in_its_first_half_reports_the_second() -> None:
    from botocore.exceptions import ClientError

    def refuse_big_then_break(entries: list[dict[str, Any]]) -> Any:
        if len(entries) > 2:
            raise ClientError(
                {"Error": {"Code": "AWS.SimpleQueueService.BatchRequestTooLong", "Message": "x"}},
                "SendMessageBatch",
            )
        raise RuntimeError("a bug in the first half")

    client = Scripted(*[refuse_big_then_break] * 5)
    sender = SqsSender(QUEUE, client=client, concurrency=1)
    for i in range(4):
        sender.send_message(f"m{i}", id=f"m{i}")
    with pytest.raises(RuntimeError, match="first half"):
        sender.close()
    codes = {f.entry_id: f.code for f in sender.result.failed}
    assert codes == {
        "m0": "OutcomeUnknown",
        "m1": "OutcomeUnknown",
        "m2": "NotSent",
        "m3": "NotSent",
    }
    assert balanced(sender.result)


def test_the_interval_flusher_keeps_flushing_after_an_error() -> None:
    second_sent = threading.Event()

    def note_second(entries: list[dict[str, Any]]) -> Any:
        second_sent.set()
        return accepted(entries)

    client = Scripted(raises(RuntimeError("one bad request")), note_second)
    sender = SqsSender(QUEUE, client=client, concurrency=1, flush_interval=0.01)
    sender.send_message("a", id="a")
    assert client.started.wait(30)
    sender.send_message("b", id="b")
    assert second_sent.wait(30)  # sent on time, by the same flusher
    with pytest.raises(RuntimeError, match="one bad request"):
        sender.close()  # the error is not lost either
    assert sender.result.succeeded == 1 and balanced(sender.result)
