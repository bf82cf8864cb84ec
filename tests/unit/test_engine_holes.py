"""Holes a hostile review found in the batch engine's accounting, each pinned by a test that a
mutation of the code it protects makes fail.

``submitted == succeeded + len(failed) + deduplicated`` is asserted in every path.
"""

from __future__ import annotations

import gc
import logging
import math
from typing import Any

import pytest

from resilient_aws.batch import SnsPublisher, SqsSender
from resilient_aws.errors import ConfigurationError
from resilient_aws.results import BatchResult
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
FIFO = QUEUE + ".fifo"
TOPIC = "arn:aws:sns:us-east-1:123456789012:t"


def balanced(result: BatchResult[Any]) -> bool:
    return result.submitted == result.succeeded + len(result.failed) + result.deduplicated


class Answering:
    """SendMessageBatch / PublishBatch that answers each request with ``answer(entries)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.requests.append([e["MessageBody"] for e in Entries])
        return self.answer(Entries)

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[Any]) -> Any:  # noqa: N803
        self.requests.append([e["Message"] for e in PublishBatchRequestEntries])
        return self.answer(PublishBatchRequestEntries)


def fail_body(body: str, code: str = "InvalidParameterValue") -> Any:
    def answer(entries: list[dict[str, Any]]) -> dict[str, Any]:
        ok, bad = [], []
        for e in entries:
            if e.get("MessageBody", e.get("Message")) == body:
                bad.append({"Id": e["Id"], "Code": code, "SenderFault": True})
            else:
                ok.append({"Id": e["Id"], "MessageId": "m"})
        return {"Successful": ok, "Failed": bad}

    return answer


# -- 3. ordered mode: what is buffered behind an entry that finally fails ------------------------


def test_fifo_entries_buffered_behind_a_failed_one_are_failed_not_dropped() -> None:
    client = Answering(fail_body("a1"))
    sender = SqsSender(
        FIFO, client=client, policy=FakeClock().policy(), raise_on_failure=False, concurrency=1
    )
    for i in range(1, 5):
        sender.send_message(f"a{i}", group_id="a", deduplication_id=f"a{i}")
    sender.send_message("b1", group_id="b", deduplication_id="b1")
    result = sender.close()
    assert balanced(result)
    assert [(f.entry_id, f.code) for f in result.failed] == [
        ("#0", "InvalidParameterValue"),
        ("#1", "PrecedingEntryFailed"),
        ("#2", "PrecedingEntryFailed"),
        ("#3", "PrecedingEntryFailed"),
    ]
    assert result.succeeded == 1
    assert [body for request in client.requests for body in request] == ["a1", "b1"]


def test_a_fifo_entry_added_after_its_group_failed_is_failed_at_once() -> None:
    client = Answering(fail_body("a1"))
    sender = SqsSender(
        FIFO, client=client, policy=FakeClock().policy(), raise_on_failure=False, concurrency=1
    )
    sender.send_message("a1", group_id="a", deduplication_id="a1")
    sender.flush()
    sender.send_message("a2", group_id="a", deduplication_id="a2")
    result = sender.close()
    assert balanced(result)
    assert [f.code for f in result.failed] == ["InvalidParameterValue", "PrecedingEntryFailed"]
    assert client.requests == [["a1"]]


# -- 4. a writer dropped with entries still buffered ---------------------------------------------


def test_a_writer_collected_with_entries_buffered_warns_and_logs_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Answering(fail_body("none"))
    sender = SqsSender(QUEUE, client=client, policy=FakeClock().policy())
    for i in range(3):
        sender.send_message(f"secret-{i}")
    gc.disable()  # an automatic collection before the checks would warn outside them
    try:
        del sender  # the last reference: collected below, inside the checks
        with (
            caplog.at_level(logging.ERROR, logger="resilient_aws.batch"),
            pytest.warns(ResourceWarning, match="3 entries never sent"),
        ):
            gc.collect()
    finally:
        gc.enable()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "3 entries never sent" in errors[0].getMessage()
    assert "secret" not in errors[0].getMessage()
    assert client.requests == []


def test_a_closed_or_empty_writer_collects_quietly(recwarn: pytest.WarningsRecorder) -> None:
    client = Answering(fail_body("none"))
    closed = SqsSender(QUEUE, client=client, policy=FakeClock().policy())
    closed.send_message("m")
    closed.close()
    empty = SqsSender(QUEUE, client=client, policy=FakeClock().policy())
    del closed, empty
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


# -- 5. an answer that leaves an entry out is never counted as a success -------------------------


@pytest.mark.parametrize("sender_type", [SqsSender, SnsPublisher])
def test_an_answer_missing_an_entry_fails_the_request_instead_of_counting_it_sent(
    sender_type: Any,
) -> None:
    def drop_last(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in entries[:-1]]}

    client = Answering(drop_last)
    target = QUEUE if sender_type is SqsSender else TOPIC
    sender = sender_type(target, client=client, policy=FakeClock().policy(), raise_on_failure=False)
    send = sender.send_message if sender_type is SqsSender else sender.publish
    for i in range(3):
        send(f"m{i}")
    result = sender.close()
    assert balanced(result)
    assert result.succeeded == 0, "a response that leaves an entry out proves nothing"
    assert len(result.failed) == 3
    assert {f.code for f in result.failed} == {"IncompleteResponseError"}


@pytest.mark.parametrize("interval", [0, -1, math.nan, math.inf])
def test_flush_interval_must_be_a_positive_finite_number(interval: float) -> None:
    with pytest.raises(ConfigurationError, match="flush_interval"):
        SqsSender(QUEUE, client=Answering(fail_body("x")), flush_interval=interval)
