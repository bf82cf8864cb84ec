"""Kinesis Data Streams: PutRecords, with an ordered mode per partition key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilient_aws._batching import Entry, Sent
from resilient_aws.batch._base import positional
from resilient_aws.batch._sqs import NOT_TEXT, PARAMETERS_REFUSED, Offloading, text_size
from resilient_aws.errors import EntryValidationError
from resilient_aws.limits import KINESIS_PUT_RECORDS

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadPointer, PayloadStore

__all__ = ["KinesisPutter", "record_data"]

_MAX_KEY_CHARS = 256


def record_data(entry_id: str, data: Any) -> bytes:
    """A record's bytes (``str`` encoded as UTF-8), or a typed error: data that is neither, or a
    ``str`` holding a lone surrogate (not Unicode text)."""
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raise EntryValidationError(entry_id, f"data: {NOT_TEXT}") from None
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise EntryValidationError(entry_id, f"data must be bytes or str, got {type(data).__name__}")


def _pointer_like(data: bytes) -> bool:
    """Whether a consumer would take ``data`` for a pointer (an extended client's pointer
    body, forwarded as it is): such a record goes to S3 whatever its size, so that
    :func:`~resilient_aws.payloads.resolve` gives it back as it was put."""
    if not data.lstrip().startswith(b'["'):  # most records are never decoded
        return False
    from resilient_aws.payloads._pointer import PayloadPointer

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return PayloadPointer.parse(text) is not None


class KinesisPutter(Offloading):
    """``PutRecords`` for any number of records; every record put or reported.

    Retrying only the failed records of a request re-orders records of one partition key: the
    retried record lands after later records of its key that succeeded. ``ordered=True`` keeps
    the order per partition key (or explicit hash key): at most one record of a key per
    request and one request of a key in flight, and a record that finally fails stops the later
    records of its key (``PrecedingEntryFailed``). The price: records of one key go one per
    round trip, so a hot key is slow; many keys still share each request. With
    ``keep_answers=True``, ``result.answers`` maps each record to its ``SequenceNumber`` and
    ``ShardId``.

    ``payloads=`` a :class:`~resilient_aws.payloads.PayloadStore` offloads a record whose data
    and partition key exceed the store's threshold (or the stream's record limit, or every
    record with ``always=True``) to S3 when it is added: the record's data is the extended
    clients' pointer (``["software.amazon.payloadoffloading.PayloadS3Pointer",{...}]``), which
    :func:`~resilient_aws.payloads.resolve` turns back into the data (data that already is such
    a pointer is offloaded whatever its size, so that it reads back as put). The objects of
    records that finally fail are deleted after the flush, or listed in :attr:`payloads_left`
    when the record may have been put.
    """

    client_name = "kinesis"
    service = "kinesis"
    operation = "PutRecords"
    method = "put_records"
    default_limits = KINESIS_PUT_RECORDS
    # A request refused whole (too large, invalid) is split until the culprit stands alone.
    split_codes = frozenset(
        {"ValidationException", "InvalidArgumentException", "413", PARAMETERS_REFUSED}
    )

    def __init__(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        payloads: PayloadStore | None = None,
        **options: Any,
    ) -> None:
        self._init_payloads(payloads)
        if not (stream_name or stream_arn):
            from resilient_aws.errors import ConfigurationError

            raise ConfigurationError("stream_name", "pass stream_name or stream_arn")
        self.stream = {"StreamARN": stream_arn} if stream_arn else {"StreamName": stream_name}
        super().__init__(**options)

    def put(
        self,
        data: bytes | str,
        partition_key: str,
        *,
        id: str | None = None,
        explicit_hash_key: str | None = None,
    ) -> None:
        """Buffer one record (``str`` data is encoded as UTF-8)."""
        entry_id = self._next_id(id)
        source = {"id": entry_id, "partition_key": partition_key}
        if not isinstance(partition_key, str) or not 1 <= len(partition_key) <= _MAX_KEY_CHARS:
            self._refuse(
                source,
                EntryValidationError(
                    entry_id, f"the partition key must be 1..{_MAX_KEY_CHARS} characters"
                ),
            )
            return
        try:
            data = record_data(entry_id, data)
            # The record limit counts the data and the partition key together.
            key_size = text_size(entry_id, "the partition key", partition_key)
            size = len(data) + key_size
            if explicit_hash_key and not (
                isinstance(explicit_hash_key, str)
                and explicit_hash_key.isascii()
                and explicit_hash_key.isdigit()
            ):
                raise EntryValidationError(
                    entry_id, "explicit_hash_key must be a str of decimal digits (a 128-bit int)"
                )
        except EntryValidationError as invalid:
            self._refuse(source, invalid)
            return
        payload: dict[str, Any] = {"Data": data, "PartitionKey": partition_key}
        if explicit_hash_key:
            payload["ExplicitHashKey"] = explicit_hash_key
        if self.payloads is not None:
            offloaded = self._offload_data(entry_id, source, payload, size, key_size)
            if offloaded is None:
                return
            size = offloaded
        group = (explicit_hash_key or partition_key) if self.ordered else None
        self._add(source, entry_id, payload, size, group=group)

    def _offload_data(
        self,
        entry_id: str,
        source: dict[str, Any],
        payload: dict[str, Any],
        size: int,
        key_size: int,
    ) -> int | None:
        """``size`` when the record goes as it is, its new size when its data went to S3, or
        None when it was refused or reported failed."""
        from resilient_aws.payloads._senders import offload_data, offloads

        store = self.payloads
        assert store is not None
        data = payload["Data"]
        if not offloads(store, size, self.limits.max_entry_bytes) and not _pointer_like(data):
            return size

        def point(pointer: PayloadPointer) -> int:
            payload["Data"] = pointer.to_body(legacy=store.config.legacy).encode("utf-8")
            return len(payload["Data"]) + key_size

        return offload_data(self, store, entry_id, source, data, point)

    def _request(self, batch: list[Entry[Any]]) -> dict[str, Any]:
        return {"Records": [e.payload for e in batch], **self.stream}

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        return positional(batch, response, "Records", self.service)
