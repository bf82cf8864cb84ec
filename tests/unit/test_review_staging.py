"""Review of SqsSender's staging (BatchEngine.send_staged): each test failed at 083c8fc, where
the staging first came without a lock."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest

from resilient_aws._batching import Entry
from resilient_aws.batch import SqsSender
from resilient_aws.errors import ConfigurationError
from resilient_aws.limits import SQS_BATCH
from resilient_aws.testing import FakeClock
from tests.unit.test_sqs_staging import QUEUE, Recording


def balanced(sender: SqsSender) -> bool:
    result = sender.result
    return result.submitted == result.succeeded + len(result.failed) + result.deduplicated


# -- 1. a closed writer's stage is absorbed by a reader of the result (or a flush) ----------------


class ReadOnAppend(list):  # type: ignore[type-arg]
    """A stage whose append lets another thread read ``sender.result`` (or flush) right after
    the producer appended, before it looks at ``engine.closed``."""

    def __init__(self, sender: SqsSender, action: str) -> None:
        super().__init__()
        self.sender = sender
        self.action = action

    def append(self, entry: Any) -> None:
        super().append(entry)
        if self.action == "result":
            self.sender.result  # noqa: B018  # a monitoring thread reads the result
        else:
            with contextlib.suppress(ConfigurationError):
                self.sender._engine.flush()  # another thread flushes


def test_a_message_sent_after_close_is_refused_even_if_the_result_is_read_meanwhile() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client)
    sender.send_message("before")
    sender.close()
    sender._engine.staged = sender._staged = ReadOnAppend(sender, "result")
    refused = False
    try:
        sender.send_message("late")  # at 083c8fc: returns, the message counted and never sent
    except ConfigurationError:
        refused = True
    assert client.bodies() == ["before"]
    assert balanced(sender), sender.result  # at 083c8fc: submitted 2, succeeded 1, failed 0
    assert refused


def test_a_message_sent_after_close_is_refused_even_if_another_thread_flushes_meanwhile() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client, raise_on_failure=False)
    sender.send_message("before")
    sender.close()
    sender._engine.staged = sender._staged = ReadOnAppend(sender, "flush")
    with pytest.raises(ConfigurationError, match="closed"):
        sender.send_message("late")
    # at 083c8fc: the producer is not told, and the message, never sent, is reported
    # OutcomeUnknown ("may or may not have been applied") in the result close() returned
    assert [f.code for f in sender.result.failed] == []


# -- 2. a KeyboardInterrupt inside absorb_staged's loop ----------------------------------------
# CPython checks for a pending signal at a loop's back edge (JUMP_BACKWARD): Ctrl-C while
# absorb_staged (called by add(), flush(), the result property) walks the stage raises there,
# after `del staged[:count]` and before `_serial`, `_pending_bytes` and `submitted` are updated.


class InterruptedEntry(Entry[Any]):
    """An entry whose size, read by absorb_staged, is where a pending Ctrl-C goes off."""

    armed = False

    @property  # type: ignore[override]
    def size(self) -> int:
        if InterruptedEntry.armed:
            InterruptedEntry.armed = False
            raise KeyboardInterrupt
        return self._size

    @size.setter
    def size(self, value: int) -> None:
        self._size = value


def test_ctrl_c_while_the_stage_is_absorbed_loses_no_message() -> None:
    client = Recording()
    sender = SqsSender(QUEUE, client=client, raise_on_failure=False)
    engine = sender._engine
    sender.send_message("m0")
    engine.staged.append(InterruptedEntry({"body": "m1"}, "#1", {"MessageBody": "m1"}, 2))
    sender.send_message("m2")
    assert len(engine.staged) == 3  # three messages accepted: send_message returned for each
    InterruptedEntry.armed = True
    with pytest.raises(KeyboardInterrupt), sender:
        # a message that takes the slow path: add() absorbs the stage first, and Ctrl-C
        # goes off while it does
        sender.send_message("m3", delay_seconds=0)
        # (the with block's exit closes the sender: what is buffered is sent)
    sent = client.bodies()
    result = sender.result
    reported = [f.entry_id for f in result.failed]
    # every message accepted is sent or reported, once, and the result adds up
    for body, entry_id in (("m0", "#0"), ("m1", "#1"), ("m2", "#2")):
        assert sent.count(body) + reported.count(entry_id) == 1, (sent, reported)
    assert balanced(sender), result  # at 083c8fc: 0 submitted, 1 succeeded


def test_ctrl_c_while_the_stage_is_absorbed_does_not_reuse_a_buffer_slot() -> None:
    # the interrupted absorb put entries in the buffer under slots it never recorded in
    # `_serial`: the next add() takes the same slot and overwrites one of them
    client = Recording()
    sender = SqsSender(QUEUE, client=client, raise_on_failure=False)
    engine = sender._engine
    sender.send_message("m0")
    engine.staged.append(InterruptedEntry({"body": "m1"}, "#1", {"MessageBody": "m1"}, 2))
    InterruptedEntry.armed = True
    with pytest.raises(KeyboardInterrupt):
        sender.result  # noqa: B018  # e.g. a progress line read as Ctrl-C comes
    sender.send_message("m2", delay_seconds=0)  # the caller goes on (it caught the Ctrl-C)
    sender.close()
    assert sorted(client.bodies()) == ["m0", "m1", "m2"]  # at 083c8fc: m0 overwritten by m2
    assert balanced(sender), sender.result


# -- 3. (pre-existing, also at ea756e7) Ctrl-C after a request's chunk is taken, before it is sent


class InterruptingClock:
    """A policy clock where a pending Ctrl-C goes off once read by ``_sending`` (the count of a
    request just before it leaves): the chunk is out of the buffer (or the stage), not sent."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.armed = True

    def __call__(self) -> float:
        import sys

        if self.armed and sys._getframe(1).f_code.co_name == "_sending":
            self.armed = False
            raise KeyboardInterrupt
        return self.clock.monotonic()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_ctrl_c_just_before_a_staged_request_leaves_reports_its_messages(concurrency: int) -> None:
    client = Recording()
    clock = InterruptingClock()
    sender = SqsSender(
        QUEUE,
        client=client,
        concurrency=concurrency,
        policy=clock.clock.policy(clock=clock),
        raise_on_failure=False,
    )
    with pytest.raises(KeyboardInterrupt), sender:
        for i in range(SQS_BATCH.max_entries):
            sender.send_message(f"m{i}")
    assert client.bodies() == []
    result = sender.result
    # never sent: each reported NotSent (at 083c8fc: 10 submitted, none succeeded nor failed)
    assert balanced(sender), result
    assert [f.code for f in result.failed] == ["NotSent"] * SQS_BATCH.max_entries


def test_ctrl_c_as_entries_are_given_up_reports_each_entry_once() -> None:
    # _paced gives up the entries whose time is up (a listener hears it); a Ctrl-C that goes
    # off there reports the rest NotSent, and not the given-up ones a second time
    clock = FakeClock()

    def interrupt_on_give_up(event: Any) -> None:
        if event.kind == "give_up":
            raise KeyboardInterrupt

    policy = clock.policy(base_delay=1.0, max_elapsed=0.5, listeners=(interrupt_on_give_up,))

    class WithholdFirstFive(Recording):
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
            self.requests.append([e["MessageBody"] for e in Entries])
            if len(self.requests) == 1:
                clock.advance(1.0)  # the first five's time is up before they go again
                held = [
                    {"Id": e["Id"], "Code": "ServiceUnavailable", "SenderFault": False}
                    for e in Entries[:5]
                ]
                ok = [{"Id": e["Id"], "MessageId": "m"} for e in Entries[5:]]
                return {"Successful": ok, "Failed": held}
            return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}

    client = WithholdFirstFive()
    sender = SqsSender(QUEUE, client=client, policy=policy, concurrency=1, raise_on_failure=False)
    with pytest.raises(KeyboardInterrupt), sender:
        for i in range(15):
            sender.send_message(f"m{i}")
    result = sender.result
    codes = Counter(f.entry_id for f in result.failed)
    assert all(count == 1 for count in codes.values()), codes
    assert balanced(sender), result
    assert result.submitted == 15
