"""batch_get: BatchGetItem for any number of keys, with UnprocessedKeys retried."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import field, replace
from typing import Any

from resilient_aws._batching import BatchEngine, Entry, Sent, botocore_retries
from resilient_aws._dataclass import lean_dataclass
from resilient_aws.dynamodb._client import dynamodb_client, table_name
from resilient_aws.dynamodb._schema import ItemKey, KeySchema, describe_key_schema
from resilient_aws.dynamodb._serialize import Numbers, deserialize_item, serialize_item
from resilient_aws.errors import BatchGetError, ConfigurationError
from resilient_aws.limits import DYNAMODB_BATCH_GET, BatchLimits
from resilient_aws.results import BatchResult
from resilient_aws.retry import DEFAULT_POLICY, FailedEntry, Pacer, RetryPolicy, classify_entry

__all__ = ["BatchGetResult", "batch_get"]

_UNPROCESSED = classify_entry("dynamodb", "Unprocessed")
_REFUSED_FOR_ONE_KEY = frozenset({"ValidationException", "ParamValidationError"})


@lean_dataclass
class BatchGetResult(BatchResult[Any]):
    """The items found, the keys not found, and (in ``failed``) the keys that could not be read."""

    items: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)


@lean_dataclass(frozen=True)
class _Key:
    identity: ItemKey
    wire: dict[str, Any]
    entry_id: str
    source: Any


class _BatchGetItem:
    """One ``BatchGetItem`` request: items found go to ``found``, ``UnprocessedKeys`` back."""

    operation = "BatchGetItem"

    def __init__(
        self,
        client: Any,
        table: str,
        schema: KeySchema,
        options: dict[str, Any],
        found: dict[ItemKey, dict[str, Any]],
        limits: BatchLimits,
    ) -> None:
        self.client, self.table, self.schema, self.options = client, table, schema, options
        self.found, self.limits = found, limits
        self.lock = threading.Lock()

    def send_request(self, batch: list[Entry[_Key]]) -> Sent[_Key]:
        return self._read(batch, self.client.batch_get_item(RequestItems=self._request(batch)))

    async def asend_request(self, batch: list[Entry[_Key]]) -> Sent[_Key]:
        """:meth:`send_request` on an async (aiobotocore) client."""
        response = await self.client.batch_get_item(RequestItems=self._request(batch))
        return self._read(batch, response)

    def _request(self, batch: list[Entry[_Key]]) -> dict[str, Any]:
        return {self.table: {"Keys": [e.payload for e in batch], **self.options}}

    def _read(self, batch: list[Entry[_Key]], response: dict[str, Any]) -> Sent[_Key]:
        table, schema = self.table, self.schema
        got = response.get("Responses", {}).get(table, [])
        with self.lock:
            for item in got:
                self.found[schema.key_of(item, table)] = item
        unprocessed = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if not unprocessed:
            return Sent([(e, None) for e in batch], [], botocore_retries(response))
        by_identity = {e.source.identity: e for e in batch}
        withheld = [by_identity[schema.key_of(wire, table)] for wire in unprocessed]
        failed = [
            FailedEntry(
                e, e.entry_id, _UNPROCESSED.code, "returned in UnprocessedKeys", retryable=True
            )
            for e in withheld
        ]
        held = {id(e) for e in withheld}
        succeeded = [(e, None) for e in batch if id(e) not in held]
        return Sent(succeeded, failed, botocore_retries(response))


def batch_get(
    table: str,
    keys: Iterable[Any],
    *,
    client: Any = None,
    session: Any = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    key: KeySchema | str | Sequence[str] | None = None,
    consistent_read: bool = False,
    projection: Sequence[str] | None = None,
    keep_order: bool = False,
    concurrency: int = 1,
    numbers: Numbers = "decimal",
    raise_on_failure: bool = True,
    limits: BatchLimits = DYNAMODB_BATCH_GET,
    pacer: Pacer | None = None,
) -> BatchGetResult:
    """Read items by key: any number of keys, 100 per request, ``UnprocessedKeys`` retried.

    Keys are plain dicts (``{"pk": "a", "sk": 1}``); duplicates are read once. The result has
    the ``items`` found (in the order of ``keys`` with ``keep_order=True``), the keys
    ``missing`` from the table, and in ``failed`` every key that could not be read when the
    policy gave up — raised as :class:`~resilient_aws.errors.BatchGetError` unless
    ``raise_on_failure=False``. ``projection`` lists attribute names to return (the key
    attributes are always included, to match items to keys).

    Keys run on the batch engine: ``UnprocessedKeys`` go back to the front of the queue and
    ride in the next full request, paced by ``pacer`` (one per call unless shared); a key is
    given up only at the policy's deadline or ``max_elapsed``, or after ``max_attempts``
    requests that read nothing.
    """
    if concurrency < 1:
        raise ConfigurationError("concurrency", f"must be >= 1, got {concurrency!r}")
    table = table_name(table)
    dynamodb = dynamodb_client(client, session)
    schema = (
        KeySchema.of(table, key)
        if key is not None
        else describe_key_schema(dynamodb, table, policy)
    )
    read = _Read(table, schema, consistent_read, projection)
    for source in keys:
        read.want(source)
    engine: BatchEngine[Any] = BatchEngine(
        read.adapter(dynamodb, limits), **read.engine_options(policy, concurrency, pacer)
    )
    for entry in read.entries():
        engine.add(entry)
    return read.finish(engine.close(), keep_order, numbers, raise_on_failure)


class _Read:
    """One ``batch_get``: the keys wanted (deduplicated), the items found, and the result, for
    either driver of the engine."""

    def __init__(
        self,
        table: str,
        schema: KeySchema,
        consistent_read: bool,
        projection: Sequence[str] | None,
    ) -> None:
        self.table, self.schema = table, schema
        self.result = BatchGetResult()
        self.wanted: dict[ItemKey, _Key] = {}
        self.found: dict[ItemKey, dict[str, Any]] = {}
        self.options: dict[str, Any] = {"ConsistentRead": consistent_read}
        if projection:
            names = list(dict.fromkeys([*schema.attributes, *projection]))
            self.options["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
            self.options["ExpressionAttributeNames"] = {
                f"#p{i}": name for i, name in enumerate(names)
            }

    def want(self, source: Any) -> None:
        table, schema = self.table, self.schema
        self.result.submitted += 1
        wire = serialize_item(
            source, f"{table}[{source!r}]" if isinstance(source, (str, int)) else table
        )
        wire = {name: wire[name] for name in schema.attributes if name in wire}
        entry_id = schema.describe(wire)
        identity = schema.key_of(wire, entry_id)
        if identity in self.wanted:
            self.result.deduplicated += 1
            return
        self.wanted[identity] = _Key(identity, wire, entry_id, source)

    def adapter(self, client: Any, limits: BatchLimits) -> _BatchGetItem:
        return _BatchGetItem(client, self.table, self.schema, self.options, self.found, limits)

    @staticmethod
    def engine_options(
        policy: RetryPolicy, concurrency: int, pacer: Pacer | None
    ) -> dict[str, Any]:
        return {
            "policy": policy,
            "concurrency": concurrency,
            "raise_on_failure": False,
            "keep_answers": False,
            "pacer": pacer,
            # DynamoDB refuses a whole request for one bad key (a wrong type or size when the
            # schema was given, not described): halve it until that key stands alone
            "split_codes": _REFUSED_FOR_ONE_KEY,
        }

    def entries(self) -> Iterator[Entry[_Key]]:
        for wanted_key in self.wanted.values():
            yield Entry(wanted_key, wanted_key.entry_id, wanted_key.wire, 0)

    def finish(
        self, outcome: BatchResult[Any], keep_order: bool, numbers: Numbers, raise_on_failure: bool
    ) -> BatchGetResult:
        result, found = self.result, self.found
        result.requests, result.resent = outcome.requests, outcome.resent
        result.succeeded = outcome.succeeded
        # by identity: two keys may share a name (binary values)
        failed_keys = {f.entry.identity for f in outcome.failed}
        result.failed.extend(replace(f, entry=f.entry.source) for f in outcome.failed)

        pending = self.wanted.values()
        identities = [k.identity for k in pending] if keep_order else list(found)
        result.items = [deserialize_item(found[i], numbers) for i in identities if i in found]
        result.missing = [
            deserialize_item(k.wire, numbers)
            for k in pending
            if k.identity not in found and k.identity not in failed_keys
        ]
        if result.failed and raise_on_failure:
            raise BatchGetError(result)
        return result
