"""RedriveReport: what a redrive run did with every message it received."""

from __future__ import annotations

import uuid
from dataclasses import field
from typing import TYPE_CHECKING, Any

from resilient_aws._dataclass import lean_dataclass

if TYPE_CHECKING:
    from resilient_aws.redrive._queues import QueueInfo

__all__ = ["RedriveReport", "start_report"]

_SHOWN = 5


@lean_dataclass
class RedriveReport:
    """The account of one redrive run: every message received is in exactly one bucket.

    - ``moved``: delivered to the target and deleted from the source;
    - ``skipped``: left in the source because the filter did not select it;
    - ``would_move``: dry runs only, the ids of the messages that would move;
    - ``failed``: not delivered, left in the source (message id -> ``"Code: message"``);
    - ``undeleted``: delivered, but the delete from the source finally failed: the message is
      still there and the next run delivers it again (message id -> reason);
    - ``expired``: stream pointers whose records the stream no longer holds (message id ->
      reason); left in the source unless the run was asked to delete them.

    ``received`` counts distinct messages. ``duplicates`` counts messages received again after
    this run had delivered them (SQS delivers at least once; a delete may come too late): they
    are deleted, not delivered a second time. ``resent`` counts entries the batch engine sent
    again after a failed attempt; if a failure hid a success (a lost response), the target holds
    that message twice. For stream pointers, ``resolved`` counts pointers whose records were all
    read and delivered, ``records`` the stream records delivered. ``native`` describes a
    ``StartMessageMoveTask`` run. When each message goes back to its own source queue (an SQS DLQ
    fed by several queues), ``targets`` counts the messages moved to each queue (dry runs: that
    would move) and ``routes`` names, in a dry run, the queue each message would go to (message
    id -> queue URL); ``target`` is then ``None``. ``expected`` is the source's approximate depth at the start
    (capped by ``max_messages``), for progress displays.
    """

    source: str
    target: str | None = None
    kind: str = "sqs"
    run_id: str = ""
    dry_run: bool = False
    expected: int | None = None
    received: int = 0
    moved: int = 0
    skipped: int = 0
    would_move: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    undeleted: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    resent: int = 0
    resolved: int = 0
    expired: dict[str, str] = field(default_factory=dict)
    records: int = 0
    native: dict[str, Any] | None = None
    targets: dict[str, int] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing failed: no message left undelivered or undeleted, no move task failed.
        Expired stream pointers are reported, not counted as failures."""
        native_ok = self.native is None or self.native.get("status") == "COMPLETED"
        return not self.failed and not self.undeleted and native_ok

    @property
    def handled(self) -> int:
        """Messages accounted for so far (for progress displays)."""
        if self.native is not None:
            return self.moved
        return (
            self.moved
            + self.skipped
            + len(self.would_move)
            + len(self.failed)
            + len(self.undeleted)
            + len(self.expired)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(report.to_dict())``), ``ok`` included."""
        return {
            "kind": self.kind,
            "source": self.source,
            "target": self.target,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "expected": self.expected,
            "received": self.received,
            "moved": self.moved,
            "skipped": self.skipped,
            "would_move": list(self.would_move),
            "failed": dict(self.failed),
            "undeleted": dict(self.undeleted),
            "duplicates": self.duplicates,
            "resent": self.resent,
            "resolved": self.resolved,
            "expired": dict(self.expired),
            "records": self.records,
            "native": dict(self.native) if self.native is not None else None,
            "targets": dict(self.targets),
            "routes": dict(self.routes),
        }

    def __str__(self) -> str:
        if self.native is not None:
            text = (
                f"{self.source} -> {self.target or 'source queues'}: move task "
                f"{self.native.get('status')}, {self.moved} moved"
            )
            reason = self.native.get("failure_reason")
            return f"{text}; {reason}" if reason else text
        verb = "would move" if self.dry_run else "moved"
        moved = len(self.would_move) if self.dry_run else self.moved
        parts = [f"{self.received} received", f"{moved} {verb}", f"{self.skipped} skipped"]
        parts.append(f"{len(self.failed)} failed")
        if self.undeleted:
            parts.append(f"{len(self.undeleted)} delivered but not deleted")
        if self.kind == "stream-pointers":
            parts += [
                f"{self.resolved} pointers resolved",
                f"{len(self.expired)} expired",
                f"{self.records} records",
            ]
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates removed")
        if self.resent:
            parts.append(f"{self.resent} re-sent")
        if self.targets:
            parts.append(
                "by target: "
                + ", ".join(f"{count} to {url}" for url, count in sorted(self.targets.items()))
            )
        text = f"{self.source} -> {self.target or 'source queues'}: " + ", ".join(parts)
        problems = {**self.failed, **self.undeleted}
        if problems:
            shown = ", ".join(
                f"{k} ({v.split(':', 1)[0]})" for k, v in list(problems.items())[:_SHOWN]
            )
            more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
            text += f"; not moved: {shown}{more}"
        return text


def start_report(
    source: QueueInfo,
    *,
    kind: str,
    target: str | None,
    run_id: str | None,
    dry_run: bool,
    max_messages: int | None,
) -> RedriveReport:
    """The empty report of a run about to drain ``source``: what it expects to receive."""
    return RedriveReport(
        source=source.url,
        target=target,
        kind=kind,
        run_id=run_id or uuid.uuid4().hex,
        dry_run=dry_run,
        expected=min(source.depth, max_messages) if max_messages else source.depth,
    )
