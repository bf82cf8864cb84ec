"""SqsSender stages plain messages a request's worth at a time (``BatchEngine.send_staged``):
what callers see is what buffering each message gives them. Every message is counted, sent
once, kept in order, retried, reported or warned about, whatever path it took."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections import Counter
from typing import Any

import pytest

from resilient_aws._batching import Entry
from resilient_aws.batch import SqsSender
from resilient_aws.errors import ConfigurationError
from resilient_aws.limits import SQS_BATCH
from resilient_aws.testing import FakeClock

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


class Recording:
    """Accepts every message (from any thread) and records each request's bodies."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self._lock:
            self.requests.append([e["MessageBody"] for e in Entries])
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}

    def bodies(self) -> list[str]:
        return [body for request in self.requests for body in request]


class Withholding(Recording):
    """Withholds the messages named in ``withhold`` the first time each is sent."""

    def __init__(self, withhold: set[str]) -> None:
        super().__init__()
        self.withhold = set(withhold)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        with self._lock:
            self.requests.append([e["MessageBody"] for e in Entries])
            held = [e for e in Entries if e["MessageBody"] in self.withhold]
            self.withhold -= {e["MessageBody"] for e in held}
        ok = [{"Id": e["Id"], "MessageId": "m"} for e in Entries if e not in held]
        failed = [
            {"Id": e["Id"], "Code": "ServiceUnavailable", "SenderFault": False, "Message": "busy"}
            for e in held
        ]
        return {"Successful": ok, "Failed": failed}


def fast(clock: FakeClock | None = None) -> Any:
    return (clock or FakeClock()).policy(base_delay=0.01, max_delay=0.05)


def test_staged_messages_count_as_submitted_before_they_are_sent() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client)
    for i in range(3):
        sender.send_message(f"m{i}")
    assert client.requests == []  # not a request's worth yet
    assert sender.result.submitted == 3
    sender.close()
    assert client.requests == [["m0", "m1", "m2"]]
    assert sender.result.submitted == sender.result.succeeded == 3


def test_a_sender_dropped_with_staged_messages_warns_with_their_count() -> None:
    sender = SqsSender(QUEUE, client=Recording())
    for i in range(3):
        sender.send_message(f"m{i}")
    del sender
    with pytest.warns(ResourceWarning, match="3 entries never sent"):
        gc.collect()


def test_a_plain_message_after_close_is_refused_not_staged() -> None:
    sender = SqsSender(QUEUE, client=Recording())
    sender.close()
    with pytest.raises(ConfigurationError, match="closed"):
        sender.send_message("late")
    assert sender._engine.staged == []


@pytest.mark.parametrize("concurrency", [1, 4])
def test_every_message_of_a_staged_request_that_was_withheld_is_sent_again(
    concurrency: int,
) -> None:
    # Two messages of one request withheld: each goes back to the buffer with a place of its
    # own (a staged message never had one) and is sent once more.
    client = Withholding({"m3", "m7"})
    sender = SqsSender(QUEUE, client=client, policy=fast(), concurrency=concurrency)
    with sender:
        for i in range(25):
            sender.send_message(f"m{i}")
    assert Counter(client.bodies()) == Counter({f"m{i}": 1 for i in range(25)} | {"m3": 2, "m7": 2})
    assert client.requests[1][:2] == ["m3", "m7"]  # sent again first, in order
    result = sender.result
    assert result.submitted == result.succeeded == 25
    assert result.resent == 2 and not result.failed


def test_messages_staged_and_added_leave_in_the_order_they_were_sent() -> None:
    # 100 bytes a request: bodies of up to 10 bytes are staged, larger ones added; the buffer
    # takes what was staged before a larger body, and while it holds anything, every body
    client = Recording()
    limits = dataclasses.replace(SQS_BATCH, max_request_bytes=100)
    with SqsSender(QUEUE, client=client, limits=limits) as sender:
        sender.send_message("a")
        sender.send_message("b")
        sender.send_message("x" * 50)
        sender.send_message("c")
        sender.send_message("y" * 47)
        sender.send_message("d")
    assert client.requests == [["a", "b", "x" * 50, "c", "y" * 47], ["d"]]


def test_a_request_is_full_by_bytes_only_once_its_last_staged_body_is_sent() -> None:
    client = Recording()
    limits = dataclasses.replace(SQS_BATCH, max_request_bytes=100)
    with SqsSender(QUEUE, client=client, limits=limits) as sender:
        for i in range(10):
            sender.send_message(f"{i:010d}")  # 10 bytes: ten make exactly one request
        assert client.requests == [[f"{i:010d}" for i in range(10)]]
        sender.send_message("next")
        assert len(client.requests) == 1


def test_closing_after_an_interruption_reports_staged_messages_not_sent() -> None:
    sender = SqsSender(QUEUE, client=Recording(), raise_on_failure=False)
    for i in range(3):
        sender.send_message(f"m{i}")
    sender._engine._fail_unsent()  # what close() does once its flush was interrupted
    assert [(f.entry_id, f.code) for f in sender.result.failed] == [
        ("#0", "NotSent"),
        ("#1", "NotSent"),
        ("#2", "NotSent"),
    ]
    assert sender._engine.staged == []


def test_no_message_waits_in_the_stage_for_the_interval_flusher() -> None:
    # The interval flusher looks at the buffer alone: with flush_interval, nothing is staged.
    client = Recording()
    with SqsSender(QUEUE, client=client, flush_interval=0.02) as sender:
        sender.send_message("lonely")
        waited = 0.0
        while not client.requests and waited < 10:
            time.sleep(0.01)
            waited += 0.01
        assert client.requests == [["lonely"]]


def test_async_engines_never_stage() -> None:
    from resilient_aws.batch import AsyncSqsSender

    sender = AsyncSqsSender(QUEUE, client=object())
    assert sender._max_staged == 0 and not sender._engine.stages


@pytest.mark.parametrize("concurrency", [1, 4])
def test_producers_on_many_threads_send_every_message_once(concurrency: int) -> None:
    client = Recording()
    threads, per_thread = 8, 500
    with SqsSender(QUEUE, client=client, concurrency=concurrency) as sender:

        def produce(t: int) -> None:
            for i in range(per_thread):
                sender.send_message(f"t{t}-{i}")

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    sent = client.bodies()
    # each once (two producers' requests may reach the client in either order)
    assert len(sent) == len(set(sent)) == threads * per_thread
    assert all(len(r) <= SQS_BATCH.max_entries for r in client.requests)
    result = sender.result
    assert result.submitted == result.succeeded == threads * per_thread


def test_an_entry_sent_back_gets_a_place_of_its_own() -> None:
    # BatchEngine._send_back: entries that never had a place in the buffer get a new one each
    sender = SqsSender(QUEUE, client=Recording())
    engine = sender._engine
    entries: list[Entry[Any]] = [Entry({}, f"e{i}", {"MessageBody": "x"}, 1) for i in range(3)]
    slots = set()
    for entry in entries:
        assert entry.slot is None
    from resilient_aws.retry import FailedEntry

    engine._send_back(
        [FailedEntry(e, e.entry_id, "ServiceUnavailable", "", retryable=True) for e in entries],
        stalled=False,
        botocore=0,
    )
    slots = {entry.slot for entry in entries}
    assert None not in slots and len(slots) == 3
    assert list(engine._pending.values()) == entries
    engine._pending.clear()
    engine._pending_bytes = 0
    sender.close()


def staged_entries(bodies: list[str]) -> list[Entry[Any]]:
    return [Entry({}, body, {"MessageBody": body}, len(body)) for body in bodies]


def test_send_staged_sends_nothing_short_of_a_request() -> None:
    # another producer thread took the staged request first: nothing is left to send
    client = Recording()
    sender = SqsSender(QUEUE, client=client)
    engine = sender._engine
    engine.staged.extend(staged_entries(["a", "b", "c"]))
    engine.send_staged()
    assert client.requests == [] and len(engine.staged) == 3
    sender.close()
    assert client.requests == [["a", "b", "c"]]


def test_send_staged_lets_what_waits_in_the_buffer_go_first() -> None:
    # an entry in the buffer (sent back by another thread) while a request's worth was staged
    client = Recording()
    sender = SqsSender(QUEUE, client=client, concurrency=1)
    engine = sender._engine
    engine.add(staged_entries(["back"])[0])
    engine.staged.extend(staged_entries([f"s{i}" for i in range(SQS_BATCH.max_entries)]))
    engine.send_staged()
    assert client.requests == [["back", *(f"s{i}" for i in range(9))]]
    sender.close()
    assert client.requests[1] == ["s9"]
    assert sender.result.submitted == sender.result.succeeded == 11


class ClosingOnAppend(list):  # type: ignore[type-arg]
    """A stage whose first append lets the writer close before the producer looks again."""

    def __init__(self, sender: SqsSender) -> None:
        super().__init__()
        self.sender = sender

    def append(self, entry: Any) -> None:
        super().append(entry)
        if len(self) == 1:
            self.sender.close()


def test_a_message_staged_as_the_writer_closes_is_sent_by_the_close() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client)
    sender._engine.staged = sender._staged = ClosingOnAppend(sender)
    sender.send_message("just in time")  # close() took it: no error, and it was sent
    assert client.requests == [["just in time"]]
    assert sender.result.submitted == sender.result.succeeded == 1


class AppendedAsTaken(list):  # type: ignore[type-arg]
    """A stage to which another producer appends while its front is being taken."""

    def __init__(self, late: Entry[Any]) -> None:
        super().__init__()
        self.late: Entry[Any] | None = late
        self.armed = False

    def __getitem__(self, index: Any) -> Any:
        taken = super().__getitem__(index)
        if self.armed and self.late is not None:
            late, self.late = self.late, None
            self.append(late)
        return taken


def test_a_message_staged_while_the_stage_is_absorbed_is_absorbed_too() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client)
    late = staged_entries(["late"])[0]
    stage = sender._engine.staged = sender._staged = AppendedAsTaken(late)
    for i in range(3):
        sender.send_message(f"m{i}")
    stage.armed = True
    assert sender.result.submitted == 4  # reading the result took the three, and the late one
    assert list(stage) == []
    sender.close()
    assert client.bodies() == ["m0", "m1", "m2", "late"]
    assert sender.result.submitted == sender.result.succeeded == 4


def test_a_message_staged_while_a_request_is_taken_stays_staged() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client)
    late = staged_entries(["late"])[0]
    stage = sender._engine.staged = sender._staged = AppendedAsTaken(late)
    for i in range(SQS_BATCH.max_entries - 1):
        sender.send_message(f"m{i}")
    stage.armed = True
    sender.send_message("last")  # the tenth: send_staged takes ten, the late one stays
    assert client.bodies() == [*(f"m{i}" for i in range(9)), "last"]
    assert list(stage) == [late]
    sender.close()
    assert client.bodies()[-1] == "late"
    assert sender.result.submitted == sender.result.succeeded == 11


@pytest.mark.parametrize("concurrency", [1, 4])
def test_producers_and_a_reader_of_the_result_on_many_threads_lose_nothing(
    concurrency: int,
) -> None:
    import sys

    client = Recording()
    threads, per_thread = 4, 1000
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        with SqsSender(QUEUE, client=client, concurrency=concurrency) as sender:
            done = threading.Event()
            overcounted: list[int] = []

            def produce(t: int) -> None:
                for i in range(per_thread):
                    sender.send_message(f"t{t}-{i}")

            def read() -> None:
                while not done.is_set():
                    submitted = sender.result.submitted
                    if submitted > threads * per_thread:
                        overcounted.append(submitted)

            reader = threading.Thread(target=read)
            reader.start()
            workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            done.set()
            reader.join()
    finally:
        sys.setswitchinterval(interval)
    assert overcounted == []
    sent = client.bodies()
    assert len(sent) == len(set(sent)) == threads * per_thread
    result = sender.result
    assert result.submitted == result.succeeded == threads * per_thread


def test_send_staged_sends_nothing_once_the_writer_is_closing() -> None:
    # close() set `closed` and has yet to report what is staged: it is not sent any more
    client = Recording()
    sender = SqsSender(QUEUE, client=client, raise_on_failure=False)
    engine = sender._engine
    engine.staged.extend(staged_entries([f"s{i}" for i in range(SQS_BATCH.max_entries)]))
    engine.closed = True
    engine.send_staged()
    assert client.requests == []
    engine._fail_unsent()
    assert [f.code for f in sender.result.failed] == ["NotSent"] * SQS_BATCH.max_entries
