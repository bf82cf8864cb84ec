"""Make moto's SQS cost what SQS costs: constant work per message, not a scan of the queue.

moto 5 computes each queue's approximate counts (three scans of the queue, each calling a
datetime-based clock per message) for every message it stores and every message it returns
(the retention check reads them), and finds a receipt handle by scanning every message. A
queue of 5,000 messages then takes seconds per ``ReceiveMessage``: the redrive's reliability
test and benchmark need thousands of messages in one queue. This keeps moto's behaviour and
replaces the cost:

- its clock (``unix_time``) is ``time.time()``, or follows ``clock`` (a monotonic clock such as
  a ``FakeClock``), so that visibility timeouts end when the test advances that clock; it is
  read once per look at the queue, not twice per message;
- the retention check reads the queue's retention period directly; receipt handles are uuids
  instead of 185 letters drawn one at a time; attribute names are converted once;
- deletes and visibility changes look among the in-flight messages first;
- with ``approximate_counts``, ``ApproximateNumberOfMessages*`` come from list sizes (no delays
  are used by the callers that ask for it).

Private: used by the redrive tests and ``bench/redrive.py``. Not thread-safe by itself: moto's
calls race each other anyway (see the tests' ``make_moto_sqs_atomic``).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["speed_up_moto_sqs"]


def speed_up_moto_sqs(
    clock: Callable[[], float] | None = None, *, approximate_counts: bool = False
) -> Callable[[], None]:
    """Install the shortcuts; returns the function that removes them."""
    import moto.sqs.models as models
    from moto.sqs.exceptions import InvalidParameterValue, ReceiptHandleIsInvalid

    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)

    original_unix_time = getattr(models, "unix_time")  # noqa: B009 - not re-exported for mypy
    offset = time.time() - clock() if clock is not None else 0.0

    def unix_time(dt: Any = None) -> float:
        if dt is not None:
            return float(original_unix_time(dt))
        return clock() + offset if clock is not None else time.time()

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        queue = self.get_queue(queue_name)
        retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
        return bool(retain_until > unix_time())

    def find(queue: Any, receipt_handle: str) -> Any:
        for message in list(queue.pending_messages):
            if message.had_receipt_handle(receipt_handle):
                return message
        for message in queue._messages:
            if message.had_receipt_handle(receipt_handle):
                return message
        return None

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # deleted already: SQS answers success again
        message = find(self, receipt_handle)
        if message is None:
            raise ReceiptHandleIsInvalid()
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        self._messages.remove(message)

    def change_message_visibility(
        self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
    ) -> None:
        queue = self.get_queue(queue_name)
        message = find(queue, receipt_handle)
        if message is None:
            raise ReceiptHandleIsInvalid
        if (
            unix_time_millis() + int(visibility_timeout) * 1000 - message.sent_timestamp
            > 43_200_000
        ):
            raise InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: "
                "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"
            )
        message.change_visibility(visibility_timeout)
        if message.visible:
            queue.pending_messages.discard(message)

    def messages(self: Any) -> list[Any]:
        # moto asks two properties per message, each reading the clock: read it once.
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def generate_receipt_handle() -> str:
        # moto draws 185 random letters one by one; a uuid is as unique and costs one call.
        return "rh-" + uuid.uuid4().hex * 4

    patch(models, "unix_time", unix_time)
    patch(models, "generate_receipt_handle", generate_receipt_handle)
    # Every message stored re-derives the attribute names of its queue: same answer each time.
    patch(
        models,
        "camelcase_to_underscores",
        functools.lru_cache(maxsize=None)(
            getattr(models, "camelcase_to_underscores")  # noqa: B009 - not re-exported for mypy
        ),
    )
    patch(models.Queue, "messages", property(messages))
    patch(models, "unix_time_millis", unix_time_millis)
    patch(
        models.SQSBackend,
        "is_message_valid_based_on_retention_period",
        is_message_valid_based_on_retention_period,
    )
    patch(models.Queue, "delete_message", delete_message)
    patch(models.SQSBackend, "change_message_visibility", change_message_visibility)
    if approximate_counts:
        patch(models.Queue, "approximate_number_of_messages_delayed", property(lambda self: 0))
        patch(
            models.Queue,
            "approximate_number_of_messages_not_visible",
            property(lambda self: len(self._pending_messages)),
        )
        patch(
            models.Queue,
            "approximate_number_of_messages",
            property(lambda self: len(self._messages) - len(self._pending_messages)),
        )

    def undo() -> None:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
        saved.clear()

    return undo
