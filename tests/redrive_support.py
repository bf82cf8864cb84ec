"""Helpers for the redrive tests: kill a run mid-way, and see what it left in flight."""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import ClientError


class Killed(Exception):  # noqa: N818 - a kill, not an error
    """Stands for the process dying: raised from a botocore hook, nobody catches it."""


class KillSwitch:
    """Raises :class:`Killed` before the ``after``-th+1 call of ``operation`` on ``client``
    (the call is never sent), like a process killed between two requests."""

    def __init__(self, client: Any, operation: str, after: int) -> None:
        self.client = client
        self.operation = operation
        self.after = after
        self.calls = 0
        self.fired = False
        self.lock = threading.Lock()
        self.event = f"before-call.sqs.{operation}"
        client.meta.events.register(self.event, self._before, unique_id=f"kill-{id(self)}")

    def _before(self, **_: Any) -> None:
        with self.lock:
            self.calls += 1
            if self.calls > self.after:
                self.fired = True
                raise Killed(f"killed before {self.operation} #{self.calls}")

    def remove(self) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"kill-{id(self)}")


class ReceiptSpy:
    """Records the newest receipt handle of every message ``client`` receives."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.handles: dict[str, str] = {}
        self.lock = threading.Lock()
        client.meta.events.register(
            "after-call.sqs.ReceiveMessage", self._after, unique_id=f"spy-{id(self)}"
        )

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        with self.lock:
            for message in parsed.get("Messages", []):
                self.handles[message["MessageId"]] = message["ReceiptHandle"]

    def release(self, sqs: Any, url: str) -> int:
        """Make every message of ``url`` this spy saw visible again (what the end of its
        visibility timeout would do); returns how many were still there."""
        released = 0
        for handle in list(self.handles.values()):
            try:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
                )
                released += 1
            except ClientError:  # deleted meanwhile, or of another queue: nothing to release
                pass
        return released

    def remove(self) -> None:
        self.client.meta.events.unregister(
            "after-call.sqs.ReceiveMessage", unique_id=f"spy-{id(self)}"
        )


_ATOMIC = (
    "receive_message",
    "send_message",
    "send_message_batch",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
)


def make_moto_sqs_atomic(monkeypatch: Any) -> None:
    """Serialize moto's SQS calls, and free a FIFO group whose messages' visibility ran out.

    On AWS each call is atomic; in moto two concurrent receives can both take messages of one
    FIFO group (each computes the locked groups before either marks its messages), and a delete
    that rebuilds the message list can drop a message sent meanwhile. And when the visibility of
    several in-flight messages of a group has run out, moto frees them one at a time while it
    walks the queue, so it can hand out a later message of the group before an earlier one; SQS
    returns the group from its first message. Tests that run several workers against moto in
    process, or restart a killed run, need SQS's behaviour, not those races."""
    from moto.sqs.models import SQSBackend

    lock = threading.RLock()
    for name in _ATOMIC:
        original = getattr(SQSBackend, name)

        def atomic(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(SQSBackend, name, atomic)
    receive = SQSBackend.receive_message

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            queue = self.get_queue(queue_name)
            for message in list(queue.pending_messages):
                if message.visible:  # no longer in flight: its group is free again
                    queue.pending_messages.discard(message)
            return receive(self, queue_name, *args, **kwargs)

    monkeypatch.setattr(SQSBackend, "receive_message", receive_message)
