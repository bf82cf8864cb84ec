"""Exactly-once side effects under at-least-once delivery: ``@idempotent`` on DynamoDB.

>>> from resilient_aws.idempotency import IdempotencyStore, idempotent
>>> store = IdempotencyStore("idempotency")  # doctest: +SKIP
>>> @idempotent(store, key="body.order_id")  # doctest: +SKIP
... def handler(event, context):
...     return charge(event)

Records are the ones Powertools for AWS Lambda writes (same attributes, same key hashing), so
both libraries can share a table during a migration without running anything twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilient_aws._lazy import lazy_exports

if TYPE_CHECKING:
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

# PEP 562: a public name is imported from its module when it is first asked for, so that
# a handler pays only for what it uses.
_MODULE_OF = {
    "COMPLETED": "resilient_aws.idempotency._record",
    "INPROGRESS": "resilient_aws.idempotency._record",
    "IdempotencyError": "resilient_aws.errors",
    "IdempotencyInProgressError": "resilient_aws.errors",
    "IdempotencyKeyError": "resilient_aws.errors",
    "IdempotencyRecord": "resilient_aws.idempotency._record",
    "IdempotencyResultError": "resilient_aws.errors",
    "IdempotencyStore": "resilient_aws.idempotency._store",
    "IdempotencyTableError": "resilient_aws.errors",
    "IdempotencyValidationError": "resilient_aws.errors",
    "hash_json": "resilient_aws.idempotency._key",
    "idempotent": "resilient_aws.idempotency._decorator",
}


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF)
