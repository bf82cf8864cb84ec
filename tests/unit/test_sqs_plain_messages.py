"""SqsSender's per-message fast path: a message that is a body alone makes its default id and
the ``source`` a failure reports only when they are read; what callers see is what the full
path gives them. And ``by_id``'s whole-response check falls back to reading each answer."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_aws._batching import Entry
from resilient_aws.batch import SqsSender
from resilient_aws.batch._base import InconsistentResponseError, by_id
from resilient_aws.batch._sqs import _Message

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


class Refusing:
    """SendMessageBatch that fails every entry for good (the sender's fault)."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        failed = [
            {"Id": e["Id"], "Code": "InvalidMessageContents", "SenderFault": True, "Message": "no"}
            for e in Entries
        ]
        return {"Successful": [], "Failed": failed}


class Answering:
    """SendMessageBatch that answers every entry, in the order ``order`` gives."""

    def __init__(self, order: Any = list) -> None:
        self.order = order

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        ok = [{"Id": e["Id"], "MessageId": f"id-{e['MessageBody']}"} for e in Entries]
        return {"Successful": self.order(ok), "Failed": []}


def test_a_plain_message_that_fails_is_reported_with_its_id_and_source() -> None:
    sender = SqsSender(QUEUE, client=Refusing(), raise_on_failure=False)
    with sender:
        sender.send_message("first")
        sender.send_message("second", id="mine")
        sender.send_message("third")
    failed = sender.result.failed
    assert [(f.entry_id, f.entry) for f in failed] == [
        ("#0", {"id": "#0", "body": "first"}),
        ("mine", {"id": "mine", "body": "second"}),
        ("#1", {"id": "#1", "body": "third"}),
    ]
    result = sender.result
    assert result.submitted == result.succeeded + len(result.failed) + result.deduplicated == 3


def test_a_plain_message_makes_its_source_once_when_first_read() -> None:
    message = _Message(7, {"MessageBody": "hello", "Id": "0"}, 5)
    assert message._source is None and message._id == 7  # nothing made per message sent
    source = message.source
    assert source == {"id": "#7", "body": "hello"}  # the request's Id is not the caller's
    assert message.source is source  # the caller's failed entry and the engine's: one dict
    assert message.entry_id == "#7" and repr(message) == "Entry('#7', size=5, sends=0)"


def test_full_answers_of_plain_messages_name_their_source() -> None:
    sender = SqsSender(QUEUE, client=Answering(), keep_answers="full")
    with sender:
        sender.send_message("a")
        sender.send_message("b", id="given")
    assert [(a.entry_id, a.entry, a.response) for a in sender.result.answers] == [
        ("#0", {"id": "#0", "body": "a"}, {"MessageId": "id-a"}),
        ("given", {"id": "given", "body": "b"}, {"MessageId": "id-b"}),
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"id": 5},  # an untyped caller's id is kept as it is given
        {"attributes": {}},
        {"delay_seconds": 0},
    ],
)
def test_messages_with_options_take_the_full_path(options: dict[str, Any]) -> None:
    sender = SqsSender(QUEUE, client=Refusing(), raise_on_failure=False)
    with sender:
        sender.send_message("body", **options)
    (failure,) = sender.result.failed
    assert failure.entry["body"] == "body"
    assert failure.entry_id == options.get("id", "#0")


def test_answers_out_of_order_map_back_to_their_entries() -> None:
    sender = SqsSender(QUEUE, client=Answering(order=lambda ok: ok[::-1]), keep_answers=True)
    with sender:
        for body in "abc":
            sender.send_message(body)
    assert {a.entry_id: a.response["MessageId"] for a in sender.result.answers} == {
        "#0": "id-a",
        "#1": "id-b",
        "#2": "id-c",
    }


def entries(n: int) -> list[Entry[Any]]:
    return [Entry(None, f"e{i}", {"MessageBody": "x"}, 1) for i in range(n)]


@pytest.mark.parametrize(
    "successful",
    [
        [{"Id": "0"}, {"Id": "0"}],  # one entry answered twice, the other never
        [{"Id": "0"}, {"MessageId": "m"}],  # an answer without an Id
        [{"Id": "0"}, {"Id": "2"}],  # an Id the request did not hold
    ],
)
def test_a_response_that_does_not_answer_each_entry_once_is_refused(
    successful: list[dict[str, Any]],
) -> None:
    with pytest.raises(InconsistentResponseError):
        by_id(entries(2), {"Successful": successful, "Failed": []}, "sqs")


def test_a_whole_response_in_order_pairs_each_entry_with_its_answer() -> None:
    batch = entries(3)
    successful = [{"Id": str(i), "MessageId": f"m{i}"} for i in range(3)]
    sent = by_id(batch, {"Successful": successful, "Failed": []}, "sqs")
    assert sent.succeeded == list(zip(batch, successful, strict=True))
    assert sent.failed == [] and sent.botocore_retries == 0


def test_a_plain_message_takes_the_fast_path_even_once_opentelemetry_was_imported() -> None:
    # The tracing tests import OpenTelemetry; tests/conftest.py makes every other test run as
    # a process that never did, where a plain message takes the fast path.
    import opentelemetry.trace  # noqa: F401

    sender = SqsSender("q", client=Answering(), raise_on_failure=False)
    sender.send_message("body")
    engine = sender._engine
    assert [type(e) for e in [*engine.staged, *engine._pending.values()]] == [_Message]
    sender.close()
