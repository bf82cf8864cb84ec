"""A message received from a dead-letter queue, and the filters that pick which ones move."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any, TypeAlias

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import ConfigurationError

__all__ = ["DlqMessage", "Filter", "compile_filter", "message_attributes"]


@lean_dataclass(frozen=True)
class DlqMessage:
    """One message as ``ReceiveMessage`` returned it (all system and message attributes).

    ``attributes`` holds the system attributes (``MessageGroupId``, ``SentTimestamp``,
    ``ApproximateReceiveCount``...), ``message_attributes`` the user's, in SQS's shape
    (``{"DataType": "String", "StringValue": "..."}``). The receipt handle is not printed.
    """

    message_id: str
    body: str = field(repr=False)
    receipt_handle: str = field(repr=False)
    attributes: Mapping[str, str] = field(default_factory=dict, repr=False)
    message_attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> DlqMessage:
        """From one entry of a ``ReceiveMessage`` response."""
        return cls(
            message_id=str(raw["MessageId"]),
            body=str(raw.get("Body", "")),
            receipt_handle=str(raw["ReceiptHandle"]),
            attributes=dict(raw.get("Attributes") or {}),
            message_attributes=dict(raw.get("MessageAttributes") or {}),
        )

    @property
    def group_id(self) -> str | None:
        """``MessageGroupId`` (FIFO queues), else ``None``."""
        return self.attributes.get("MessageGroupId")

    @property
    def deduplication_id(self) -> str | None:
        """``MessageDeduplicationId`` (FIFO queues), else ``None``."""
        return self.attributes.get("MessageDeduplicationId")

    def attribute(self, name: str) -> str | None:
        """The string value of message attribute ``name`` (numbers come as text), or ``None``."""
        value = self.message_attributes.get(name)
        if value is None:
            return None
        text = value.get("StringValue")
        return None if text is None else str(text)

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` if it is not JSON."""
        return _parsed(self.body)

    def view(self) -> dict[str, Any]:
        """What a JMESPath filter sees: ``messageId``, ``body`` (parsed when it is JSON, else the
        text), ``attributes`` and ``messageAttributes`` (name -> value)."""
        try:
            body: Any = _parsed(self.body)
        except ValueError:
            body = self.body
        return {
            "messageId": self.message_id,
            "body": body,
            "attributes": dict(self.attributes),
            "messageAttributes": {
                name: value.get("StringValue", value.get("BinaryValue"))
                for name, value in self.message_attributes.items()
            },
        }


@functools.lru_cache(maxsize=256)
def _parsed_text(body: str) -> Any:
    return json.loads(body)


def _parsed(body: str) -> Any:
    # Cached: a filter and a delivery usually parse the same body; copies keep callers from
    # mutating the cached value.
    value = _parsed_text(body)
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value


Filter: TypeAlias = str | Callable[[DlqMessage], Any]
"""A JMESPath expression over :meth:`DlqMessage.view`, or a function of the message: a message
moves when the result is truthy (JMESPath truth: not null, false, or empty)."""


def compile_filter(spec: Filter | None) -> Callable[[DlqMessage], bool] | None:
    """The predicate for ``spec``; ``ConfigurationError`` for an invalid expression."""
    if spec is None:
        return None
    if isinstance(spec, str):
        import jmespath
        from jmespath.exceptions import JMESPathError, JMESPathTypeError

        try:
            expression = jmespath.compile(spec)
        except JMESPathError as error:
            raise ConfigurationError("filter", f"not a JMESPath expression: {error}") from None

        def matches(message: DlqMessage) -> bool:
            try:
                return _jmespath_true(expression.search(message.view()))
            except JMESPathTypeError as error:
                # JMESPath's message quotes the value (a card number from the body): the
                # function and the types only
                raise JMESPathTypeError(
                    error.function_name, "<not shown>", error.actual_type, error.expected_types
                ) from None

        return matches
    if callable(spec):
        return lambda message: bool(spec(message))
    raise ConfigurationError(
        "filter", f"must be a JMESPath string or a callable, got {type(spec).__name__}"
    )


def _jmespath_true(value: Any) -> bool:
    # JMESPath's truth: 0 is true, only null, false and empty values are false.
    return value is not None and value is not False and value != "" and value != [] and value != {}


def message_attributes(message: DlqMessage) -> dict[str, dict[str, Any]]:
    """The message attributes in the shape ``SendMessage`` takes (SQS also returns empty
    ``StringListValues``/``BinaryListValues``, which it reserves and refuses on send)."""
    cleaned: dict[str, dict[str, Any]] = {}
    for name, value in message.message_attributes.items():
        kept = {k: value[k] for k in ("DataType", "StringValue", "BinaryValue") if k in value}
        cleaned[name] = kept
    return cleaned
