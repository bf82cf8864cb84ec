"""From a call's payload to its idempotency key, the way Powertools for AWS Lambda computes it.

Powertools prepares the payload (a dataclass becomes a dict, a pydantic model its JSON dump,
an event source data class its raw event), selects the key with JMESPath, hashes
``json.dumps(selected, sort_keys=True)`` with md5 and prefixes the hash with
``{AWS_LAMBDA_FUNCTION_NAME}.{module}.{qualname}``. Doing exactly the same here is what lets
both libraries share one table without running a side effect twice.

Outside Lambda Powertools prefixes every key with ``test-func``: two services sharing a table,
each with an ``app.handle``, would share keys (one never runs and gets the other's result).
Here the service name (``POWERTOOLS_SERVICE_NAME``) takes the function name's place outside
Lambda, and a warning says when there is neither.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import math
import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import ConfigurationError, IdempotencyKeyError
from resilient_aws.idempotency._functions import KeyFunctions

__all__ = ["KeySpec", "hash_json", "prepare_payload"]

FUNCTION_NAME_ENV = "AWS_LAMBDA_FUNCTION_NAME"
SERVICE_NAME_ENV = "POWERTOOLS_SERVICE_NAME"
NO_NAME = "test-func"  # Powertools' stand-in for the function name outside Lambda

KeySelector = str | Callable[[Any], Any] | None

_OPTIONS = jmespath.Options(custom_functions=KeyFunctions())


class _HashEncoder(json.JSONEncoder):
    """The JSON that is hashed: Decimal as its string, as Powertools writes it."""

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            return math.nan if o.is_nan() else str(o)
        if callable(getattr(o, "model_dump", None)):
            return o.model_dump(mode="json")
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if isinstance(o, enum.Enum):
            return o.value
        if isinstance(o, (dt.date, dt.time)):
            return o.isoformat()
        if isinstance(o, (uuid.UUID, PurePath)):
            return str(o)
        return super().default(o)


def hash_json(data: Any, algorithm: str = "md5") -> str:
    """Hex digest of ``data`` as sorted-key JSON (TypeError if it is not JSON-serializable)."""
    encoded = json.dumps(data, cls=_HashEncoder, sort_keys=True).encode()
    return hashlib.new(algorithm, encoded).hexdigest()


def prepare_payload(payload: Any) -> Any:
    """A payload as plain data: dataclasses, pydantic models and event data classes unwrapped."""
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        return dataclasses.asdict(payload)
    if callable(getattr(payload, "model_dump", None)):
        return payload.model_dump(mode="json")
    if callable(getattr(payload, "dict", None)):
        return payload.dict()
    return getattr(payload, "raw_event", payload)


def _is_missing(selected: Any) -> bool:
    # A multi-select ({a: x, b: y} or [x, y]) keeps its shape when everything in it is missing.
    if isinstance(selected, dict):
        return all(value is None for value in selected.values())
    if isinstance(selected, (list, tuple)):
        return all(value is None for value in selected)
    if isinstance(selected, (bool, int, float)):
        return False
    return not selected


@lean_dataclass(frozen=True)
class KeySpec:
    """How one decorated function turns its payload into a key and a validation hash."""

    key: KeySelector
    validate: str | None
    hash_function: str
    key_prefix: str | None
    function_path: str  # "{module}.{qualname}"
    _key_expr: Any = dataclasses.field(default=None, repr=False, compare=False)
    _validate_expr: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        *,
        key: KeySelector,
        validate: str | None,
        hash_function: str,
        key_prefix: str | None,
        function_path: str,
    ) -> KeySpec:
        if hash_function not in hashlib.algorithms_available:
            raise ConfigurationError(
                "hash_function", f"{hash_function!r} is not a hashlib algorithm"
            )
        if key_prefix is not None and (not isinstance(key_prefix, str) or not key_prefix):
            raise ConfigurationError("key_prefix", "must be a non-empty string")
        if key is not None and not isinstance(key, str) and not callable(key):
            raise ConfigurationError("key", "must be a JMESPath expression, a callable or None")
        return cls(
            key=key,
            validate=validate,
            hash_function=hash_function,
            key_prefix=key_prefix,
            function_path=function_path,
            _key_expr=_compile("key", key) if isinstance(key, str) else None,
            _validate_expr=_compile("validate", validate) if validate is not None else None,
        )

    def prefix(self) -> str:
        """``key_prefix``, or Powertools' ``{function name}.{module}.{qualname}``.

        Outside Lambda (no ``AWS_LAMBDA_FUNCTION_NAME``) the service name
        ``POWERTOOLS_SERVICE_NAME`` stands for the function name, so that services sharing a
        table do not share keys; with neither, Powertools' ``test-func`` and a warning.
        """
        if self.key_prefix is not None:
            return self.key_prefix
        name = os.environ.get(FUNCTION_NAME_ENV) or os.environ.get(SERVICE_NAME_ENV)
        if not name:
            warnings.warn(
                f"{self.function_path}: idempotency keys are prefixed with {NO_NAME!r}: outside "
                f"Lambda, set {SERVICE_NAME_ENV} (or pass key_prefix=) so that another service "
                "with a function of the same module and name, sharing the idempotency table, "
                "does not share its keys",
                UserWarning,
                stacklevel=2,
            )
            name = NO_NAME
        return f"{name}.{self.function_path}"

    def select(self, data: Any) -> Any:
        """The part of the prepared payload the key is made of (``None`` when missing)."""
        if self._key_expr is not None:
            try:
                selected = self._key_expr.search(data, options=_OPTIONS)
            except (JMESPathError, ValueError) as error:
                # e.g. powertools_json() over a body that is not JSON
                raise IdempotencyKeyError(
                    f"{self.function_path}: key expression {self.key!r} failed: "
                    f"{type(error).__name__}"
                ) from error
        elif callable(self.key):
            selected = self.key(data)
        else:
            selected = data
        return None if _is_missing(selected) else selected

    def idempotency_key(self, data: Any) -> str | None:
        """``{prefix}#{hash}``, or ``None`` if the key selects nothing."""
        selected = self.select(data)
        if selected is None:
            return None
        try:
            digest = hash_json(selected, self.hash_function)
        except (TypeError, ValueError) as error:
            raise IdempotencyKeyError(
                f"{self.function_path}: the selected key is not JSON-serializable ({error})"
            ) from error
        return f"{self.prefix()}#{digest}"

    def validation_hash(self, data: Any) -> str | None:
        """Hash of the part of the payload that a repeat must match (``None``: no validation)."""
        if self._validate_expr is None:
            return None
        try:
            return hash_json(self._validate_expr.search(data, options=_OPTIONS), self.hash_function)
        except (TypeError, ValueError) as error:
            raise IdempotencyKeyError(
                f"{self.function_path}: the validated part of the payload is not "
                f"JSON-serializable ({error})"
            ) from error


def _compile(field: str, expression: str) -> Any:
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigurationError(field, "must be a non-empty JMESPath expression")
    try:
        return jmespath.compile(expression)
    except JMESPathError as error:
        raise ConfigurationError(field, f"invalid JMESPath expression: {error}") from error
