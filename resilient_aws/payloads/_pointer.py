"""The pointer format of the Amazon SQS and SNS Extended Client Libraries (Java and Python).

A message whose payload was offloaded has the body::

    ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k"}]

and the message attribute ``ExtendedPayloadSize`` (``Number``: the payload's size in bytes;
``SQSLargePayloadSize`` and the pointer class ``com.amazon.sqs.javamessaging.MessageS3Pointer``
in older versions). A receiver recognises such a message by the attribute. The Java client
also embeds the pointer in the receipt handle it hands out
(``-..s3BucketName..-<bucket>-..s3BucketName..--..s3Key..-<key>-..s3Key..-<handle>``), so
that deleting by receipt handle can delete the object too.

An EventBridge event's ``Detail`` must be a JSON object, so an offloaded event carries the
pointer's own fields with the payload's size, which also marks it::

    {"ExtendedPayloadSize":301234,"s3BucketName":"b","s3Key":"k"}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from resilient_aws._dataclass import lean_dataclass

__all__ = [
    "LEGACY_POINTER_CLASS",
    "LEGACY_SIZE_ATTRIBUTE",
    "POINTER_CLASS",
    "SIZE_ATTRIBUTE",
    "SIZE_ATTRIBUTES",
    "PayloadPointer",
    "detail_pointer",
    "embed_in_receipt_handle",
    "split_receipt_handle",
]

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
LEGACY_POINTER_CLASS = "com.amazon.sqs.javamessaging.MessageS3Pointer"
SIZE_ATTRIBUTE = "ExtendedPayloadSize"
LEGACY_SIZE_ATTRIBUTE = "SQSLargePayloadSize"
SIZE_ATTRIBUTES = (SIZE_ATTRIBUTE, LEGACY_SIZE_ATTRIBUTE)
"""The attribute names that mark a message as a pointer: reserved, refused in callers' own
attributes when offloading is on."""

_BUCKET_MARKER = "-..s3BucketName..-"
_KEY_MARKER = "-..s3Key..-"
_CLASSES = (POINTER_CLASS, LEGACY_POINTER_CLASS)
_PREFIXES = tuple(f'["{name}"' for name in _CLASSES)


@lean_dataclass(frozen=True)
class PayloadPointer:
    """Where a payload lives: ``bucket`` and ``key`` of its S3 object."""

    bucket: str
    key: str

    def to_detail(self, size: int) -> str:
        """The EventBridge ``Detail`` standing for an offloaded payload of ``size`` bytes: the
        pointer's fields and the size, under the extended clients' names."""
        return json.dumps(
            {SIZE_ATTRIBUTE: size, "s3BucketName": self.bucket, "s3Key": self.key},
            separators=(",", ":"),
        )

    def to_body(self, *, legacy: bool = False) -> str:
        """The message body the extended client libraries write for this pointer."""
        name = LEGACY_POINTER_CLASS if legacy else POINTER_CLASS
        return json.dumps(
            [name, {"s3BucketName": self.bucket, "s3Key": self.key}], separators=(",", ":")
        )

    @staticmethod
    def looks_like(body: Any) -> bool:
        """Whether ``body`` starts like a pointer (cheap: no parsing)."""
        return isinstance(body, str) and body.lstrip().startswith(_PREFIXES)

    @classmethod
    def parse(cls, body: Any) -> PayloadPointer | None:
        """The pointer ``body`` holds, or ``None`` if it holds none (any other text)."""
        if not isinstance(body, str):
            return None
        try:
            value = json.loads(body)
        except ValueError:
            return None
        if not (isinstance(value, list) and len(value) == 2 and value[0] in _CLASSES):
            return None
        return cls.from_fields(value[1])

    @classmethod
    def from_fields(cls, fields: Any) -> PayloadPointer | None:
        """The pointer whose ``s3BucketName`` and ``s3Key`` ``fields`` holds (the object of an
        extended client's pointer, or an offloaded event's detail), or ``None``."""
        if not isinstance(fields, Mapping):
            return None
        bucket, key = fields.get("s3BucketName"), fields.get("s3Key")
        if not (isinstance(bucket, str) and bucket and isinstance(key, str) and key):
            return None
        return cls(bucket, key)


def size_attribute(attributes: Mapping[str, Any] | None) -> str | None:
    """The name of the size attribute among ``attributes`` (SQS/SNS shape or a Lambda event's
    lower-camel shape), or ``None``."""
    if not attributes:
        return None
    for name in SIZE_ATTRIBUTES:
        if name in attributes:
            return name
    return None


def detail_pointer(detail: Any) -> tuple[bool, PayloadPointer | None]:
    """Whether an EventBridge event's ``detail`` (parsed) is marked as offloaded (it has the
    size field), and its pointer (``None`` when it is not one)."""
    if not isinstance(detail, Mapping) or SIZE_ATTRIBUTE not in detail:
        return False, None
    return True, PayloadPointer.from_fields(detail)


def embed_in_receipt_handle(pointer: PayloadPointer, receipt_handle: str) -> str:
    """The receipt handle the Java extended client hands out for a pointer message."""
    return (
        f"{_BUCKET_MARKER}{pointer.bucket}{_BUCKET_MARKER}"
        f"{_KEY_MARKER}{pointer.key}{_KEY_MARKER}{receipt_handle}"
    )


def split_receipt_handle(receipt_handle: str) -> tuple[str, PayloadPointer | None]:
    """SQS's own receipt handle and the pointer an extended client embedded in it (or ``None``
    when it embeds none)."""
    if _BUCKET_MARKER not in receipt_handle or _KEY_MARKER not in receipt_handle:
        return receipt_handle, None
    bucket = _between(receipt_handle, _BUCKET_MARKER)
    key = _between(receipt_handle, _KEY_MARKER)
    original = receipt_handle.rsplit(_KEY_MARKER, 1)[-1]
    if not bucket or not key:
        return original, None
    return original, PayloadPointer(bucket, key)


def _between(text: str, marker: str) -> str:
    first = text.find(marker)
    second = text.find(marker, first + len(marker))
    return text[first + len(marker) : second] if second > first else ""
