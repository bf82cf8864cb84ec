"""What every batch sender shares: the engine, the client, ids, bad input, the context manager."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Hashable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError

from resilient_aws._batching import (
    DEFAULT_MAX_ANSWERS,
    BatchEngine,
    Entry,
    KeepAnswers,
    Sent,
    botocore_retries,
)
from resilient_aws.errors import ConfigurationError, EntryTooLargeError, EntryValidationError
from resilient_aws.limits import BatchLimits
from resilient_aws.results import BatchResult
from resilient_aws.retry import (
    DEFAULT_POLICY,
    Deadline,
    FailedEntry,
    Pacer,
    RetryPolicy,
    classify_entry,
)

__all__ = ["BatchSender", "by_id", "positional"]


SelfT = TypeVar("SelfT", bound="BatchSender")


class BatchSender:
    """Base of the batch senders: buffer entries, send them in batches, account for each one.

    Subclasses turn a call like ``send(body)`` into an :class:`Entry` (validated, sized, named)
    and say how one request is made. Entries that can never be sent raise a typed
    :class:`~resilient_aws.errors.EntryValidationError` naming the entry when they are added
    (``on_invalid="report"`` records them as failed instead); nothing else in the buffer is
    affected. Leaving the ``with`` block (or ``close()``) sends what is buffered and raises
    :class:`~resilient_aws.errors.BatchWriteError` if any entry finally failed, unless
    ``raise_on_failure=False``; :attr:`result` accounts for every entry.

    The service's answers of the entries that succeeded (message id, sequence number, event
    id) are kept only when asked: ``keep_answers=True`` keeps a compact :class:`Answer` per
    entry (the entry's id and the service's identifiers, ``Answer.entry`` is ``None``),
    ``keep_answers="full"`` the caller's entry and the whole response. ``result.answers`` holds
    the newest ``max_answers`` (default 10,000; ``None`` for all): a long-lived sender stays
    flat in memory. Failed entries are always kept with the caller's entry
    (``FailedEntry.entry``), to be sent again.

    Entries the service withholds go back to the front of the buffer and ride in the next
    full request, paced by the sender's :class:`~resilient_aws.retry.Pacer` (``pacer=`` shares
    one); an entry is given up only at the policy's deadline or ``max_elapsed``, or after
    ``max_attempts`` requests that completed nothing.
    """

    service: str = ""
    operation: str = ""
    default_limits: BatchLimits

    def __init__(
        self,
        *,
        client: Any = None,
        session: Any = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        deadline: Deadline | float | None = None,
        concurrency: int = 4,
        ordered: bool = False,
        raise_on_failure: bool = True,
        on_invalid: Literal["raise", "report"] = "raise",
        limits: BatchLimits | None = None,
        flush_interval: float | None = None,
        keep_answers: KeepAnswers = False,
        pacer: Pacer | None = None,
        max_answers: int | None = DEFAULT_MAX_ANSWERS,
    ) -> None:
        if on_invalid not in ("raise", "report"):
            raise ConfigurationError(
                "on_invalid", f"must be 'raise' or 'report', got {on_invalid!r}"
            )
        self.client = self._make_client(client, session)
        self.policy = policy.with_deadline(deadline) if deadline is not None else policy
        self.limits = limits or self.default_limits
        self.on_invalid = on_invalid
        self.ordered = ordered
        self._ids = itertools.count()
        self._engine: BatchEngine[Any] = self._engine_type(
            self,
            policy=self.policy,
            concurrency=concurrency,
            ordered=ordered,
            on_group_failure="fail" if ordered else "continue",
            split_codes=self.split_codes,
            raise_on_failure=raise_on_failure,
            keep_answers=keep_answers,
            flush_interval=flush_interval,
            pacer=pacer,
            max_answers=max_answers,
        )

    client_name = ""
    split_codes: frozenset[str] = frozenset()
    method = ""
    """The client method of one request (``send_message_batch``), given :meth:`_request`."""
    _engine_type: type[BatchEngine[Any]] = BatchEngine

    @property
    def result(self) -> BatchResult[Any]:
        """Every entry so far, and the service's answers for those that succeeded."""
        engine = self._engine
        if engine.staged:  # counted once buffered
            with engine._lock:
                engine.absorb_staged()
        return engine.result

    def flush(self) -> None:
        """Send everything buffered and wait until every request in flight has settled."""
        self._engine.flush()

    def close(self) -> BatchResult[Any]:
        """Flush and return the result; raise ``BatchWriteError`` if entries finally failed."""
        return self._engine.close()

    def __enter__(self: SelfT) -> SelfT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine.exit(exc, type(self).__name__)

    # -- for subclasses -------------------------------------------------------------------------

    def send_request(self, batch: list[Entry[Any]]) -> Sent[Any]:  # the engine's Adapter protocol
        return self._read(batch, getattr(self.client, self.method)(**self._request(batch)))

    def _request(self, batch: list[Entry[Any]]) -> dict[str, Any]:
        """The parameters of one request of ``batch`` (sync and async clients alike)."""
        raise NotImplementedError

    def _read(self, batch: list[Entry[Any]], response: dict[str, Any]) -> Sent[Any]:
        """What the service's ``response`` to a request of ``batch`` says of each entry."""
        raise NotImplementedError

    def _make_client(self, client: Any, session: Any) -> Any:
        return _client(self.client_name, client, session)

    def _next_id(self, given: str | None) -> str:
        return given if given is not None else f"#{next(self._ids)}"

    def _add(
        self,
        source: Any,
        entry_id: str,
        payload: Any,
        size: int,
        *,
        group: Hashable | None = None,
        max_entry_bytes: int | None = None,
    ) -> None:
        limit = self.limits.max_entry_bytes if max_entry_bytes is None else max_entry_bytes
        if limit is not None and size > limit:
            self._refuse(source, EntryTooLargeError(entry_id, size, limit))
            return
        self._engine.add(Entry(source, entry_id, payload, size, group=group))

    def _refuse(self, source: Any, invalid: EntryValidationError) -> None:
        if self.on_invalid == "raise":
            raise invalid
        self._engine.reject(source, invalid)


def _client(service: str, client: Any, session: Any) -> Any:
    """``client``, else the shared default client of ``service`` (per environment or session)."""
    if client is not None:
        return client
    from resilient_aws._clients import default_client

    return default_client(service, session)


# The Id of each entry in a request is its index: "0".."9" for SQS and SNS (up to 1,000 for an
# emulator's larger limits=); any other answered Id is not one the request sent.
_INDEX = {str(i): i for i in range(1000)}
_IDS = list(_INDEX)
# the Ids of a request of n entries that is answered whole, in order (SQS's and SNS's 10)
_MAX_ORDERED = 10
_IDS_OF = [_IDS[:n] for n in range(_MAX_ORDERED + 1)]
_ID = operator.itemgetter("Id")


def _index(raw: Any) -> int:
    """The index an answered ``Id`` names, -1 if it names none."""
    return int(raw) if isinstance(raw, str) and raw.isdigit() else -1


def by_id(batch: list[Entry[Any]], response: dict[str, Any], service: str) -> Sent[Any]:
    """SQS and SNS: ``Successful`` and ``Failed`` lists keyed by the request's ``Id`` (its index).

    Every entry must be answered exactly once, by an ``Id`` the request sent: an answer for an
    unknown, repeated or both-succeeded-and-failed ``Id`` means the response cannot be trusted
    to say which entries made it (a redrive would delete a message whose copy never arrived),
    so it is an error of the whole request, not a guess.
    """
    size = len(batch)
    successful = response.get("Successful", ())
    if len(successful) == size and size <= _MAX_ORDERED and not response.get("Failed"):
        # What SQS and SNS answer for a request that went through whole: every Id, in order.
        try:
            whole = list(map(_ID, successful)) == _IDS_OF[size]
        except (KeyError, TypeError):  # an answer without an Id, or no mapping: read below
            whole = False
        if whole:
            # as many answers as entries (checked above); a keyword costs zip() a parse per call
            return Sent(list(zip(batch, successful)), [], botocore_retries(response))  # noqa: B905
    answered: set[int] = set()

    def entry_of(answer: Mapping[str, Any]) -> Entry[Any]:
        raw = answer.get("Id")
        index = _index(raw)
        if not 0 <= index < size or index in answered:
            raise InconsistentResponseError(service=service, sent=size, id=raw)
        answered.add(index)
        return batch[index]

    succeeded = []
    for ok in successful:
        # entry_of, inlined: this runs once per message. The answer keeps its "Id" (the index in
        # the request, meaningless to callers): the engine drops it if the answer is kept.
        raw = ok.get("Id")
        index = _INDEX.get(raw) if type(raw) is str else -1
        if index is None:
            index = _index(raw)
        if not 0 <= index < size or index in answered:
            raise InconsistentResponseError(service=service, sent=size, id=raw)
        answered.add(index)
        succeeded.append((batch[index], ok))
    failed = []
    for bad in response.get("Failed", ()):
        entry = entry_of(bad)
        verdict = classify_entry(service, bad.get("Code", ""), sender_fault=bad.get("SenderFault"))
        failed.append(
            FailedEntry(
                entry,
                entry.entry_id,
                verdict.code,
                bad.get("Message", ""),
                retryable=verdict.retryable,
            )
        )
    _check_accounted(batch, len(answered), service)
    return Sent(succeeded, failed, botocore_retries(response))


def positional(
    batch: list[Entry[Any]], response: dict[str, Any], results: str, service: str
) -> Sent[Any]:
    """EventBridge, Kinesis, Firehose: one answer per entry (in ``response[results]``), in order."""
    answers: list[dict[str, Any]] = response.get(results, [])
    _check_accounted(batch, len(answers), service)
    succeeded = []
    failed = []
    for entry, answer in zip(batch, answers, strict=True):
        code = answer.get("ErrorCode")
        if code:
            verdict = classify_entry(service, code)
            failed.append(
                FailedEntry(
                    entry,
                    entry.entry_id,
                    code,
                    answer.get("ErrorMessage", ""),
                    retryable=verdict.retryable,
                )
            )
        else:
            succeeded.append((entry, answer))
    return Sent(succeeded, failed, botocore_retries(response))


def _check_accounted(batch: list[Entry[Any]], answered: int, service: str) -> None:
    if answered != len(batch):
        # Never guess which entries made it: a response that does not account for every entry
        # is an error of the whole request (every entry reported with it, none retried: a re-send
        # could repeat the ones the service applied), not a silent success.
        raise IncompleteResponseError(service=service, sent=len(batch), answered=answered)


class IncompleteResponseError(BotoCoreError):
    """A batch response that does not answer for every entry: reported, never guessed."""

    fmt = "{service} answered for {answered} of {sent} entries"


class InconsistentResponseError(IncompleteResponseError):
    """A batch response that answers for an entry the request did not hold, or twice."""

    fmt = "{service} answered Id {id!r}, which its request of {sent} entries did not hold or had answered already"
