"""Records of a Lambda batch event: checked, named, and wrapped in light typed objects.

The light records answer the attribute names of Powertools' event source data classes
(``record.message_id``, ``record.kinesis.sequence_number``, ``record.dynamodb.new_image``...)
and are read-only mappings of the record's own dict (``record["body"]``, ``record.raw_event``),
so one record function serves both libraries. They are plain classes with ``__slots__``: made
per record, they must cost next to nothing, and the module must import in well under a
millisecond (no dataclasses at module level).
"""

from __future__ import annotations

import base64
import json
import operator
from collections.abc import Callable, ItemsView, Iterator, Mapping, ValuesView
from typing import Any, Literal

from resilient_aws.errors import EntryValidationError

__all__ = [
    "DynamoDBStreamRecord",
    "KinesisStreamRecord",
    "SQSRecord",
    "Source",
    "SOURCES",
    "check_event",
]

Source = Literal["sqs", "kinesis", "dynamodb"]
# None: by source; True/False: in order (one lane per FIFO group or stream) or not at all;
# "batch": the whole batch is one lane (stop at the first failure, FIFO groups included)
Ordered = bool | Literal["batch"] | None
SOURCES: tuple[Source, ...] = ("sqs", "kinesis", "dynamodb")
_EVENT_SOURCES: dict[str, Source] = {
    "aws:sqs": "sqs",
    "aws:kinesis": "kinesis",
    "aws:dynamodb": "dynamodb",
}


class _DictRecord:
    """A read-only view of one record's dict, as Powertools' ``DictWrapper`` is.

    Not a ``collections.abc.Mapping`` subclass: each ABC subclass costs a fraction of a
    millisecond at import, and these are all the mapping methods a record function uses.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def items(self) -> ItemsView[str, Any]:
        return self._data.items()

    def values(self) -> ValuesView[Any]:
        return self._data.values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _DictRecord):
            return self._data == other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]  # a view of a mutable dict

    @property
    def raw_event(self) -> dict[str, Any]:
        """The record as Lambda delivered it (``@idempotent`` hashes this, as with Powertools)."""
        return self._data

    def __repr__(self) -> str:
        # never the payload: records carry personal data
        return f"{type(self).__name__}({self.item_identifier!r})"

    @property
    def item_identifier(self) -> str:
        """What names this record in a partial batch response."""
        raise NotImplementedError


# -- SQS ----------------------------------------------------------------------------------------


class SQSRecordAttributes(_DictRecord):
    """The system attributes of an SQS message (``ApproximateReceiveCount``...)."""

    __slots__ = ()

    @property
    def approximate_receive_count(self) -> str:
        """How many times the message was received, this time included (a string, as SQS
        sends it)."""
        return str(self._data.get("ApproximateReceiveCount", "1"))

    @property
    def sent_timestamp(self) -> str | None:
        return self._data.get("SentTimestamp")

    @property
    def message_group_id(self) -> str | None:
        """The FIFO group (``None`` on a standard queue)."""
        return self._data.get("MessageGroupId")

    @property
    def message_deduplication_id(self) -> str | None:
        return self._data.get("MessageDeduplicationId")

    @property
    def sequence_number(self) -> str | None:
        return self._data.get("SequenceNumber")

    @property
    def item_identifier(self) -> str:
        return "attributes"


class _EventRecord(_DictRecord):
    """What every record of a Lambda batch carries: its source, source ARN and region."""

    __slots__ = ()
    _source = ""

    @property
    def event_source(self) -> str:
        return str(self._data.get("eventSource", self._source))

    @property
    def event_source_arn(self) -> str:
        return str(self._data.get("eventSourceARN", ""))

    @property
    def aws_region(self) -> str:
        return str(self._data.get("awsRegion", ""))


class SQSRecord(_EventRecord):
    """One SQS message of an ``aws:sqs`` batch (standard or FIFO)."""

    __slots__ = ()
    _source = "aws:sqs"

    @property
    def message_id(self) -> str:
        return str(self._data["messageId"])

    item_identifier = message_id

    @property
    def receipt_handle(self) -> str:
        return str(self._data["receiptHandle"])

    @property
    def body(self) -> str:
        return str(self._data.get("body", ""))

    @property
    def json_body(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self._data["body"])

    @property
    def attributes(self) -> SQSRecordAttributes:
        return SQSRecordAttributes(self._data.get("attributes") or {})

    @property
    def message_attributes(self) -> dict[str, Any]:
        return dict(self._data.get("messageAttributes") or {})

    @property
    def md5_of_body(self) -> str | None:
        return self._data.get("md5OfBody")

    @property
    def queue_url(self) -> str:
        """The queue's URL, built from its ARN (the standard endpoint of its region)."""
        _, _, _, region, account, name = self.event_source_arn.split(":", 5)
        return f"https://sqs.{region}.amazonaws.com/{account}/{name}"


# -- Kinesis ------------------------------------------------------------------------------------


class KinesisStreamRecordPayload(_DictRecord):
    """The ``kinesis`` part of a Kinesis record: its data, partition key and sequence number."""

    __slots__ = ()

    @property
    def sequence_number(self) -> str:
        return str(self._data["sequenceNumber"])

    item_identifier = sequence_number

    @property
    def partition_key(self) -> str:
        return str(self._data.get("partitionKey", ""))

    @property
    def data(self) -> str:
        """The data, base64-encoded as Lambda delivers it."""
        return str(self._data.get("data", ""))

    @property
    def approximate_arrival_timestamp(self) -> float:
        return float(self._data.get("approximateArrivalTimestamp", 0))

    def data_as_bytes(self) -> bytes:
        return base64.b64decode(self.data)

    def data_as_text(self) -> str:
        return self.data_as_bytes().decode("utf-8")

    def data_as_json(self) -> Any:
        return json.loads(self.data_as_text())


class _StreamEvent(_EventRecord):
    """What the records of both stream sources carry: the event's id and name."""

    __slots__ = ()

    @property
    def event_id(self) -> str:
        return str(self._data.get("eventID", ""))

    @property
    def event_name(self) -> str:
        return str(self._data.get("eventName", ""))


class KinesisStreamRecord(_StreamEvent):
    """One record of an ``aws:kinesis`` batch."""

    __slots__ = ()
    _source = "aws:kinesis"

    @property
    def kinesis(self) -> KinesisStreamRecordPayload:
        return KinesisStreamRecordPayload(self._data["kinesis"])

    @property
    def item_identifier(self) -> str:
        return str(self._data["kinesis"]["sequenceNumber"])


# -- DynamoDB Streams ---------------------------------------------------------------------------


class StreamRecord(_DictRecord):
    """The ``dynamodb`` part of a stream record; images as plain Python values."""

    __slots__ = ()

    @property
    def sequence_number(self) -> str:
        return str(self._data["SequenceNumber"])

    item_identifier = sequence_number

    @property
    def keys(self) -> dict[str, Any] | None:  # Powertools names the keys image so
        return _deserialize(self._data.get("Keys"))

    @property
    def new_image(self) -> dict[str, Any] | None:
        return _deserialize(self._data.get("NewImage"))

    @property
    def old_image(self) -> dict[str, Any] | None:
        return _deserialize(self._data.get("OldImage"))

    @property
    def stream_view_type(self) -> str | None:
        return self._data.get("StreamViewType")

    @property
    def size_bytes(self) -> int | None:
        size = self._data.get("SizeBytes")
        return None if size is None else int(size)

    @property
    def approximate_creation_date_time(self) -> float | None:
        value = self._data.get("ApproximateCreationDateTime")
        return None if value is None else float(value)


class DynamoDBStreamRecord(_StreamEvent):
    """One record of an ``aws:dynamodb`` batch. ``event_name`` is ``"INSERT"``, ``"MODIFY"`` or
    ``"REMOVE"`` (a string; Powertools gives an enum of the same names)."""

    __slots__ = ()
    _source = "aws:dynamodb"

    @property
    def dynamodb(self) -> StreamRecord:
        return StreamRecord(self._data.get("dynamodb") or {})

    @property
    def item_identifier(self) -> str:
        return str(self._data["dynamodb"]["SequenceNumber"])

    @property
    def user_identity(self) -> dict[str, Any] | None:
        return self._data.get("userIdentity")


def _deserialize(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if image is None:
        return None
    # the DynamoDB serializer is loaded by the first record function that reads an image
    from resilient_aws.dynamodb import deserialize_item

    return deserialize_item(image)


LIGHT: dict[Source, type[_DictRecord]] = {
    "sqs": SQSRecord,
    "kinesis": KinesisStreamRecord,
    "dynamodb": DynamoDBStreamRecord,
}


def powertools_classes() -> dict[Source, Any]:
    """Powertools' own data classes (imported on the first batch that asks for them)."""
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
        DynamoDBRecord,
    )
    from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
        KinesisStreamRecord as PowertoolsKinesisRecord,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord as PtSQSRecord

    return {"sqs": PtSQSRecord, "kinesis": PowertoolsKinesisRecord, "dynamodb": DynamoDBRecord}


# -- checking an event before any record runs ---------------------------------------------------


class CheckedBatch:
    """The records of an event, their identifiers and, where order matters, their lanes.

    ``lanes[i]`` is the key of the ordered lane record ``i`` belongs to (one lane for a stream,
    one per group for a FIFO queue), or ``lanes`` is ``None`` when every record stands alone.
    """

    __slots__ = ("fifo", "ids", "lanes", "records", "source")

    def __init__(
        self,
        source: Source,
        records: list[dict[str, Any]],
        ids: list[str],
        lanes: list[str] | None,
        fifo: bool,
    ) -> None:
        self.source = source
        self.records = records
        self.ids = ids
        self.lanes = lanes
        self.fifo = fifo


def _bad(index: int, message: str) -> EntryValidationError:
    return EntryValidationError(f"record {index}", message)


_ID_OF: dict[Source, Callable[[dict[str, Any]], Any]] = {
    "sqs": operator.itemgetter("messageId"),
    "kinesis": lambda record: record["kinesis"]["sequenceNumber"],
    "dynamodb": lambda record: record["dynamodb"]["SequenceNumber"],
}
_EVENT_SOURCE_OF = operator.methodcaller("get", "eventSource")
_DECLARED: dict[Source, str] = {kind: name for name, kind in _EVENT_SOURCES.items()}


def check_event(event: Any, source: Source | None, ordered: Ordered) -> CheckedBatch:
    """Check the whole event before any record runs: its shape, each record's source and
    identifier (and FIFO group). A malformed event raises :class:`EntryValidationError` naming
    the record by index (and identifier when it has one), never by content: a batch is never
    half processed because its record 7 cannot be named in the response."""
    fast = _check_well_formed(event, source, ordered)
    if fast is not None:
        return fast
    return _check_each_record(event, source, ordered)


def _check_well_formed(event: Any, source: Source | None, ordered: Ordered) -> CheckedBatch | None:
    """The common case, checked a batch at a time (a few passes at C speed instead of one
    Python loop per record): a standard queue or a stream whose records all carry their
    source and id. ``None`` sends anything else to :func:`_check_each_record`, which names the
    record at fault."""
    records = event.get("Records") if type(event) is dict else None
    if type(records) is not list or not records:
        return None
    try:
        declared = set(map(_EVENT_SOURCE_OF, records))
        first = records[0]
        kind = source or _EVENT_SOURCES.get(first.get("eventSource"))
        if kind is None or not declared <= {_DECLARED[kind], None}:
            return None
        if None in declared and source is None:
            return None
        if kind == "sqs" and (
            str(first.get("eventSourceARN", "")).endswith(".fifo")
            or "MessageGroupId" in (first.get("attributes") or {})
        ):
            return None  # FIFO: groups are read record by record
        ids = list(map(_ID_OF[kind], records))
    except (AttributeError, KeyError, TypeError):
        return None
    if set(map(type, ids)) != {str} or "" in ids:
        return None
    if kind == "sqs":
        lanes = [""] * len(records) if ordered else None
    else:
        lanes = [""] * len(records) if ordered in (None, True, "batch") else None
    return CheckedBatch(kind, records, ids, lanes, False)


def _check_each_record(event: Any, source: Source | None, ordered: Ordered) -> CheckedBatch:
    if not isinstance(event, Mapping):
        raise EntryValidationError("event", f"must be a dict, got {type(event).__name__}")
    records = event.get("Records")
    if not isinstance(records, list):
        raise EntryValidationError(
            "event", "has no 'Records' list: not an SQS, Kinesis or DynamoDB Streams batch"
        )
    ids: list[str] = []
    groups: list[str] = []
    found: Source | None = source
    fifo = False
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _bad(index, f"must be a dict, got {type(record).__name__}")
        declared = record.get("eventSource")
        kind = _EVENT_SOURCES.get(declared) if isinstance(declared, str) else None
        if declared is not None and kind is None:
            raise _bad(
                index, f"eventSource {declared!r} is not aws:sqs, aws:kinesis or aws:dynamodb"
            )
        if kind is None:
            kind = found
            if kind is None:
                raise _bad(index, "has no eventSource, and no source= was given")
        elif found is None:
            found = kind
        elif kind != found:
            raise _bad(index, f"is an {declared} record in a {found} batch")
        ids.append(_identifier(index, record, kind))
        if kind == "sqs":
            attributes = record.get("attributes")
            group = attributes.get("MessageGroupId") if isinstance(attributes, dict) else None
            arn = str(record.get("eventSourceARN", ""))
            if group is None or (arn and not arn.endswith(".fifo")):
                # a standard queue may carry groups too (fair queues): they order nothing
                if arn.endswith(".fifo"):
                    raise _bad(index, f"({ids[-1]}) from a FIFO queue has no MessageGroupId")
                groups.append("")
            else:
                fifo = True
                groups.append(str(group))
    assert found is not None or not records
    kind = found or source or "sqs"
    lanes: list[str] | None
    if kind == "sqs":
        if fifo and "" in groups:
            raise _bad(groups.index(""), f"({ids[groups.index('')]}) has no MessageGroupId")
        if ordered == "batch":
            lanes = [""] * len(records)  # AWS's advice for FIFO: stop at the first failure
        else:
            in_order = fifo if ordered is None else ordered
            lanes = (groups if fifo else [""] * len(records)) if in_order else None
    else:
        # one batch is one shard (or one partition-key subset of it): one ordered lane
        lanes = [""] * len(records) if ordered in (None, True, "batch") else None
    return CheckedBatch(kind, records, ids, lanes, fifo)


def _identifier(index: int, record: dict[str, Any], kind: Source) -> str:
    if kind == "sqs":
        value = record.get("messageId")
        what = "messageId"
    else:
        inner_key = "kinesis" if kind == "kinesis" else "dynamodb"
        inner = record.get(inner_key)
        if not isinstance(inner, dict):
            raise _bad(index, f"has no {inner_key!r} object: not a {kind} record")
        what = "kinesis.sequenceNumber" if kind == "kinesis" else "dynamodb.SequenceNumber"
        value = inner.get("sequenceNumber" if kind == "kinesis" else "SequenceNumber")
    if not isinstance(value, str) or not value:
        raise _bad(index, f"has no {what}: it could not be named in a partial batch response")
    return value
