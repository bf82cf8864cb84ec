"""A table's primary key: which attributes, which types, and what identifies one item."""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary
from botocore.exceptions import ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.dynamodb._serialize import raw_bytes
from resilient_aws.errors import ConfigurationError, InvalidKeyError, UnknownTableError
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["KeySchema", "describe_key_schema", "position_attributes"]

ItemKey = tuple[Any, ...]


@lean_dataclass(frozen=True)
class KeySchema:
    """The key attributes of a table (hash, then range) and their types (``S``, ``N``, ``B``)."""

    table: str
    attributes: tuple[str, ...]
    types: tuple[str, ...] = ()

    @classmethod
    def of(cls, table: str, key: KeySchema | str | Sequence[str]) -> KeySchema:
        """A schema from what a user passes: a schema, ``"pk"`` or ``("pk", "sk")``."""
        if isinstance(key, KeySchema):
            return key
        attributes = (key,) if isinstance(key, str) else tuple(key)
        if not 1 <= len(attributes) <= 2:
            raise ValueError(f"a key has one or two attributes, got {attributes!r}")
        return cls(table, attributes)

    def key_of(self, wire: Mapping[str, Any], entry_id: str) -> ItemKey:
        """The identity of an item (or key) in wire format; validates the key attributes."""
        parts: list[Any] = []
        for index, name in enumerate(self.attributes):
            value = wire.get(name)
            if value is None:
                raise InvalidKeyError(entry_id, f"key attribute {name!r} is missing")
            ((kind, data),) = value.items()
            expected = self.types[index] if index < len(self.types) else ""
            if kind not in ("S", "N", "B") or (expected and kind != expected):
                raise InvalidKeyError(
                    entry_id,
                    f"key attribute {name!r} must be of type {expected or 'S, N or B'}, got {kind}",
                )
            if kind == "N":
                data = Decimal(data).normalize()  # "1" and "1.0" are one key to DynamoDB
            elif kind == "B":
                data = raw_bytes(data)
                if not data:
                    raise InvalidKeyError(entry_id, f"key attribute {name!r} is empty")
            elif not data:
                raise InvalidKeyError(entry_id, f"key attribute {name!r} is an empty string")
            parts.append((kind, data))
        return tuple(parts)

    def key_only(self, wire: Mapping[str, Any]) -> dict[str, Any]:
        """The key attributes of an item in wire format."""
        return {name: wire[name] for name in self.attributes}

    def describe(self, wire: Mapping[str, Any]) -> str:
        """``table[pk=…,sk=…]``: how entries are named in errors and logs (never the payload)."""
        values = []
        for name in self.attributes:
            value = wire.get(name)
            shown = next(iter(value.values())) if isinstance(value, Mapping) and value else value
            if isinstance(shown, (bytes, bytearray, Binary)):
                # a short digest tells two binary keys apart without printing them
                raw = bytes(shown)  # type: ignore[arg-type]  # Binary has __bytes__, untyped
                shown = f"<binary {hashlib.sha256(raw).hexdigest()[:8]}>"
            values.append(f"{name}={shown}")
        return f"{self.table}[{','.join(values)}]"


@lean_dataclass(frozen=True)
class _TableKeys:
    schema: KeySchema
    indexes: dict[str, tuple[str, ...]]


_cache: weakref.WeakKeyDictionary[Any, dict[str, _TableKeys]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _hash_first(key_schema: list[dict[str, str]]) -> tuple[str, ...]:
    ordered = sorted(key_schema, key=lambda k: k["KeyType"] != "HASH")
    return tuple(k["AttributeName"] for k in ordered)


def _table_keys(client: Any, table: str, policy: RetryPolicy) -> _TableKeys:
    known = _known(client, table)
    if known is not None:
        return known
    try:
        description = policy.call(client.describe_table, TableName=table)["Table"]
    except ClientError as error:
        failure = _describe_failed(error, table)
        if failure is error:
            raise
        raise failure from error
    return _remember(client, table, description)


async def _atable_keys(client: Any, table: str, policy: RetryPolicy) -> _TableKeys:
    """:func:`_table_keys` with an async (aiobotocore) client."""
    known = _known(client, table)
    if known is not None:
        return known
    try:
        description = (await policy.acall(client.describe_table, TableName=table))["Table"]
    except ClientError as error:
        failure = _describe_failed(error, table)
        if failure is error:
            raise
        raise failure from error
    return _remember(client, table, description)


def _known(client: Any, table: str) -> _TableKeys | None:
    with _cache_lock:
        return _cache.get(client, {}).get(table)


def _describe_failed(error: ClientError, table: str) -> BaseException:
    code = error.response.get("Error", {}).get("Code")
    if code == "ResourceNotFoundException":
        return UnknownTableError(table)
    if code in ("AccessDeniedException", "UnrecognizedClientException"):
        # DescribeTable is a call the user did not write: say why it is made and how to do
        # without it.
        return ConfigurationError(
            "keys",
            f"DescribeTable on {table!r} was refused ({code}), and the key schema comes"
            " from it: grant dynamodb:DescribeTable, or pass keys= with the table's key"
            " attribute names",
        )
    return error


def _remember(client: Any, table: str, description: dict[str, Any]) -> _TableKeys:
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    names = _hash_first(description["KeySchema"])
    indexes = {
        index["IndexName"]: _hash_first(index["KeySchema"])
        for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
        for index in description.get(kind, [])
    }
    keys = _TableKeys(KeySchema(table, names, tuple(types.get(n, "") for n in names)), indexes)
    with _cache_lock:
        _cache.setdefault(client, {})[table] = keys
    return keys


def describe_key_schema(client: Any, table: str, policy: RetryPolicy = DEFAULT_POLICY) -> KeySchema:
    """The key schema of ``table``, from ``DescribeTable`` once per client and table."""
    return _table_keys(client, table, policy).schema


async def adescribe_key_schema(
    client: Any, table: str, policy: RetryPolicy = DEFAULT_POLICY
) -> KeySchema:
    """:func:`describe_key_schema` with an async (aiobotocore) client."""
    return (await _atable_keys(client, table, policy)).schema


def position_attributes(
    client: Any, table: str, index: str | None, policy: RetryPolicy = DEFAULT_POLICY
) -> tuple[str, ...]:
    """The attributes of a ``LastEvaluatedKey`` for a read of ``table`` (or of one of its indexes)."""
    return _positions(_table_keys(client, table, policy), table, index)


def _positions(keys: _TableKeys, table: str, index: str | None) -> tuple[str, ...]:
    names = keys.schema.attributes
    if index is None:
        return names
    if index not in keys.indexes:
        raise UnknownTableError(f"{table}/index/{index}")
    return tuple(dict.fromkeys(keys.indexes[index] + names))
