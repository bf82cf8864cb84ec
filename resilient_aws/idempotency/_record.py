"""One idempotency record, in the shape Powertools for AWS Lambda stores it."""

from __future__ import annotations

from resilient_aws._dataclass import lean_dataclass

__all__ = ["COMPLETED", "INPROGRESS", "IdempotencyRecord"]

INPROGRESS = "INPROGRESS"
COMPLETED = "COMPLETED"


@lean_dataclass(frozen=True)
class IdempotencyRecord:
    """What the table holds for one key.

    ``expires_at`` is the TTL in epoch seconds; ``in_progress_until_ms`` (epoch milliseconds)
    is when an unfinished call's lease ends and the key may run again; ``data`` is the result as
    JSON text; ``validation`` the hash of the validated part of the payload; ``owner`` the token
    of the call that wrote an in-progress record (resilient_aws only; Powertools ignores it);
    ``error`` says why the result of a call that ran could not be stored: such a record stays in
    progress until it expires, and repeats fail loudly instead of running again (resilient_aws
    only; Powertools sees a call in progress).
    """

    key: str
    status: str
    expires_at: int
    in_progress_until_ms: int | None = None
    data: str | None = None
    validation: str | None = None
    owner: str | None = None
    error: str | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at < int(now)

    def lease_over(self, now: float) -> bool:
        return self.in_progress_until_ms is not None and self.in_progress_until_ms < int(now * 1000)
