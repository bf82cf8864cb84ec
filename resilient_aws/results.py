"""What a batch writer or reader reports when it is done: every entry accounted for.

It imports nothing of the library but the dataclass helper: errors, the retry core and the batch engine all build on it.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, field
from typing import Any, Generic, TypeVar

from resilient_aws._dataclass import lean_dataclass

__all__ = ["Answer", "BatchResult", "FailedEntry"]

E = TypeVar("E")


@lean_dataclass(frozen=True)
class FailedEntry(Generic[E]):
    """An entry the service did not accept, with the service's ``code`` and ``message``.

    ``entry`` is the caller's own object; ``entry_id`` names it in logs and reprs (the payload is
    never printed). ``retryable`` says whether the error was worth retrying, ``attempts`` how many
    times the entry was sent, and ``gave_up`` why the core stopped re-sending a retryable entry
    (``"attempts"``, ``"elapsed"``, ``"deadline"``, ``"budget"``, ``"stop"``, or ``"closed"``:
    withheld from a request another thread made as the writer was closed), ``None`` if the error
    was permanent.
    """

    entry: E = field(repr=False)
    entry_id: str
    code: str
    message: str = ""
    retryable: bool = False
    attempts: int = 1
    gave_up: str | None = None


class Answer(Generic[E]):
    """The service's answer for one entry that succeeded (message id, sequence number...).

    By default (``keep_answers=True``) an answer is compact: ``entry`` is ``None`` and
    ``response`` holds only the service's identifiers (``MessageId``, ``SequenceNumber``,
    ``ShardId``, ``EventId``, ``RecordId``), so that a result never holds the caller's payloads.
    ``keep_answers="full"`` keeps the caller's entry and the whole response.

    Immutable, compared by value; one is built per entry, so it is a plain slotted class.
    """

    __slots__ = ("entry", "entry_id", "response")

    entry: E | None
    entry_id: str
    response: Any

    def __init__(self, entry: E | None, entry_id: str, response: Any) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "entry", entry)
        setattr_(self, "entry_id", entry_id)
        setattr_(self, "response", response)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: Any) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.entry, self.entry_id, self.response) == (
            other.entry,
            other.entry_id,
            other.response,
        )

    def __hash__(self) -> int:
        return hash((self.entry, self.entry_id, self.response))

    def __repr__(self) -> str:
        return f"Answer(entry_id={self.entry_id!r}, response={self.response!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Answer, (self.entry, self.entry_id, self.response))


@lean_dataclass
class BatchResult(Generic[E]):
    """The account of one writer or reader: ``submitted == succeeded + len(failed) + deduplicated``.

    ``failed`` names every entry that finally failed, with the service's code and message.
    ``deduplicated`` counts entries replaced by a later entry for the same key before they were
    sent (last write wins). ``requests`` counts requests sent, ``resent`` entries sent again.
    ``answers`` holds the service's answers of the entries that succeeded, the newest
    ``max_answers`` of them (10,000 by default; ``answers_dropped`` counts older ones let go), so
    that a long-lived writer's memory does not grow with what it sent.
    """

    submitted: int = 0
    succeeded: int = 0
    deduplicated: int = 0
    requests: int = 0
    resent: int = 0
    failed: list[FailedEntry[E]] = field(default_factory=list)
    answers: list[Answer[E]] = field(default_factory=list)
    answers_dropped: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        text = (
            f"{self.submitted} submitted, {self.succeeded} succeeded, {len(self.failed)} failed, "
            f"{self.deduplicated} deduplicated, {self.requests} requests, {self.resent} re-sent"
        )
        if self.failed:
            shown = ", ".join(f"{f.entry_id} ({f.code})" for f in self.failed[:5])
            more = f" and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
            text += f"; failed: {shown}{more}"
        return text
