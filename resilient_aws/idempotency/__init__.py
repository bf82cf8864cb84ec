"""Exactly-once side effects under at-least-once delivery: ``@idempotent`` on DynamoDB.

>>> from resilient_aws.idempotency import IdempotencyStore, idempotent
>>> store = IdempotencyStore("idempotency")  # doctest: +SKIP
>>> @idempotent(store, key="body.order_id")  # doctest: +SKIP
... def handler(event, context):
...     return charge(event)

Records are the ones Powertools for AWS Lambda writes (same attributes, same key hashing), so
both libraries can share a table during a migration without running anything twice.
"""

from resilient_aws.errors import (
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
    IdempotencyResultError,
    IdempotencyTableError,
    IdempotencyValidationError,
)
from resilient_aws.idempotency._decorator import idempotent
from resilient_aws.idempotency._key import hash_json
from resilient_aws.idempotency._record import COMPLETED, INPROGRESS, IdempotencyRecord
from resilient_aws.idempotency._store import IdempotencyStore

__all__ = [
    "COMPLETED",
    "INPROGRESS",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyKeyError",
    "IdempotencyRecord",
    "IdempotencyResultError",
    "IdempotencyStore",
    "IdempotencyTableError",
    "IdempotencyValidationError",
    "hash_json",
    "idempotent",
]
