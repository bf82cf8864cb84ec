"""Review of SqsSender's plain-message fast path and the engine changes that came with it:
what a caller sees is what the full path gives. A body alone is compared with the same body
sent with ``attributes={}`` (no attribute, but the full path); bad input is refused with a
typed error naming the entry before anything is sent; a response that does not answer each
entry exactly once is refused whole. Public API only: the same tests pass on the commit before
the fast path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch import SqsSender
from resilient_aws.batch._aio import AsyncSqsSender
from resilient_aws.batch._base import InconsistentResponseError, by_id
from resilient_aws.errors import ConfigurationError, EntryTooLargeError, EntryValidationError
from resilient_aws.limits import MiB
from resilient_aws.retry import RetryPolicy

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
TRACE_API = "opentelemetry.trace"
POLICY = RetryPolicy(sleep=lambda _s: None, max_attempts=3)


class Client:
    """SendMessageBatch answering per ``mode``: all sent, all refused for good, or the first
    entry of every other request withheld (retried)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.requests.append([e["MessageBody"] for e in Entries])
        ids = [e["Id"] for e in Entries]
        ok = [
            {"Id": i, "MessageId": f"m-{e['MessageBody']}"}
            for i, e in zip(ids, Entries, strict=True)
        ]
        if self.mode == "refuse":
            failed = [{"Id": i, "Code": "InvalidMessageContents", "SenderFault": True} for i in ids]
            return {"Successful": [], "Failed": failed}
        if self.mode == "withhold" and len(self.requests) % 2:
            failed = [{"Id": ids[0], "Code": "InternalError", "SenderFault": False}]
            return {"Successful": ok[1:], "Failed": failed}
        return {"Successful": ok, "Failed": []}


class AsyncClient(Client):
    async def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        return Client.send_message_batch(self, QueueUrl, Entries)


def summary(sender: SqsSender, client: Client) -> Any:
    r = sender.result
    return (
        (r.submitted, r.succeeded, r.requests, r.resent, r.deduplicated),
        sorted((f.entry_id, f.code, repr(f.entry), f.attempts, f.retryable) for f in r.failed),
        sorted((a.entry_id, repr(a.entry), repr(a.response)) for a in r.answers),
        sorted(body for request in client.requests for body in request),
    )


def messages(n: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"b{i}", {"id": f"u{i}"} if i % 3 == 0 else {}) for i in range(n)]


def sent_with(extra: dict[str, Any], mode: str, n: int = 37, **options: Any) -> Any:
    client = Client(mode)
    sender = SqsSender(QUEUE, client=client, policy=POLICY, raise_on_failure=False, **options)
    with sender:
        for body, given in messages(n):
            sender.send_message(body, **given, **extra)
    return summary(sender, client)


@pytest.mark.parametrize("mode", ["ok", "refuse", "withhold"])
@pytest.mark.parametrize("keep_answers", [False, True, "full"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_body_alone_gives_what_the_full_path_gives(
    mode: str, keep_answers: Any, concurrency: int
) -> None:
    options = {"keep_answers": keep_answers, "concurrency": concurrency}
    plain = sent_with({}, mode, **options)
    assert plain == sent_with({"attributes": {}}, mode, **options)
    (submitted, succeeded, _, resent, _), failed, answers, bodies = plain
    assert submitted == 37 == succeeded + len(failed)
    assert set(bodies) == {body for body, _ in messages(37)}
    assert len(bodies) == 37 + resent and (resent > 0) is (mode == "withhold")  # none lost
    if keep_answers == "full" and mode == "ok":
        assert ("#0", repr({"id": "#0", "body": "b1"}), repr({"MessageId": "m-b1"})) in answers


def test_the_async_sender_gives_what_the_sync_one_gives() -> None:
    async def run(client: AsyncClient) -> AsyncSqsSender:
        sender = AsyncSqsSender(QUEUE, client=client, raise_on_failure=False, keep_answers="full")
        async with sender:
            for body, given in messages(23):
                await sender.send_message(body, **given)
        with pytest.raises(ConfigurationError):  # closed: the async engine refuses it
            await sender.send_message("late")
        return sender

    client = AsyncClient()
    sender = asyncio.run(run(client))
    assert summary(sender, client) == sent_with({}, "ok", 23, keep_answers="full")


def test_a_closed_sender_refuses_a_body_alone() -> None:
    client = Client()
    sender = SqsSender(QUEUE, client=client)
    sender.close()
    with pytest.raises(ConfigurationError):
        sender.send_message("late")
    assert client.requests == [] and sender.result.submitted == 0


LONE = "\ud800"


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        ("", EntryValidationError, "the body is empty"),
        (b"bytes", EntryValidationError, "must be a str"),
        ("x" + LONE, EntryValidationError, "the body"),
        ("a" * (MiB + 1), EntryTooLargeError, str(MiB)),
        ("é" * (MiB // 2) + "a", EntryTooLargeError, str(MiB)),  # counted in UTF-8 bytes
    ],
)
def test_bad_bodies_get_a_typed_error_naming_the_entry_before_anything_is_sent(
    body: Any, error: type[Exception], reason: str
) -> None:
    for given, named in ((None, "#0"), ("mine", "mine")):
        client = Client()
        sender = SqsSender(QUEUE, client=client)
        with pytest.raises(error) as raised:
            sender.send_message(body, id=given)
        assert isinstance(raised.value, EntryValidationError)
        assert raised.value.entry_id == named and reason in str(raised.value)
        sender.send_message("fine")
        sender.close()
        assert client.requests == [["fine"]] and sender.result.submitted == 1

        reporting = SqsSender(QUEUE, client=Client(), on_invalid="report", raise_on_failure=False)
        with reporting:
            reporting.send_message(body, id=given)
            reporting.send_message("fine")
        (failure,) = reporting.result.failed
        assert failure.entry_id == named and failure.code == error.__name__
        assert failure.entry == {"id": named, "body": body}
        assert reporting.result.succeeded == 1


@pytest.mark.parametrize("body", ["a" * MiB, "é" * (MiB // 2)])
def test_a_body_exactly_at_the_limit_is_sent_alone(body: str) -> None:
    client = Client()
    with SqsSender(QUEUE, client=client) as sender:
        sender.send_message(body)
        sender.send_message("next")
    assert client.requests == [[body], ["next"]]


def test_ids_are_kept_as_given_and_fifo_needs_a_group() -> None:
    client = Client()
    with SqsSender(QUEUE, client=client, keep_answers=True) as sender:
        sender.send_message("a", id=5)  # type: ignore[arg-type]  # an untyped caller's
        sender.send_message("b", id="")
        sender.send_message("c")
    assert [a.entry_id for a in sender.result.answers] == [5, "", "#0"]
    fifo = SqsSender(QUEUE + ".fifo", client=Client())
    with pytest.raises(EntryValidationError, match="group_id") as raised:
        fifo.send_message("a")
    assert raised.value.entry_id == "#0"
    fifo.send_message("a", group_id="g")
    assert fifo.close().succeeded == 1


def batch(n: int) -> list[Entry[Any]]:
    return [Entry(None, f"e{i}", {"MessageBody": "x"}, 1) for i in range(n)]


def answers(n: int) -> list[dict[str, Any]]:
    return [{"Id": str(i), "MessageId": f"m{i}"} for i in range(n)]


RESPONSES: dict[str, Callable[[int], dict[str, Any]]] = {
    "repeated": lambda n: {
        "Successful": [*answers(n)[:-1], *answers(1)] if n > 1 else answers(1) * 2
    },
    "unknown": lambda n: {"Successful": [*answers(n)[:-1], {"Id": str(n)}]},
    "both": lambda n: {"Successful": answers(n), "Failed": [{"Id": "0", "Code": "X"}]},
    "int ids": lambda n: {"Successful": [{"Id": i} for i in range(n)]},
    "not a number": lambda n: {"Successful": [*answers(n)[:-1], {"Id": "x"}]},
    "too many": lambda n: {"Successful": answers(n + 1)},
}


@pytest.mark.parametrize("n", [1, 2, 10, 11])
@pytest.mark.parametrize("kind", list(RESPONSES))
def test_a_response_that_does_not_answer_each_entry_once_is_refused(n: int, kind: str) -> None:
    with pytest.raises(InconsistentResponseError):
        by_id(batch(n), RESPONSES[kind](n), "sqs")


@pytest.mark.parametrize("n", [2, 10, 11])
def test_answers_in_any_order_go_to_their_entries(n: int) -> None:
    entries = batch(n)
    shuffled = answers(n)[::-1]
    sent = by_id(entries, {"Successful": shuffled}, "sqs")
    assert [(e.entry_id, a["MessageId"]) for e, a in sent.succeeded] == [
        (f"e{i}", f"m{i}") for i in reversed(range(n))
    ]
    assert sent == Sent(list(zip(entries[::-1], shuffled, strict=True)), [])


def test_sent_compares_by_value_and_is_not_hashable() -> None:
    entries = batch(1)
    assert Sent([(entries[0], {})], [], 0) == Sent([(entries[0], {})], [])
    assert Sent([], [], 1) != Sent([], [])
    assert Sent([], []) != ([], [], 0)
    with pytest.raises(TypeError):
        hash(Sent([], []))


def test_without_flush_interval_flush_and_close_still_send_a_partial_buffer() -> None:
    client = Client()
    sender = SqsSender(QUEUE, client=client, concurrency=2)
    sender.send_message("a")
    sender.flush()
    assert client.requests == [["a"]] and sender._engine._flusher is None
    sender.send_message("b")
    assert sender.close().succeeded == 2 and client.requests == [["a"], ["b"]]
    timed = SqsSender(QUEUE, client=Client(), flush_interval=60)
    timed.send_message("a")
    assert timed._engine._flusher is not None  # started by the first entry buffered
    assert timed.close().succeeded == 1
