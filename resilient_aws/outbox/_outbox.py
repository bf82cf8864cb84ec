"""``Outbox``: the business change and its events in one ``TransactWriteItems``."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)

from resilient_aws import tracing
from resilient_aws._dataclass import lean_dataclass
from resilient_aws.dynamodb._schema import KeySchema, describe_key_schema
from resilient_aws.dynamodb._serialize import deserialize_item, item_size, serialize_item
from resilient_aws.errors import (
    ConfigurationError,
    DuplicateEntryError,
    EntryTooLargeError,
    TransactionCanceledError,
    TransactionConditionFailedError,
    TransactionTooLargeError,
    UnknownTableError,
)
from resilient_aws.limits import DYNAMODB_ITEM_BYTES, DYNAMODB_TRANSACT_WRITE
from resilient_aws.outbox._actions import ConditionCheck, Delete, Put, Update
from resilient_aws.outbox._event import (
    OffloadedPayload,
    OutboxEvent,
    envelope_text,
    message_attributes_size,
)
from resilient_aws.outbox._layout import (
    A_ATTEMPTS,
    A_BLOCKED_EVENT,
    A_LAST_ERROR,
    A_LAST_FAILURE,
    A_PENDING,
    A_PENDING_AT,
    A_SEQUENCE,
    A_STATUS,
    BLOCKED,
    DELIVERED,
    PENDING,
    Layout,
    StoredEvent,
)
from resilient_aws.retry import DEFAULT_POLICY, ErrorClass, RetryPolicy, classify

if TYPE_CHECKING:
    from resilient_aws.payloads import PayloadPointer, PayloadStore

__all__ = ["Outbox"]

logger = logging.getLogger("resilient_aws.outbox")

MAX_ACTIONS = DYNAMODB_TRANSACT_WRITE.max_entries
MAX_TRANSACTION_BYTES = DYNAMODB_TRANSACT_WRITE.max_request_bytes
MAX_ITEM_BYTES = DYNAMODB_ITEM_BYTES

# Cancellation reasons worth retrying: contention and throttling, never a failed condition.
_RETRYABLE_REASONS = frozenset(
    {
        "TransactionConflict",
        "ProvisionedThroughputExceeded",
        "ThrottlingError",
        "RequestLimitExceeded",
    }
)


def _reasons(error: ClientError) -> list[dict[str, Any]]:
    reasons: Any = error.response.get("CancellationReasons")
    return [dict(reason) for reason in reasons] if isinstance(reasons, list) else []


def _failed_reasons(error: ClientError) -> list[tuple[int, str, str]]:
    return [
        (index, str(reason.get("Code")), str(reason.get("Message", "")))
        for index, reason in enumerate(_reasons(error))
        if reason.get("Code") not in (None, "None")
    ]


def classify_transaction(error: BaseException) -> ErrorClass:
    """A cancelled transaction is retryable when only contention or throttling cancelled it."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "TransactionCanceledException":
            codes = {reason_code for _, reason_code, _ in _failed_reasons(error)}
            if codes and codes <= _RETRYABLE_REASONS:
                if codes == {"TransactionConflict"}:
                    return ErrorClass(True, "transient", code)
                return ErrorClass(True, "throttle", code)
            return ErrorClass(False, "permanent", code)
    return classify(error)


@lean_dataclass(frozen=True)
class _Action:
    name: str
    identity: tuple[Any, ...]
    request: dict[str, Any]
    size: int


@lean_dataclass
class _Planned:
    """An event's record as planned before anything is sent; ``envelope`` (the object's
    text) is set when its payload goes to S3."""

    event: OutboxEvent
    payload_json: str
    action: _Action
    envelope: str | None = None
    offloaded: OffloadedPayload | None = None


# Errors raised before the request left: nothing was applied. Any other error (a timeout, a
# connection lost after sending, a 5xx) leaves the transaction's outcome unknown.
_NOT_SENT = (ParamValidationError, EndpointConnectionError, NoCredentialsError)
# A request with the same ClientRequestToken is still being applied: it may yet succeed.
_STILL_APPLYING = "TransactionInProgressException"


def outcome_unknown(error: BaseException) -> bool:
    """Whether a transaction that raised ``error`` may have been applied all the same."""
    if isinstance(error, ClientError):
        if _code(error) == _STILL_APPLYING:
            return True
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return not (isinstance(status, int) and status < 500)
    return not isinstance(error, _NOT_SENT)


class Outbox:
    """Writes business changes and their events atomically; tracks each event's delivery.

    ``table`` is where plain-dict puts, updates and deletes go; outbox records go to
    ``outbox_table`` (default: the same table, single-table design). The outbox table needs a
    string partition key and a string sort key (``layout`` names them) and, for the sweeper, the
    sparse GSI ``layout.pending_index`` (see the docs for the table definition). Delivered
    records get ``layout.ttl_attribute`` = now + ``delivered_ttl_s``; after ``max_attempts``
    failed deliveries an event is blocked until :meth:`unblock`.

    ``payloads`` (a :class:`~resilient_aws.payloads.PayloadStore`) stores in S3 the envelope
    of each event that the table or a target could not take (always, over the store's
    threshold, over the 400 KB item, or to fit the 4 MB transaction) before the transaction;
    its record holds the pointer (an :class:`OffloadedPayload`), and SQS and SNS targets send
    the extended client libraries' pointer message. Objects of a transaction that finally
    failed are deleted; those of one whose outcome is unknown are kept and named.

    Every DynamoDB call goes through ``policy`` (the retry core). Without ``client``, the
    library's shared default DynamoDB client is used (of ``session`` if given; made once,
    botocore's own retries off), the one ``BatchWriter`` and ``scan`` use too.
    """

    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        session: Any = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        outbox_table: str | None = None,
        layout: Layout | None = None,
        delivered_ttl_s: int = 7 * 24 * 3600,
        max_attempts: int = 5,
        clock: Any = time.time,
        payloads: PayloadStore | None = None,
    ) -> None:
        if not isinstance(table, str) or not table:
            raise ConfigurationError("table", "must be a non-empty table name")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError("max_attempts", f"must be an int >= 1, got {max_attempts!r}")
        if payloads is not None and not callable(getattr(payloads, "put", None)):
            raise ConfigurationError(
                "payloads", f"must be a PayloadStore, got {type(payloads).__name__}"
            )
        self.table = table
        self.outbox_table = outbox_table or table
        self._client = client
        self.session = session
        self.policy = policy
        self.layout = layout or Layout()
        self.delivered_ttl_s = delivered_ttl_s
        self.max_attempts = max_attempts
        self.clock = clock
        self.payloads = payloads
        self._transaction_policy = dataclasses.replace(policy, classifier=classify_transaction)
        self._sequence_lock = threading.Lock()
        self._last_sequence = 0

    @property
    def client(self) -> Any:
        """``client=`` if given, else the library's shared default DynamoDB client (of
        ``session=`` if given, else of the environment).

        The default client is looked up on every call, not kept: an outbox made at import (a
        Lambda global) follows the environment (``mock_aws()``'s credentials, a test's
        ``clear_default_clients()``) and is reached by ``chaos_defaults``.
        """
        if self._client is not None:
            return self._client
        from resilient_aws._clients import default_client

        return default_client("dynamodb", self.session)

    @client.setter
    def client(self, client: Any) -> None:
        self._client = client

    # -- writing -------------------------------------------------------------------------------

    def write(
        self,
        *,
        puts: Iterable[Mapping[str, Any] | Put] = (),
        updates: Iterable[Update] = (),
        deletes: Iterable[Mapping[str, Any] | Delete] = (),
        conditions: Iterable[ConditionCheck] = (),
        events: Iterable[OutboxEvent] = (),
        policy: RetryPolicy | None = None,
    ) -> list[OutboxEvent]:
        """Apply the changes and record the events in one transaction; return the events.

        Everything is validated before anything is sent: item sizes (400 KB), the number of
        actions (100) and the transaction's size (4 MB), one action per item, keys that match
        the tables' key schemas, values DynamoDB can store, JSON payloads. A retried request
        carries the same ``ClientRequestToken``, so DynamoDB applies it once. A failed condition
        raises :class:`TransactionConditionFailedError` naming the action; contention and
        throttling are retried through the core. Pass ``policy`` for a per-call deadline.

        With ``payloads``, the offloaded envelopes are uploaded after every check and before the
        transaction. A transaction that finally fails has them deleted; one whose outcome is
        unknown (a timeout, a lost connection, a 5xx: DynamoDB may have applied it) keeps them.
        Whatever a write with ``payloads`` raises carries ``payloads_left``: the
        ``(event id, PayloadPointer)`` of the objects it left in S3 (logged too; empty when it
        left none), for a cleanup job or the lifecycle rule.

        With tracing on (:mod:`resilient_aws.tracing`), each event without a ``trace`` of its
        own gets the current span's context, stored in its record (``outbox_traceparent``,
        ``outbox_tracestate``, counted in its size) and carried on the messages the targets
        publish; the returned events hold it. Without a current span nothing is added.
        """
        if self.payloads is None:
            return self._write(puts, updates, deletes, conditions, events, policy)
        try:
            return self._write(puts, updates, deletes, conditions, events, policy)
        except BaseException as error:
            if not isinstance(getattr(error, "payloads_left", None), list):
                _set_left(error, [])  # refused before anything was uploaded
            raise

    def _write(
        self,
        puts: Iterable[Mapping[str, Any] | Put],
        updates: Iterable[Update],
        deletes: Iterable[Mapping[str, Any] | Delete],
        conditions: Iterable[ConditionCheck],
        events: Iterable[OutboxEvent],
        policy: RetryPolicy | None,
    ) -> list[OutboxEvent]:
        actions: list[_Action] = []
        for put in puts:
            actions.append(self._put(put if isinstance(put, Put) else Put(item=put)))
        for update in updates:
            actions.append(self._update(update))
        for delete in deletes:
            actions.append(
                self._delete(delete if isinstance(delete, Delete) else Delete(key=delete))
            )
        for check in conditions:
            actions.append(self._condition(check))
        carried = tracing.inject("w3c")  # {} with no span current, tracing off or OTel absent
        planned = [self._traced_event(event, carried) for event in self._sequenced(list(events))]
        written = [plan.event for plan in planned]
        if self.payloads is not None:
            self._offload_to_fit(actions, planned, self.payloads)
        actions.extend(plan.action for plan in planned)
        self._check(actions)
        uploaded = self._upload(planned)
        del planned  # the payloads' JSON and envelopes: in the requests or in S3 now
        token = str(uuid.uuid4())
        base = policy or self.policy
        transaction_policy = (
            self._transaction_policy
            if policy is None
            else dataclasses.replace(base, classifier=classify_transaction)
        )
        client = self.client
        unknown = False

        def transact_write_items(**request: Any) -> Any:
            nonlocal unknown
            try:
                return client.transact_write_items(**request)
            except BaseException as error:
                # one attempt that may have been applied makes the whole call's outcome unknown
                unknown = unknown or outcome_unknown(error)
                raise

        try:
            transaction_policy.call(
                transact_write_items,
                TransactItems=[action.request for action in actions],
                ClientRequestToken=token,
            )
        except BaseException as error:
            raised = error
            if isinstance(error, ClientError) and _code(error) == "TransactionCanceledException":
                raised = self._canceled(error, actions)
            if uploaded:
                if unknown or not isinstance(error, Exception):
                    self._keep(uploaded, raised, "the transaction's outcome is unknown")
                else:
                    self._discard(uploaded, raised)
            if raised is error:
                raise
            raise raised from error
        return written

    def _sequenced(self, events: list[OutboxEvent]) -> list[OutboxEvent]:
        if all(event.sequence is not None for event in events):
            return events
        with self._sequence_lock:
            # Microseconds since the epoch, strictly increasing in this process.
            base = max(time.time_ns() // 1000, self._last_sequence + 1)
            self._last_sequence = base + len(events)
        return [
            event if event.sequence is not None else dataclasses.replace(event, sequence=base + i)
            for i, event in enumerate(events)
        ]

    def _schema(self, table: str) -> KeySchema:
        return describe_key_schema(self.client, table, self.policy)

    def _key(
        self, table: str, key: Mapping[str, Any], what: str
    ) -> tuple[dict[str, Any], str, Any]:
        wire = serialize_item(key, what)
        schema = self._schema(table)
        identity = schema.key_of(wire, what)
        return schema.key_only(wire), f"{what} {schema.describe(wire)}", identity

    @staticmethod
    def _expression_parts(
        condition: str | None, names: Mapping[str, str], values: Mapping[str, Any], what: str
    ) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        if condition:
            parts["ConditionExpression"] = condition
        if names:
            parts["ExpressionAttributeNames"] = dict(names)
        if values:
            parts["ExpressionAttributeValues"] = serialize_item(values, what)
        return parts

    def _put(self, put: Put) -> _Action:
        table = put.table or self.table
        wire = serialize_item(put.item, "put")
        schema = self._schema(table)
        name = f"put {schema.describe(wire)}"
        identity = schema.key_of(wire, name)
        size = item_size(wire)
        if size > MAX_ITEM_BYTES:
            raise EntryTooLargeError(name, size, MAX_ITEM_BYTES)
        request = {"TableName": table, "Item": wire}
        request.update(self._expression_parts(put.condition, put.names, put.values, name))
        return _Action(name, (table, identity), {"Put": request}, size)

    def _update(self, update: Update) -> _Action:
        table = update.table or self.table
        key, name, identity = self._key(table, update.key, "update")
        request: dict[str, Any] = {
            "TableName": table,
            "Key": key,
            "UpdateExpression": update.expression,
        }
        parts = self._expression_parts(update.condition, update.names, update.values, name)
        request.update(parts)
        size = (
            item_size(key)
            + len(update.expression)
            + item_size(parts.get("ExpressionAttributeValues", {}))
        )
        return _Action(name, (table, identity), {"Update": request}, size)

    def _delete(self, delete: Delete) -> _Action:
        table = delete.table or self.table
        key, name, identity = self._key(table, delete.key, "delete")
        request = {"TableName": table, "Key": key}
        request.update(self._expression_parts(delete.condition, delete.names, delete.values, name))
        return _Action(name, (table, identity), {"Delete": request}, item_size(key))

    def _condition(self, check: ConditionCheck) -> _Action:
        table = check.table or self.table
        key, name, identity = self._key(table, check.key, "condition on")
        request = {"TableName": table, "Key": key}
        request.update(self._expression_parts(check.condition, check.names, check.values, name))
        return _Action(name, (table, identity), {"ConditionCheck": request}, item_size(key))

    def _traced_event(self, event: OutboxEvent, carried: dict[str, Any]) -> _Planned:
        """:meth:`_event` of ``event`` with the current span's context, unless it has a trace
        of its own or only fits the item without the one the library would add."""
        if not carried or event.trace is not None:
            return self._event(event)
        try:
            return self._event(dataclasses.replace(event, trace=carried))
        except EntryTooLargeError:
            return self._event(event)  # raises again if the event is too large by itself

    def _event(self, event: OutboxEvent) -> _Planned:
        payload_json = self.layout.payload_json(event)
        item = self.layout.record(event, written_at=self.clock(), payload_json=payload_json)
        size = item_size(item)
        plan = _Planned(event, payload_json, self._event_action(event, item, size))
        store = self.payloads
        if store is None:
            if size > MAX_ITEM_BYTES:
                raise EntryTooLargeError(event.describe(), size, MAX_ITEM_BYTES)
        elif size > MAX_ITEM_BYTES or store.config.always:
            self._offload(plan, store)
        else:
            # the threshold is the message's, as for a sender: the envelope and its attributes
            text = envelope_text(event, payload_json)
            if store.config.offloads(len(text) + message_attributes_size(event)):
                self._offload(plan, store, text)
        return plan

    def _offload(self, plan: _Planned, store: PayloadStore, text: str | None = None) -> None:
        """Plan ``plan``'s envelope for S3 and its record with the pointer (nothing sent)."""
        event = plan.event
        # dumps writes ASCII only (\u escapes), so characters are bytes
        text = text if text is not None else envelope_text(event, plan.payload_json)
        if len(text) > store.config.max_bytes:
            raise EntryTooLargeError(event.describe(), len(text), store.config.max_bytes)
        offloaded = OffloadedPayload(store.new_pointer(), len(text), store.config.legacy, store)
        item = self.layout.record(
            event, written_at=self.clock(), payload_json=plan.payload_json, offloaded=offloaded
        )
        size = item_size(item)
        if size > MAX_ITEM_BYTES:  # the pointer is small: an enormous aggregate id or type
            raise EntryTooLargeError(event.describe(), size, MAX_ITEM_BYTES)
        plan.action = self._event_action(event, item, size)
        plan.envelope = text
        plan.offloaded = offloaded

    def _offload_to_fit(
        self, actions: list[_Action], planned: list[_Planned], store: PayloadStore
    ) -> None:
        """Offload the largest events still inline until the transaction fits 4 MB."""
        total = sum(a.size for a in actions) + sum(p.action.size for p in planned)
        inline = sorted(
            (p for p in planned if p.offloaded is None), key=lambda p: p.action.size, reverse=True
        )
        for plan in inline:
            if total <= MAX_TRANSACTION_BYTES:
                break
            before = plan.action.size
            self._offload(plan, store)
            total -= before - plan.action.size

    def _event_action(self, event: OutboxEvent, item: dict[str, Any], size: int) -> _Action:
        name = event.describe()
        request = {
            "TableName": self.outbox_table,
            "Item": item,
            # An aggregate's sequence number is used once: a second writer with the same
            # version loses, instead of silently overwriting the first writer's event.
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": self.layout.partition_key},
        }
        identity = (item[self.layout.partition_key]["S"], item[self.layout.sort_key]["S"])
        return _Action(name, (self.outbox_table, identity), {"Put": request}, size)

    @staticmethod
    def _check(actions: Sequence[_Action]) -> None:
        if not actions:
            raise ConfigurationError("write", "nothing to write: no changes and no events")
        if len(actions) > MAX_ACTIONS:
            raise TransactionTooLargeError(
                f"{len(actions)} actions in one transaction; DynamoDB allows {MAX_ACTIONS}"
            )
        total = sum(action.size for action in actions)
        if total > MAX_TRANSACTION_BYTES:
            raise TransactionTooLargeError(
                f"{total} bytes in one transaction; DynamoDB allows {MAX_TRANSACTION_BYTES}"
            )
        seen: dict[tuple[Any, ...], str] = {}
        for action in actions:
            if action.identity in seen:
                raise DuplicateEntryError(
                    action.name,
                    f"the same item as {seen[action.identity]}: DynamoDB allows one action per "
                    "item in a transaction",
                )
            seen[action.identity] = action.name

    @staticmethod
    def _canceled(error: ClientError, actions: Sequence[_Action]) -> TransactionCanceledError:
        reasons = [
            (actions[index].name if index < len(actions) else f"action #{index}", code, message)
            for index, code, message in _failed_reasons(error)
        ]
        if any(code == "ConditionalCheckFailed" for _, code, _ in reasons):
            return TransactionConditionFailedError("a condition of the transaction failed", reasons)
        return TransactionCanceledError("DynamoDB cancelled the transaction", reasons)

    # -- offloaded payloads -----------------------------------------------------------------------

    def _upload(self, planned: Sequence[_Planned]) -> list[tuple[str, PayloadPointer]]:
        """Store the planned envelopes; the ``(event id, pointer)`` of each object written (or
        maybe written). An upload that fails deletes the objects written before it and raises
        (nothing was sent to DynamoDB); an interrupt names them (no S3 call while it goes on)."""
        store = self.payloads
        uploaded: list[tuple[str, PayloadPointer]] = []
        if store is None:
            return uploaded
        try:
            for plan in planned:
                if plan.offloaded is None or plan.envelope is None:
                    continue
                # listed before the put: a put that fails after S3 stored the object leaves it
                uploaded.append((plan.event.id, plan.offloaded.pointer))
                store.put(plan.envelope, entry_id=plan.event.id, pointer=plan.offloaded.pointer)
        except Exception as error:
            self._discard(uploaded, error)
            raise
        except BaseException as error:
            self._keep(uploaded, error, "their upload was interrupted")
            raise
        return uploaded

    def _discard(self, uploaded: list[tuple[str, PayloadPointer]], error: BaseException) -> None:
        """Delete the objects of a write that finally failed; those whose delete fails too are
        named on ``error.payloads_left`` and in the log."""
        store = self.payloads
        assert store is not None
        left: list[tuple[str, PayloadPointer]] = []
        for event_id, pointer in uploaded:
            try:
                store.delete(pointer, message_id=event_id)
            except Exception as failure:
                code = getattr(failure, "code", None) or type(failure).__name__
                self._name_left(event_id, pointer, f"the write failed, its delete too ({code})")
                left.append((event_id, pointer))
        _set_left(error, left)

    def _keep(
        self, uploaded: list[tuple[str, PayloadPointer]], error: BaseException, why: str
    ) -> None:
        """Keep the objects of a write that may have been applied (deleting them could leave a
        committed event pointing to nothing): named on ``error.payloads_left`` and logged."""
        for event_id, pointer in uploaded:
            self._name_left(event_id, pointer, why)
        _set_left(error, list(uploaded))

    @staticmethod
    def _name_left(event_id: str, pointer: PayloadPointer, why: str) -> None:
        logger.warning(
            "outbox: the payload of event %s is left in s3://%s/%s: %s (a lifecycle rule or a "
            "cleanup job removes it; a committed event still needs it)",
            event_id,
            pointer.bucket,
            pointer.key,
            why,
        )

    # -- delivery state (used by the relay and the sweeper) --------------------------------------

    def stored(self, item: Mapping[str, Any]) -> StoredEvent:
        """The event of an outbox record (plain Python values); an offloaded payload is an
        :class:`OffloadedPayload` read through this outbox's ``payloads`` when asked."""
        return self.layout.stored(item, self.payloads)

    def states(self, events: Sequence[OutboxEvent]) -> tuple[dict[str, StoredEvent], set[str]]:
        """The stored state of ``events`` (consistent reads) and the aggregates now blocked."""
        from resilient_aws.dynamodb import batch_get

        layout = self.layout
        keys: list[dict[str, Any]] = []
        for event in events:
            assert event.sequence is not None
            keys.append(deserialize_item(layout.event_key(event.aggregate_id, event.sequence)))
        for aggregate in {event.aggregate_id for event in events}:
            keys.append(deserialize_item(layout.marker_key(aggregate)))
        found = batch_get(
            self.outbox_table,
            keys,
            client=self.client,
            policy=self.policy,
            key=(layout.partition_key, layout.sort_key),
            consistent_read=True,
        )
        states: dict[str, StoredEvent] = {}
        blocked: set[str] = set()
        for item in found.items:
            if layout.is_event(item):
                stored = self.stored(item)
                states[stored.event.id] = stored
            elif A_BLOCKED_EVENT in item:
                blocked.add(str(item[layout.partition_key])[len("OUTBOX#") :])
        return states, blocked

    def mark_delivered(self, event: OutboxEvent, *, policy: RetryPolicy | None = None) -> bool:
        """Mark ``event`` delivered (if still pending); False if someone else settled it first."""
        assert event.sequence is not None
        now = self.clock()
        try:
            (policy or self.policy).call(
                self.client.update_item,
                TableName=self.outbox_table,
                Key=self.layout.event_key(event.aggregate_id, event.sequence),
                UpdateExpression="SET #st = :delivered, #ttl = :ttl REMOVE #pending, #at",
                ConditionExpression="#st = :pending",
                ExpressionAttributeNames={
                    "#st": A_STATUS,
                    "#ttl": self.layout.ttl_attribute,
                    "#pending": A_PENDING,
                    "#at": A_PENDING_AT,
                },
                ExpressionAttributeValues={
                    ":delivered": {"S": DELIVERED},
                    ":pending": {"S": PENDING},
                    ":ttl": {"N": str(int(now) + self.delivered_ttl_s)},
                },
            )
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_failed(
        self,
        event: OutboxEvent,
        error: str,
        *,
        policy: RetryPolicy | None = None,
        attempts: int | None = None,
    ) -> bool:
        """Count a failed delivery; block the event (and its aggregate) after ``max_attempts``.

        ``attempts`` is the count read with the event's state (the relay and the sweeper pass
        it; without it the record is read first). The count is written conditionally on it,
        with a token of this failure: a retried request whose first response was lost finds its
        own token and counts the failure once; a failure another relay counted meanwhile is
        counted on top of. Returns whether the event is now blocked.
        """
        assert event.sequence is not None
        policy = policy or self.policy
        key = self.layout.event_key(event.aggregate_id, event.sequence)
        token = uuid.uuid4().hex
        seen = attempts
        for _ in range(_COUNT_ATTEMPTS):
            if seen is None:
                current = self._read_failure_state(key, policy)
                if current is None:
                    return False  # delivered, blocked or gone: nothing to count
                seen = current[0]
            outcome, counted = self._count_failure(key, error, token, seen, policy)
            if outcome == "counted":
                break
            if outcome == "settled":
                return False
            seen = counted  # another failure was counted meanwhile: count this one on top
        else:
            logger.warning(
                "outbox: the failed delivery of %s was not counted: its record changed under "
                "every attempt",
                event.describe(),
            )
            return False
        if counted < self.max_attempts:
            return False
        self._block(event, policy)
        return True

    def _count_failure(
        self, key: dict[str, Any], error: str, token: str, seen: int, policy: RetryPolicy
    ) -> tuple[str, int]:
        """One conditional write of the count ``seen + 1``: ``("counted", count)``,
        ``("settled", 0)`` if the event is no longer pending, or ``("changed", count)`` if
        another failure was counted since ``seen``."""
        condition = "#st = :pending AND #attempts = :seen"
        if seen == 0:
            condition = "#st = :pending AND (attribute_not_exists(#attempts) OR #attempts = :seen)"
        try:
            policy.call(
                self.client.update_item,
                TableName=self.outbox_table,
                Key=key,
                UpdateExpression="SET #err = :err, #attempts = :next, #token = :token",
                ConditionExpression=condition,
                ExpressionAttributeNames={
                    "#err": A_LAST_ERROR,
                    "#attempts": A_ATTEMPTS,
                    "#token": A_LAST_FAILURE,
                    "#st": A_STATUS,
                },
                ExpressionAttributeValues={
                    ":err": {"S": error[:1000]},
                    ":seen": {"N": str(seen)},
                    ":next": {"N": str(seen + 1)},
                    ":token": {"S": token},
                    ":pending": {"S": PENDING},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as failure:
            if _code(failure) != "ConditionalCheckFailedException":
                raise
            old: Any = failure.response.get("Item")
            state = _failure_state(old) if old else self._read_failure_state(key, policy)
            if state is None:
                return "settled", 0
            count, stored_token = state
            if stored_token == token:
                # our own write, applied on an attempt whose response was lost
                return "counted", count
            return "changed", count
        return "counted", seen + 1

    def _read_failure_state(
        self, key: dict[str, Any], policy: RetryPolicy
    ) -> tuple[int, str | None] | None:
        """(attempts, token of the last counted failure) of a pending event; None otherwise."""
        response = policy.call(
            self.client.get_item, TableName=self.outbox_table, Key=key, ConsistentRead=True
        )
        item = response.get("Item")
        return _failure_state(item) if item else None

    def _block(self, event: OutboxEvent, policy: RetryPolicy) -> None:
        assert event.sequence is not None
        logger.error(
            "outbox: %s blocked after %d failed deliveries; its aggregate's later events wait "
            "for Outbox.unblock(%r)",
            event.describe(),
            self.max_attempts,
            event.aggregate_id,
        )
        marker = {
            **self.layout.marker_key(event.aggregate_id),
            A_BLOCKED_EVENT: {"S": event.id},
        }
        try:
            dataclasses.replace(policy, classifier=classify_transaction).call(
                self.client.transact_write_items,
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.outbox_table,
                            "Key": self.layout.event_key(event.aggregate_id, event.sequence),
                            "UpdateExpression": "SET #st = :blocked",
                            "ConditionExpression": "#st = :pending",
                            "ExpressionAttributeNames": {"#st": A_STATUS},
                            "ExpressionAttributeValues": {
                                ":blocked": {"S": BLOCKED},
                                ":pending": {"S": PENDING},
                            },
                        }
                    },
                    {"Put": {"TableName": self.outbox_table, "Item": marker}},
                ],
                ClientRequestToken=str(uuid.uuid4()),
            )
        except ClientError as error:
            if _code(error) != "TransactionCanceledException":
                raise
            # Delivered or blocked meanwhile by another relay: nothing to do.

    # -- operating on blocked events -----------------------------------------------------------

    def blocked(self) -> list[StoredEvent]:
        """Every blocked event, with its attempts and last error."""
        return [s for s in self._scan_pending(None) if s.status == BLOCKED]

    def pending(self, *, older_than_s: float = 0.0) -> list[StoredEvent]:
        """Events not delivered yet, written at least ``older_than_s`` seconds ago (default:
        every pending event, up to this moment)."""
        cutoff_ms = int((self.clock() - older_than_s) * 1000)
        return [s for s in self._scan_pending(cutoff_ms) if s.status == PENDING]

    def undelivered_payloads(self) -> list[PayloadPointer]:
        """The S3 objects of the events not delivered yet (pending or blocked) whose payload
        was offloaded: what a sweep must keep however old (``sweep_payloads(store, ...,
        keep={p.key for p in outbox.undelivered_payloads()}.__contains__)``), since a blocked
        event waits for :meth:`unblock` as long as it takes. Read from the pending index
        (an event written moments ago may be missing: its object is too young to sweep)."""
        return [s.pointer for s in self._scan_pending(None) if s.pointer is not None]

    def _scan_pending(self, cutoff_ms: int | None) -> list[StoredEvent]:
        from resilient_aws.dynamodb import scan

        params: dict[str, Any] = {"IndexName": self.layout.pending_index}
        if cutoff_ms is not None:
            params.update(
                FilterExpression="#at <= :cutoff",
                ExpressionAttributeNames={"#at": A_PENDING_AT},
                ExpressionAttributeValues={":cutoff": {"N": str(cutoff_ms)}},
            )
        with self._pending_index_required():
            found = [
                self.stored(item)
                for item in scan(
                    self.outbox_table, client=self.client, policy=self.policy, **params
                )
                if self.layout.is_event(item)
            ]
        found.sort(key=lambda s: (s.event.aggregate_id, s.event.sequence or 0))
        return found

    def undelivered(
        self, aggregate_id: str, *, before: int | None = None, limit: int | None = None
    ) -> list[StoredEvent]:
        """The pending and blocked events of one aggregate in sequence order (those before
        sequence ``before``, if given), from the sparse pending index: eventually consistent,
        so callers that act on it re-read the records."""
        from resilient_aws.dynamodb import query

        condition = "#pending = :aggregate"
        names = {"#pending": A_PENDING}
        values: dict[str, Any] = {":aggregate": {"S": aggregate_id}}
        if before is not None:
            condition += " AND #seq < :before"
            names["#seq"] = A_SEQUENCE
            values[":before"] = {"N": str(before)}
        with self._pending_index_required():
            return [
                self.stored(item)
                for item in query(
                    self.outbox_table,
                    client=self.client,
                    policy=self.policy,
                    max_items=limit,
                    IndexName=self.layout.pending_index,
                    KeyConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
                if self.layout.is_event(item)
            ]

    @contextlib.contextmanager
    def _pending_index_required(self) -> Iterator[None]:
        try:
            yield
        except (ClientError, UnknownTableError) as error:
            # DynamoDB: ValidationException "does not have the specified index"; moto's Query
            # answers ResourceNotFoundException "Invalid index", which scan and query report
            # as UnknownTableError (the ClientError is its cause)
            cause = error if isinstance(error, ClientError) else error.__cause__
            if isinstance(cause, ClientError):
                info = cause.response.get("Error", {})
                code, message = info.get("Code"), str(info.get("Message", "")).lower()
                if (
                    code in ("ValidationException", "ResourceNotFoundException")
                    and "index" in message
                ):
                    raise ConfigurationError(
                        "pending_index",
                        f"table {self.outbox_table!r} has no index "
                        f"{self.layout.pending_index!r}: the relay and the sweeper read it "
                        "(see the table definition in the docs)",
                    ) from cause
            raise

    def unblock(self, aggregate_id: str) -> list[str]:
        """Make the blocked events of an aggregate pending again (attempts reset) and lift the
        hold on its later events; the next sweep delivers them in order. Returns their ids."""
        layout = self.layout
        blocked = [s for s in self.undelivered(aggregate_id) if s.status == BLOCKED]
        blocked = blocked[: MAX_ACTIONS - 1]
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.outbox_table,
                    "Key": layout.event_key(aggregate_id, stored.event.sequence or 0),
                    "UpdateExpression": "SET #st = :pending, #attempts = :zero",
                    "ConditionExpression": "#st = :blocked",
                    "ExpressionAttributeNames": {"#st": A_STATUS, "#attempts": A_ATTEMPTS},
                    "ExpressionAttributeValues": {
                        ":pending": {"S": PENDING},
                        ":blocked": {"S": BLOCKED},
                        ":zero": {"N": "0"},
                    },
                }
            }
            for stored in blocked
        ]
        items.append(
            {"Delete": {"TableName": self.outbox_table, "Key": layout.marker_key(aggregate_id)}}
        )
        self._transaction_policy.call(
            self.client.transact_write_items,
            TransactItems=items,
            ClientRequestToken=str(uuid.uuid4()),
        )
        return [stored.event.id for stored in blocked]


# A failure count written over a record that changed meanwhile (another relay counted its own
# failure) is written again on the new count, a few times at most.
_COUNT_ATTEMPTS = 5


def _failure_state(item: Mapping[str, Any]) -> tuple[int, str | None] | None:
    """(attempts, last failure token) of a wire-format record still pending, else None."""
    if item.get(A_STATUS, {}).get("S") != PENDING:
        return None
    attempts = int(item.get(A_ATTEMPTS, {}).get("N", "0"))
    token = item.get(A_LAST_FAILURE, {}).get("S")
    return attempts, token


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _set_left(error: BaseException, left: list[tuple[str, PayloadPointer]]) -> None:
    # on whatever the write raises (a ClientError, a RetryError...): the caller's one handle
    error.payloads_left = left  # type: ignore[attr-defined]
