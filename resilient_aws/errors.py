"""Every exception resilient_aws raises on purpose.

The hierarchy::

    ResilientAWSError
    ├── ConfigurationError        (also ValueError) a policy or option is invalid; names the field
    ├── EntryValidationError      (also ValueError) an entry can never be sent; names the entry
    │   ├── EntryTooLargeError        over the service's per-entry byte limit
    │   ├── DuplicateEntryError       two entries share an id or key in one batch
    │   ├── UnsupportedValueError     a value the service cannot represent (NaN, an empty set…)
    │   └── InvalidKeyError           a key attribute missing, empty or of the wrong type
    ├── UnknownTableError         (also LookupError) the table does not exist
    ├── InvalidCursorError        (also ValueError) a resume cursor that is corrupt or for another scan
    ├── BatchError                some entries finally failed; ``result`` accounts for every entry
    │   ├── BatchWriteError
    │   └── BatchGetError
    ├── IdempotencyError          an idempotent call could not run or replay; ``key`` names it
    │   ├── IdempotencyKeyError       (also ValueError) the key expression selected nothing
    │   ├── IdempotencyValidationError  a repeat of a key came with a different payload
    │   ├── IdempotencyInProgressError  a call with the same key is still running
    │   ├── IdempotencyResultError    (also TypeError) a result that cannot be stored
    │   └── IdempotencyTableError     the table is missing or has another key schema
    ├── OutboxError               the outbox could not write a transaction; names actions, never payloads
    │   ├── TransactionTooLargeError  (also ValueError) over 100 actions or 4 MB, refused before sending
    │   └── TransactionCanceledError  DynamoDB cancelled the transaction; ``reasons`` per action
    │       └── TransactionConditionFailedError  a condition failed: the caller's business, not retried
    ├── RedriveError              a redrive cannot start; names queues and functions, never payloads
    │   ├── RedriveNotFoundError      (also LookupError) a queue, function or event bus does not exist
    │   │   └── QueueNotFoundError        a source or target queue does not exist
    │   ├── StreamPointerExpiredError a stream pointer's records are no longer in the stream
    │   └── RedriveTargetError        (also ValueError) the target cannot take the source's messages
    │       ├── TargetTypeMismatchError   FIFO source and standard target, or the reverse
    │       └── AmbiguousTargetError      no target given and the DLQ has no single source queue
    └── RetryError                a retryable failure that the retry core stopped retrying
        ├── AttemptsExhaustedError    ``max_attempts`` (counted across botocore and the core) used up
        ├── ElapsedTimeExceededError  ``max_elapsed`` would be passed by the next sleep
        ├── DeadlineExceededError     the next sleep would end past the ``Deadline``
        └── RetryBudgetExhaustedError the shared ``RetryBudget`` refused another retry

Errors the service returns for a request that can never succeed (validation, access denied,
conditional check failed, resource not found) are *not* wrapped: the retry core re-raises
botocore's ``ClientError`` unchanged, so ``except client.exceptions.ConditionalCheckFailedException``
keeps working. When the core gives up on a retryable error, the ``RetryError`` it raises keeps the
last botocore error as ``__cause__`` (and as ``.last_error``).

Messages name entries by id or key, never by payload: payloads may hold personal data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilient_aws.results import BatchResult

__all__ = [
    "AttemptsExhaustedError",
    "BatchError",
    "BatchGetError",
    "BatchWriteError",
    "InvalidCursorError",
    "OutboxError",
    "QueueNotFoundError",
    "RedriveError",
    "RedriveNotFoundError",
    "StreamPointerExpiredError",
    "RedriveTargetError",
    "AmbiguousTargetError",
    "TargetTypeMismatchError",
    "TransactionCanceledError",
    "TransactionConditionFailedError",
    "TransactionTooLargeError",
    "InvalidKeyError",
    "UnknownTableError",
    "ConfigurationError",
    "DeadlineExceededError",
    "DuplicateEntryError",
    "ElapsedTimeExceededError",
    "EntryTooLargeError",
    "EntryValidationError",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyError",
    "IdempotencyResultError",
    "IdempotencyTableError",
    "IdempotencyValidationError",
    "ResilientAWSError",
    "RetryBudgetExhaustedError",
    "RetryError",
    "UnsupportedValueError",
]


class ResilientAWSError(Exception):
    """Root of every exception this library raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other __init__ arguments than their message: rebuild from state, so
        # errors cross process boundaries (multiprocessing, ProcessPoolExecutor) intact.
        return (_rebuild, (type(self), self.args, self.__dict__))


class ConfigurationError(ResilientAWSError, ValueError):
    """An option has an invalid value. ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EntryValidationError(ResilientAWSError, ValueError):
    """An entry can never be accepted by the service. ``entry_id`` names it (never its payload)."""

    def __init__(self, entry_id: str, message: str) -> None:
        super().__init__(f"entry {entry_id!r}: {message}")
        self.entry_id = entry_id
        self.reason = message


class EntryTooLargeError(EntryValidationError):
    """An entry is larger than the service accepts for a single entry."""

    def __init__(self, entry_id: str, size: int, limit: int) -> None:
        super().__init__(entry_id, f"{size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class DuplicateEntryError(EntryValidationError):
    """Two entries of one batch share an id (or a primary key) the service requires unique."""


class UnsupportedValueError(EntryValidationError):
    """An entry holds a value the service cannot represent. The message names the entry, the
    attribute path and the value's type, never the value."""


class InvalidKeyError(EntryValidationError):
    """A key attribute is missing, empty or of a type the table's key schema does not have."""


class UnknownTableError(ResilientAWSError, LookupError):
    """The table does not exist (``DescribeTable`` said ``ResourceNotFoundException``)."""

    def __init__(self, table: str) -> None:
        super().__init__(f"table {table!r} does not exist")
        self.table = table


class InvalidCursorError(ResilientAWSError, ValueError):
    """A resume cursor that cannot be decoded, or that belongs to another table or segment."""


class BatchError(ResilientAWSError):
    """Some entries finally failed. ``result`` names each of them and counts the rest."""

    def __init__(self, result: BatchResult[Any]) -> None:
        self.result = result
        super().__init__(str(result))


class BatchWriteError(BatchError):
    """A batch writer finished with entries that finally failed."""


class BatchGetError(BatchError):
    """A batch read finished with keys that could not be read."""


class IdempotencyError(ResilientAWSError):
    """An idempotent call could not run or replay. ``key`` is the idempotency key, if known.

    Messages carry the key (a hash) and the function, never the payload or the result.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(f"{message} (idempotency key {key!r})" if key else message)
        self.key = key


class IdempotencyKeyError(IdempotencyError, ValueError):
    """The key expression selected nothing from the payload (and missing keys are errors)."""


class IdempotencyValidationError(IdempotencyError):
    """A repeat of a key carried a different payload than the call that stored the result."""


class IdempotencyInProgressError(IdempotencyError):
    """Another call with the same key is in progress; retry later, or wait with
    ``on_in_progress="wait"``."""


class IdempotencyResultError(IdempotencyError, TypeError):
    """The function ran, but its result cannot be stored: not JSON-serializable, or the record
    would exceed DynamoDB's 400 KB item limit; or a repeat of such a key. The key is never
    released after the function ran: it stays taken until the record expires (``ttl_s``), and
    repeats raise this error instead of running again."""


class IdempotencyTableError(IdempotencyError):
    """The idempotency table does not exist or its key schema is not the one configured."""


class OutboxError(ResilientAWSError):
    """The outbox could not write a transaction. Actions are named by table and key."""


class TransactionTooLargeError(OutboxError, ValueError):
    """The transaction is over a DynamoDB limit (100 actions, 4 MB); nothing was sent."""


class TransactionCanceledError(OutboxError):
    """DynamoDB cancelled the transaction; nothing of it was applied.

    ``reasons`` holds one ``(action, code, message)`` per action that caused it, ``action``
    naming the action (``"put orders[pk=order#1]"``, ``"event e-1 (order-1 #3)"``).
    """

    def __init__(self, message: str, reasons: list[tuple[str, str, str]]) -> None:
        detail = "; ".join(f"{action}: {code}" for action, code, _ in reasons)
        super().__init__(f"{message}: {detail}" if detail else message)
        self.reasons = reasons


class TransactionConditionFailedError(TransactionCanceledError):
    """A condition of the transaction failed (a business rule, or an event whose aggregate and
    sequence already exist). Not retried: the caller decides."""


class RedriveError(ResilientAWSError):
    """A redrive cannot start: raised before any message is received, so nothing moved."""


class RedriveNotFoundError(RedriveError, LookupError):
    """A queue, function or event bus the redrive needs does not exist. ``resource`` names it,
    ``role`` says what it was for (``"target function"``...)."""

    def __init__(self, resource: str, role: str = "resource") -> None:
        super().__init__(f"{role} {resource!r} does not exist")
        self.resource = resource
        self.role = role


class QueueNotFoundError(RedriveNotFoundError):
    """A source or target queue does not exist. ``queue`` names it (URL or ARN)."""

    def __init__(self, queue: str, role: str = "queue") -> None:
        super().__init__(queue, role)
        self.queue = queue


class StreamPointerExpiredError(RedriveError):
    """The records a stream pointer names are no longer in the stream (trimmed after the
    retention period, or the stream or shard is gone). ``reason`` says which."""

    def __init__(self, pointer: str, reason: str) -> None:
        super().__init__(f"stream pointer {pointer}: {reason}")
        self.pointer = pointer
        self.reason = reason


class RedriveTargetError(RedriveError, ValueError):
    """The target cannot take the source's messages (see the subclasses)."""


class TargetTypeMismatchError(RedriveTargetError):
    """A FIFO source with a standard target, or the reverse: group ids and order would be lost
    (or a FIFO target would refuse every message for want of a group id)."""


class AmbiguousTargetError(RedriveTargetError):
    """No target was given and the dead-letter queue has no single source queue to return to.
    ``candidates`` lists the source queues found (none, or several)."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class RetryError(ResilientAWSError):
    """The retry core stopped retrying a retryable failure.

    ``operation`` names the call, ``attempts`` counts every attempt on the wire (botocore's own
    retries included), ``reason`` is one of ``"attempts"``, ``"elapsed"``, ``"deadline"``,
    ``"budget"`` or ``"stop"`` (a user-supplied tenacity stop strategy), and ``last_error`` is the
    last exception seen (also ``__cause__``).
    """

    reason = "stop"

    def __init__(
        self,
        operation: str,
        attempts: int,
        last_error: BaseException | None,
        *,
        reason: str | None = None,
    ) -> None:
        if reason is not None:
            self.reason = reason
        self.operation = operation
        self.attempts = attempts
        self.last_error = last_error
        code = _error_code(last_error)
        super().__init__(
            f"{operation}: gave up after {attempts} attempt(s) ({self.reason}); last error: {code}"
        )


class AttemptsExhaustedError(RetryError):
    """``max_attempts`` was reached."""

    reason = "attempts"


class ElapsedTimeExceededError(RetryError):
    """The next sleep would pass ``max_elapsed``."""

    reason = "elapsed"


class DeadlineExceededError(RetryError):
    """The next sleep would end past the deadline; the core stopped instead of being killed."""

    reason = "deadline"


class RetryBudgetExhaustedError(RetryError):
    """The shared retry budget refused another retry (many calls are failing at once)."""

    reason = "budget"


def _error_code(error: BaseException | None) -> str:
    if error is None:
        return "none"
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


def _rebuild(
    cls: type[ResilientAWSError], args: tuple[Any, ...], state: dict[str, Any]
) -> ResilientAWSError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
