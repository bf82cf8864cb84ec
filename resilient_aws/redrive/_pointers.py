"""Event source mapping failures for DynamoDB Streams and Kinesis: pointers -> records.

When Lambda gives up on a batch from a stream, the on-failure destination (an SQS queue or an
SNS topic) receives an invocation record that points at the batch instead of holding it::

    {"requestContext": {"requestId": ..., "functionArn": ..., "condition": "RetryAttemptsExhausted",
                        "approximateInvokeCount": 1},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "version": "1.0", "timestamp": "2019-11-14T00:38:06.021Z",
     "KinesisBatchInfo": {"shardId": "shardId-000000000001", "startSequenceNumber": "4960...",
                          "endSequenceNumber": "4960...", "approximateArrivalOfFirstRecord": ...,
                          "approximateArrivalOfLastRecord": ..., "batchSize": 500,
                          "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"}}

(``DDBStreamBatchInfo`` for DynamoDB Streams, same fields.) The records must be read from the
stream, from ``AT_SEQUENCE_NUMBER`` start to the end sequence number, before the stream drops
them: 24 hours for DynamoDB Streams, the stream's retention period for Kinesis (24 hours by
default). Records are handed on in the shape Lambda gives a function (``{"Records": [...]}``
items), so the consumer's handler can process them as it would have.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import ConfigurationError, RetryError, StreamPointerExpiredError
from resilient_aws.redrive._drain import DEFAULT_REMEMBER_MOVED, DrainOptions, Outcome, drain
from resilient_aws.redrive._message import DlqMessage, Filter, compile_filter
from resilient_aws.redrive._queues import describe_queue, sqs_client
from resilient_aws.redrive._report import RedriveReport, start_report
from resilient_aws.redrive._targets import (
    Clients,
    QueueItem,
    check_function,
    error_text,
    invoke,
    send_items,
    unwrap_sns,
)
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["StreamPointer", "parse_stream_pointer", "read_pointer", "redrive_stream_pointers"]

_FIELDS = ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn")
_GONE = frozenset({"TrimmedDataAccessException", "ResourceNotFoundException"})
_TRIMMED_KINESIS = "did not come from this stream"
_MAX_EMPTY_PAGES = 50
_MAX_INVOKE_BYTES = 5 * 1024 * 1024  # under the 6 MB of a synchronous invocation

Deliver = Callable[[list[dict[str, Any]], "StreamPointer"], Any]
"""A function that takes the records of one pointer (in stream order) and the pointer; it
delivers them all or raises."""


@lean_dataclass(frozen=True)
class StreamPointer:
    """Where a failed batch of an event source mapping lies in its stream.

    ``kind`` is ``"dynamodb"`` or ``"kinesis"``; the sequence numbers are inclusive.
    ``function_arn`` is the function that failed (``requestContext.functionArn``).
    """

    kind: Literal["dynamodb", "kinesis"]
    stream_arn: str
    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    batch_size: int | None = None
    first_arrival: str | None = None
    last_arrival: str | None = None
    function_arn: str | None = None
    condition: str | None = None

    @property
    def region(self) -> str | None:
        parts = self.stream_arn.split(":")
        return parts[3] or None if len(parts) > 3 else None

    @property
    def stream_name(self) -> str:
        """The Kinesis stream name (``arn:aws:kinesis:r:a:stream/NAME``)."""
        return self.stream_arn.split(":", 5)[-1].split("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.shard_id}[{self.start_sequence_number}..{self.end_sequence_number}]"


def parse_stream_pointer(message: DlqMessage) -> StreamPointer:
    """The pointer in an on-failure record; ``ValueError`` naming the problem if it is not one."""
    try:
        body, _ = unwrap_sns(message)
    except ValueError:
        raise ValueError("NotAStreamPointer: the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("NotAStreamPointer: the body is not a JSON object")
    kind: Literal["dynamodb", "kinesis"]
    if isinstance(body.get("DDBStreamBatchInfo"), dict):
        kind, info = "dynamodb", body["DDBStreamBatchInfo"]
    elif isinstance(body.get("KinesisBatchInfo"), dict):
        kind, info = "kinesis", body["KinesisBatchInfo"]
    else:
        raise ValueError("NotAStreamPointer: no DDBStreamBatchInfo or KinesisBatchInfo")
    missing = [name for name in _FIELDS if not info.get(name)]
    if missing:
        raise ValueError(f"NotAStreamPointer: {', '.join(missing)} missing")
    for name in ("startSequenceNumber", "endSequenceNumber"):
        if not str(info[name]).isdigit():
            raise ValueError(f"NotAStreamPointer: {name} is not a sequence number")
    found = body.get("requestContext")
    context: dict[str, Any] = found if isinstance(found, dict) else {}
    batch_size = info.get("batchSize")
    return StreamPointer(
        kind=kind,
        stream_arn=str(info["streamArn"]),
        shard_id=str(info["shardId"]),
        start_sequence_number=str(info["startSequenceNumber"]),
        end_sequence_number=str(info["endSequenceNumber"]),
        batch_size=int(batch_size) if isinstance(batch_size, int) else None,
        first_arrival=_optional(info.get("approximateArrivalOfFirstRecord")),
        last_arrival=_optional(info.get("approximateArrivalOfLastRecord")),
        function_arn=_optional(context.get("functionArn")),
        condition=_optional(context.get("condition")),
    )


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


# -- reading the stream -------------------------------------------------------------------------


def read_pointer(
    pointer: StreamPointer,
    *,
    client: Any = None,
    policy: RetryPolicy | None = None,
    invoke_identity_arn: str = "",
) -> list[dict[str, Any]]:
    """The records ``pointer`` names, from start to end sequence number, shaped as Lambda
    passes them to a function. ``client`` is a ``dynamodbstreams`` or ``kinesis`` client (made
    for the stream's region if not given).

    :class:`~resilient_aws.errors.StreamPointerExpiredError` if the stream no longer holds them
    all: trimmed past the retention period, the shard or stream gone, or the range incomplete.
    """
    policy = policy or DEFAULT_POLICY
    if client is None:
        client = Clients().get(
            "dynamodbstreams" if pointer.kind == "dynamodb" else "kinesis", pointer.region
        )
    try:
        if pointer.kind == "dynamodb":
            raw = _read(pointer, client, policy, _DynamoDBStream())
            return [_lambda_dynamodb_record(r, pointer) for r in raw]
        raw = _read(pointer, client, policy, _KinesisStream())
        return [_lambda_kinesis_record(r, pointer, invoke_identity_arn) for r in raw]
    except ClientError as error:
        detail = error.response.get("Error", {})
        code = str(detail.get("Code", ""))
        if code in _GONE:
            raise StreamPointerExpiredError(str(pointer), f"{code}: {_gone_reason(code)}") from None
        if code == "InvalidArgumentException" and _TRIMMED_KINESIS in str(
            detail.get("Message", "")
        ):
            # Kinesis says a starting sequence number past its retention "did not come from this
            # stream"; one of another shard is refused with another message and stays a failure.
            raise StreamPointerExpiredError(
                str(pointer), f"{code}: {_gone_reason('TrimmedDataAccessException')}"
            ) from None
        raise


def _gone_reason(code: str) -> str:
    if code == "TrimmedDataAccessException":
        return "the records are past the stream's retention period"
    return "the stream or the shard no longer exists"


class _Stream:
    """How one kind of stream is read; GetRecords is asked the same way for both."""

    def page(self, client: Any, iterator: str, policy: RetryPolicy) -> dict[str, Any]:
        page: dict[str, Any] = policy.call(client.get_records, ShardIterator=iterator, Limit=1000)
        return page


class _DynamoDBStream(_Stream):
    def iterator(
        self, client: Any, pointer: StreamPointer, after: str | None, policy: RetryPolicy
    ) -> str:
        options: dict[str, Any] = {
            "StreamArn": pointer.stream_arn,
            "ShardId": pointer.shard_id,
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER" if after else "AT_SEQUENCE_NUMBER",
            "SequenceNumber": after or pointer.start_sequence_number,
        }
        return str(policy.call(client.get_shard_iterator, **options)["ShardIterator"])

    def sequence(self, record: dict[str, Any]) -> int:
        return int(record["dynamodb"]["SequenceNumber"])


class _KinesisStream(_Stream):
    def iterator(
        self, client: Any, pointer: StreamPointer, after: str | None, policy: RetryPolicy
    ) -> str:
        options: dict[str, Any] = {
            "StreamName": pointer.stream_name,
            "ShardId": pointer.shard_id,
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER" if after else "AT_SEQUENCE_NUMBER",
            "StartingSequenceNumber": after or pointer.start_sequence_number,
        }
        return str(policy.call(client.get_shard_iterator, **options)["ShardIterator"])

    def sequence(self, record: dict[str, Any]) -> int:
        return int(record["SequenceNumber"])


class StreamReadIncompleteError(BotoCoreError):
    """A shard read that gave up on empty pages before it reached the records or the tip."""

    fmt = (
        "read {pages} empty pages in a row while the shard was still behind its tip, with "
        "{records} of the records found: left for a later run"
    )


def _read(
    pointer: StreamPointer, client: Any, policy: RetryPolicy, stream: Any
) -> list[dict[str, Any]]:
    start, end = int(pointer.start_sequence_number), int(pointer.end_sequence_number)
    records: list[dict[str, Any]] = []
    iterator: str | None = stream.iterator(client, pointer, None, policy)
    empty = 0
    while iterator:
        try:
            page = stream.page(client, iterator, policy)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            # Iterators live 15 minutes: take a new one after the last record read.
            last = str(stream.sequence(records[-1])) if records else None
            iterator = stream.iterator(client, pointer, last, policy)
            continue
        batch = page.get("Records", [])
        for record in batch:
            sequence = stream.sequence(record)
            if not records and sequence != start:
                raise StreamPointerExpiredError(
                    str(pointer),
                    "the first records were trimmed: the stream starts after the start sequence number",
                )
            if sequence > end:
                return records
            records.append(record)
            if sequence == end:
                return records
        empty = 0 if batch else empty + 1
        caught_up = page.get("MillisBehindLatest") == 0
        if not batch and caught_up:
            break
        if empty > _MAX_EMPTY_PAGES:
            # Still behind the shard's tip: the records may lie further on (a sparse shard).
            # Not expired, only not read yet: the pointer stays for a later run.
            raise StreamReadIncompleteError(pages=empty, records=len(records))
        iterator = page.get("NextShardIterator")
    raise StreamPointerExpiredError(
        str(pointer),
        f"the stream holds {len(records)} of the records: it ended before the end sequence number",
    )


def _epoch(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        seconds = value.timestamp()
        return int(seconds) if seconds.is_integer() else seconds
    return value


def _as_lambda_json(value: Any) -> Any:
    """What Lambda's JSON holds for a value botocore hands over as a Python object: binary
    attributes (``B``, ``BS``) as base64 text, times as epoch seconds. Anything else is a bug
    to surface, never a ``str()`` that would look like data."""
    if isinstance(value, str):  # already text (base64 from a client that keeps the wire form)
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return _epoch(value)
    raise TypeError(f"{type(value).__name__} has no place in a Lambda event")


def _lambda_dynamodb_record(record: dict[str, Any], pointer: StreamPointer) -> dict[str, Any]:
    """A GetRecords record as Lambda passes it: with ``eventSourceARN``, times in epoch seconds."""
    shaped = dict(record)
    shaped["eventSourceARN"] = pointer.stream_arn
    change = dict(record.get("dynamodb", {}))
    if "ApproximateCreationDateTime" in change:
        change["ApproximateCreationDateTime"] = _epoch(change["ApproximateCreationDateTime"])
    for image in ("Keys", "NewImage", "OldImage"):
        if image in change:
            change[image] = {name: _lambda_value(v) for name, v in change[image].items()}
    shaped["dynamodb"] = change
    return shaped


def _lambda_value(value: dict[str, Any]) -> dict[str, Any]:
    """An attribute value as Lambda's JSON holds it: binary (``B``, ``BS``) as base64 text,
    at any depth of maps and lists."""
    ((kind, data),) = value.items()
    if kind == "B":
        return {"B": _as_lambda_json(data)}
    if kind == "BS":
        return {"BS": [_as_lambda_json(item) for item in data]}
    if kind == "M":
        return {"M": {name: _lambda_value(item) for name, item in data.items()}}
    if kind == "L":
        return {"L": [_lambda_value(item) for item in data]}
    return value


def _lambda_kinesis_record(
    record: dict[str, Any], pointer: StreamPointer, invoke_identity_arn: str
) -> dict[str, Any]:
    data = record.get("Data", b"")
    if isinstance(data, str):
        data = data.encode()
    payload: dict[str, Any] = {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": record["PartitionKey"],
        "sequenceNumber": record["SequenceNumber"],
        "data": base64.b64encode(data).decode("ascii"),
        "approximateArrivalTimestamp": _epoch(record.get("ApproximateArrivalTimestamp")),
    }
    shaped: dict[str, Any] = {
        "kinesis": payload,
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{pointer.shard_id}:{record['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": pointer.region or "",
        "eventSourceARN": pointer.stream_arn,
    }
    if record.get("EncryptionType"):
        payload["encryptionType"] = record["EncryptionType"]
    return shaped


# -- delivering the records ---------------------------------------------------------------------


class PointerDelivery:
    """Resolves each pointer and hands its records to a queue, a function or a callable."""

    def __init__(
        self,
        clients: Clients,
        *,
        queue_url: str | None,
        queue_fifo: bool,
        function_name: str | None,
        deliver: Deliver | None,
        invoke_identity_arn: str,
    ) -> None:
        self.clients = clients
        self.queue_url = queue_url
        self.queue_fifo = queue_fifo
        self.function_name = function_name
        self.deliver_records = deliver
        self.invoke_identity_arn = invoke_identity_arn

    def deliver(self, messages: list[DlqMessage], policy: RetryPolicy) -> Outcome:
        outcome = Outcome()
        resolved: list[tuple[DlqMessage, StreamPointer, list[dict[str, Any]]]] = []
        for message in messages:
            try:
                pointer = parse_stream_pointer(message)
            except ValueError as error:
                outcome.failed[message.message_id] = str(error)
                continue
            client = self.clients.get(
                "dynamodbstreams" if pointer.kind == "dynamodb" else "kinesis", pointer.region
            )
            try:
                records = read_pointer(
                    pointer,
                    client=client,
                    policy=policy,
                    invoke_identity_arn=self.invoke_identity_arn,
                )
            except StreamPointerExpiredError as gone:
                outcome.expired[message.message_id] = gone.reason
                continue
            except (ClientError, BotoCoreError, RetryError) as error:
                outcome.failed[message.message_id] = error_text(error)
                continue
            resolved.append((message, pointer, records))
        if self.queue_url is not None:
            self._to_queue(resolved, outcome, policy)
        else:
            for message, pointer, records in resolved:
                problem = self._hand_over(pointer, records, policy)
                if problem is None:
                    outcome.resolved += 1
                    outcome.records += len(records)
                else:
                    outcome.failed[message.message_id] = problem
        return outcome

    def _to_queue(
        self,
        resolved: Sequence[tuple[DlqMessage, StreamPointer, list[dict[str, Any]]]],
        outcome: Outcome,
        policy: RetryPolicy,
    ) -> None:
        assert self.queue_url is not None
        items: list[QueueItem] = []
        owner: dict[str, str] = {}
        for message, pointer, records in resolved:
            for index, record in enumerate(records):
                entry_id = f"{message.message_id}#{index}"
                owner[entry_id] = message.message_id
                event_id = str(record.get("eventID", entry_id))
                items.append(
                    QueueItem(
                        entry_id,
                        json.dumps(record, separators=(",", ":"), default=_as_lambda_json),
                        group_id=pointer.shard_id,  # shard order, on a FIFO queue
                        deduplication_id=hashlib.sha256(
                            f"{pointer.stream_arn}:{event_id}".encode()
                        ).hexdigest(),
                    )
                )
        failed, outcome.resent = send_items(
            self.queue_url,
            items,
            client=self.clients.get("sqs"),
            policy=policy,
            fifo=self.queue_fifo,
        )
        problems: dict[str, list[str]] = {}
        for entry_id, reason in failed.items():
            problems.setdefault(owner[entry_id], []).append(reason)
        for message, _, records in resolved:
            reasons = problems.get(message.message_id)
            if reasons:
                outcome.failed[message.message_id] = (
                    f"{len(reasons)} of {len(records)} records not sent: {reasons[0]}"
                )
            else:
                outcome.resolved += 1
                outcome.records += len(records)

    def _hand_over(
        self, pointer: StreamPointer, records: list[dict[str, Any]], policy: RetryPolicy
    ) -> str | None:
        if self.deliver_records is not None:
            try:
                self.deliver_records(records, pointer)
            except Exception as error:  # the callable's failure fails this pointer only
                return f"{type(error).__name__}: {error}"
            return None
        function = self.function_name or pointer.function_arn
        if function is None:
            return "NoFunction: the record names no function; pass function_name"
        client = self.clients.get("lambda", _region(function) or pointer.region)
        for chunk in _chunks(records):
            payload = json.dumps(
                {"Records": chunk}, separators=(",", ":"), default=_as_lambda_json
            ).encode()
            problem = invoke(client, function, payload, "RequestResponse", policy)
            if problem is not None:
                return problem  # later chunks wait: the shard's order is kept
        return None


def _chunks(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for record in records:
        record_size = len(json.dumps(record, default=_as_lambda_json))
        if chunks[-1] and size + record_size > _MAX_INVOKE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += record_size
    return chunks


def _region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] or None if arn.startswith("arn:") and len(parts) > 3 else None


def redrive_stream_pointers(
    source_queue_url: str,
    *,
    target_queue_url: str | None = None,
    function_name: str | None = None,
    deliver: Deliver | None = None,
    delete_expired: bool = False,
    invoke_identity_arn: str = "",
    client: Any = None,
    streams_client: Any = None,
    kinesis_client: Any = None,
    lambda_client: Any = None,
    session: Any = None,
    policy: RetryPolicy | None = None,
    max_messages: int | None = None,
    rate: float | None = None,
    filter: Filter | None = None,
    dry_run: bool = False,
    visibility_timeout: int = 300,
    wait_time_s: int = 1,
    run_id: str | None = None,
    concurrency: int = 4,
    progress: Callable[[RedriveReport], None] | None = None,
    remember_moved: int = DEFAULT_REMEMBER_MOVED,
) -> RedriveReport:
    """Resolve the stream pointers in an on-failure destination queue and deliver the records.

    For each message (a DynamoDB Streams or Kinesis event source mapping failure, see the
    module docs), the records from the start to the end sequence number are read from the
    stream and delivered, in stream order, to one target:

    - ``target_queue_url``: one message per record (the record as JSON, in Lambda's shape); on
      a FIFO queue the group is the shard and the deduplication id is derived from the record's
      ``eventID``, so a second delivery within 5 minutes is dropped;
    - ``function_name``: invoked synchronously with ``{"Records": [...]}`` as the event source
      mapping would (chunks under the payload limit); a function error or ``batchItemFailures``
      fails the pointer;
    - ``deliver``: a callable ``deliver(records, pointer)`` that raises on failure;
    - none of these: the function named by each record (``requestContext.functionArn``).

    A message is deleted only once all its records were delivered. Pointers whose records the
    stream no longer holds (DynamoDB Streams keep records 24 hours; Kinesis its retention period)
    are reported in ``report.expired`` with the reason and do not fail the run; they stay in the
    queue unless ``delete_expired``. ``resolved`` counts pointers delivered, ``records`` records.
    ``invoke_identity_arn`` fills that field of Kinesis records (the mapping's role; unknown to
    the pointer). ``streams_client``/``kinesis_client``/``lambda_client`` default to clients for
    each ARN's region. The other options work as in :func:`redrive_sqs`.
    """
    targets = [t for t in (target_queue_url, function_name, deliver) if t is not None]
    if len(targets) > 1:
        raise ConfigurationError(
            "target", "give one of target_queue_url, function_name and deliver"
        )
    if deliver is not None and not callable(deliver):
        raise ConfigurationError("deliver", "must be callable(records, pointer)")
    policy = policy or DEFAULT_POLICY
    sqs = sqs_client(client, session)
    clients = Clients(
        session,
        sqs=sqs,
        dynamodbstreams=streams_client,
        kinesis=kinesis_client,
        **{"lambda": lambda_client},
    )
    source = describe_queue(sqs, source_queue_url, policy, "source queue")
    queue_fifo = False
    target_name = "the function named by each record"
    if target_queue_url is not None:
        target = describe_queue(sqs, target_queue_url, policy, "target queue")
        queue_fifo, target_name = target.fifo, target.url
    elif function_name is not None:
        check_function(
            clients.get("lambda", _region(function_name)), function_name, policy, "target function"
        )
        target_name = function_name
    elif deliver is not None:
        target_name = getattr(deliver, "__name__", "a callable")
    options = DrainOptions(
        max_messages=max_messages,
        rate=rate,
        filter=compile_filter(filter),
        dry_run=dry_run,
        visibility_timeout=visibility_timeout,
        wait_time_s=wait_time_s,
        concurrency=concurrency,
        fifo=source.fifo,
        delete_expired=delete_expired,
        progress=progress,
        remember_moved=remember_moved,
    )
    report = start_report(
        source,
        kind="stream-pointers",
        target=target_name,
        run_id=run_id,
        dry_run=dry_run,
        max_messages=max_messages,
    )
    delivery = PointerDelivery(
        clients,
        queue_url=target_queue_url,
        queue_fifo=queue_fifo,
        function_name=function_name,
        deliver=deliver,
        invoke_identity_arn=invoke_identity_arn,
    )
    return drain(sqs, source.url, delivery, report, options, policy)
