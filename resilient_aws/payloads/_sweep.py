"""The orphan sweeper: delete the claim-check objects no message can point at any more.

An object outlives its message when a producer crashed between the upload and the send, when
a send's outcome was unknown (``payloads_left``), or when nobody deletes objects (the
default): past the longest time a message can live (SQS keeps one 14 days at most), nothing
points at it. ``sweep_payloads`` lists the store's prefix page by page with
``ListObjectsV2`` and deletes what is older than that with ``DeleteObjects`` (1,000 keys per
request) through the batch engine: a key S3 fails to delete is retried on its own through the
retry core, and every listed key ends deleted, kept (newer) or failed (named by key).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from resilient_aws._batching import BatchEngine, Entry, Sent, botocore_retries
from resilient_aws._dataclass import lean_dataclass
from resilient_aws.batch._base import IncompleteResponseError, InconsistentResponseError
from resilient_aws.errors import ConfigurationError, RetryError
from resilient_aws.limits import BatchLimits
from resilient_aws.payloads._errors import PayloadError, PayloadNotFoundError
from resilient_aws.payloads._store import _code
from resilient_aws.retry import FailedEntry, Pacer, classify_entry

if TYPE_CHECKING:
    from resilient_aws.payloads._store import PayloadStore
    from resilient_aws.retry import RetryPolicy

__all__ = ["MIN_RETENTION_S", "S3_DELETE_OBJECTS", "SweepResult", "sweep_payloads"]

MIN_RETENTION_S = 86_400
"""The shortest retention a sweep takes: one day. Younger objects may belong to a message
still being sent, retried or in a queue (EventBridge retries a target for 24 hours, a Kinesis
stream keeps records 24 hours by default); an S3 lifecycle rule cannot expire sooner either."""

S3_DELETE_OBJECTS = BatchLimits(max_entries=1000, max_request_bytes=16 * 1024 * 1024)
"""``DeleteObjects``: 1,000 keys per request (keys are 1,024 bytes at most)."""
_KEY_OVERHEAD = 32  # <Object><Key></Key></Object> around each key in the request


@lean_dataclass(kw_only=True)
class SweepResult:
    """What one sweep did, key by key counted, never an object's content.

    ``listed`` = ``deleted`` + ``kept`` + ``failed`` + ``would_delete``: ``deleted`` objects
    were older than the cutoff and S3 confirmed their delete; ``kept`` were not older;
    ``failed`` were older but S3 finally refused or failed their delete (the first
    ``max_failures`` are in ``failures``, key -> ``"Code: message"``); ``would_delete`` counts,
    in a dry run, what would have been deleted. ``cutoff`` is the epoch time before which an
    object is old. ``stopped`` names the error code that ended the sweep early: a page of
    which no key could be deleted (access denied, the bucket gone) means the next would fare no
    better. ``resent`` counts keys sent again after a failed attempt; ``requests`` the
    ``DeleteObjects`` requests, ``pages`` the ``ListObjectsV2`` pages.
    """

    bucket: str
    prefix: str
    cutoff: float
    dry_run: bool = False
    listed: int = 0
    deleted: int = 0
    kept: int = 0
    failed: int = 0
    would_delete: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None
    pages: int = 0
    requests: int = 0
    resent: int = 0

    @property
    def ok(self) -> bool:
        """Every old object was deleted (or, in a dry run, would be) and the sweep ran to the
        end."""
        return self.failed == 0 and self.stopped is None

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON values (``failures`` as a dict, ``ok`` included)."""
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "cutoff": self.cutoff,
            "dry_run": self.dry_run,
            "listed": self.listed,
            "deleted": self.deleted,
            "kept": self.kept,
            "failed": self.failed,
            "would_delete": self.would_delete,
            "failures": dict(self.failures),
            "stopped": self.stopped,
            "pages": self.pages,
            "requests": self.requests,
            "resent": self.resent,
            "ok": self.ok,
        }

    def __str__(self) -> str:
        done = (
            f"{self.would_delete:,} would be deleted"
            if self.dry_run
            else f"{self.deleted:,} deleted"
        )
        text = (
            f"s3://{self.bucket}/{self.prefix}: {self.listed:,} listed, {done}, "
            f"{self.kept:,} kept, {self.failed:,} failed"
        )
        if self.stopped is not None:
            text += f"; stopped early ({self.stopped})"
        return text


class SweepListingError(PayloadError):
    """Listing the objects to sweep failed (after the retry core)."""

    _names = "sweep of"


class SweepBucketNotFoundError(SweepListingError, PayloadNotFoundError):
    """The bucket to sweep does not exist."""


class _Deleter:
    """The batch engine's adapter for ``DeleteObjects``: an entry is a key."""

    operation = "DeleteObjects"
    limits = S3_DELETE_OBJECTS

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def send_request(self, batch: list[Entry[str]]) -> Sent[str]:
        response = self.client.delete_objects(
            Bucket=self.bucket,
            # not Quiet: every key must be answered, so that none is taken as deleted unasked
            Delete={"Objects": [{"Key": entry.payload} for entry in batch], "Quiet": False},
        )
        return _by_key(batch, response)


def _by_key(batch: list[Entry[str]], response: dict[str, Any]) -> Sent[str]:
    """``Deleted`` and ``Errors`` keyed by the object key: each key of the request answered
    exactly once, or the whole response is not trusted (an error of the request)."""
    waiting = {entry.payload: entry for entry in batch}
    succeeded: list[tuple[Entry[str], Any]] = []
    failed: list[FailedEntry[Entry[str]]] = []
    for answer in response.get("Deleted", ()):
        entry = waiting.pop(answer.get("Key"), None)
        if entry is None:
            raise InconsistentResponseError(service="s3", sent=len(batch), id=answer.get("Key"))
        succeeded.append((entry, answer))
    for error in response.get("Errors", ()):
        entry = waiting.pop(error.get("Key"), None)
        if entry is None:
            raise InconsistentResponseError(service="s3", sent=len(batch), id=error.get("Key"))
        code = str(error.get("Code", "")) or "Unknown"
        verdict = classify_entry("s3", code)
        failed.append(
            FailedEntry(
                entry,
                entry.entry_id,
                code,
                str(error.get("Message", "")),
                retryable=verdict.retryable,
            )
        )
    if waiting:
        raise IncompleteResponseError(
            service="s3", sent=len(batch), answered=len(batch) - len(waiting)
        )
    return Sent(succeeded, failed, botocore_retries(response))


def sweep_payloads(
    store: PayloadStore,
    *,
    older_than_s: float,
    dry_run: bool = False,
    policy: RetryPolicy | None = None,
    page_size: int = 1000,
    max_failures: int = 100,
    clock: Callable[[], float] = time.time,
    progress: Callable[[SweepResult], None] | None = None,
    keep: Callable[[str], bool] | None = None,
) -> SweepResult:
    """Delete the objects under ``store``'s bucket and prefix last modified more than
    ``older_than_s`` seconds ago (``dry_run``: only count them).

    Choose ``older_than_s`` beyond the longest a message can still point at an object: the
    queue's retention (14 days at most), a DLQ's (a redriven message keeps its pointer, its
    clock starts again), an EventBridge archive's or a Kinesis stream's retention,
    an idempotency record's time to live; plus the longest a producer may take between upload
    and send. Without a prefix, every old object of the bucket goes: give the payloads a
    bucket or a prefix of their own. Under :data:`MIN_RETENTION_S` (one day) is refused.

    ``keep(key)`` true keeps an old object all the same (counted in ``kept``): the objects of
    events an outbox has not delivered yet, which wait for ``Outbox.unblock`` as long as it
    takes (``keep={p.key for p in outbox.undelivered_payloads()}.__contains__``).

    Memory stays bounded by one page (``page_size`` keys, 1,000 at most) and ``max_failures``
    named failures, whatever the bucket holds. Each page's old keys go to ``DeleteObjects``
    through the batch engine: keys that S3 fails to delete (``InternalError``, ``SlowDown``)
    are sent again on their own through ``policy`` (default: the store's), keys it refuses
    (``AccessDenied``) are counted as failed. ``progress`` is called with the result after
    each page (an exception it raises stops the sweep there, every listed key counted).
    Listing errors raise :class:`PayloadError` (:class:`PayloadNotFoundError` for a missing
    bucket) naming the bucket and the prefix. Whatever ends a sweep early (a listing error,
    an interrupt) carries ``sweep_result``: what the sweep did up to then, every listed key
    counted.
    """
    if not callable(getattr(store, "new_pointer", None)):
        raise ConfigurationError("store", f"must be a PayloadStore, got {type(store).__name__}")
    if (
        isinstance(older_than_s, bool)
        or not isinstance(older_than_s, (int, float))
        or not (math.isfinite(older_than_s) and older_than_s >= MIN_RETENTION_S)
    ):
        raise ConfigurationError(
            "older_than_s",
            f"must be a finite number of seconds >= {MIN_RETENTION_S} (1 day: a younger "
            f"object may belong to a message still in flight), got {older_than_s!r}",
        )
    if keep is not None and not callable(keep):
        raise ConfigurationError("keep", f"must be a callable(key) -> bool, got {keep!r}")
    if type(page_size) is not int or not 1 <= page_size <= S3_DELETE_OBJECTS.max_entries:
        raise ConfigurationError("page_size", f"must be an int in 1..1000, got {page_size!r}")
    if type(max_failures) is not int or max_failures < 0:
        raise ConfigurationError("max_failures", f"must be an int >= 0, got {max_failures!r}")
    policy = policy or store.policy
    bucket, prefix = store.config.bucket, store.config.prefix
    client = store.client
    result = SweepResult(
        bucket=bucket, prefix=prefix, cutoff=clock() - older_than_s, dry_run=dry_run
    )
    try:
        _sweep(client, policy, page_size, max_failures, result, progress, keep)
    except BaseException as error:
        # the caller's one handle on what was deleted before the sweep ended early
        error.sweep_result = result  # type: ignore[attr-defined]
        raise
    return result


def _sweep(
    client: Any,
    policy: RetryPolicy,
    page_size: int,
    max_failures: int,
    result: SweepResult,
    progress: Callable[[SweepResult], None] | None,
    keep: Callable[[str], bool] | None,
) -> None:
    bucket, prefix, dry_run = result.bucket, result.prefix, result.dry_run
    pacer = Pacer()  # one pace for the whole sweep, as one writer's
    token: str | None = None
    while True:
        page = _list_page(client, policy, bucket, prefix, token, page_size)
        result.pages += 1
        old: list[str] = []
        try:
            for item in page.get("Contents", ()):
                key = item["Key"]
                if item["LastModified"].timestamp() < result.cutoff and not (
                    keep is not None and keep(key)
                ):
                    old.append(key)
                else:
                    result.kept += 1
                result.listed += 1
        except BaseException:
            result.kept += len(old)  # keep() raised: the page's old keys so far stay, counted
            raise
        if dry_run:
            result.would_delete += len(old)
        elif old:
            _delete(client, bucket, old, policy, pacer, result, max_failures)
        if progress is not None:
            progress(result)
        if result.stopped is not None:
            return
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def _list_page(
    client: Any,
    policy: RetryPolicy,
    bucket: str,
    prefix: str,
    token: str | None,
    page_size: int,
) -> dict[str, Any]:
    options: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if token:
        options["ContinuationToken"] = token
    try:
        page: dict[str, Any] = policy.call(client.list_objects_v2, **options)
    except (ClientError, BotoCoreError, RetryError) as error:
        code = _code(error)
        kind = SweepBucketNotFoundError if code == "NoSuchBucket" else SweepListingError
        reason = (
            "the bucket does not exist"
            if kind is SweepBucketNotFoundError
            else f"listing the objects failed ({code})"
        )
        raise kind(f"s3://{bucket}/{prefix}", reason, bucket=bucket, code=code) from error
    return page


def _delete(
    client: Any,
    bucket: str,
    keys: list[str],
    policy: RetryPolicy,
    pacer: Pacer,
    result: SweepResult,
    max_failures: int,
) -> None:
    """Delete one page's old ``keys`` through a batch engine of their own (so that what it
    keeps is one page's), adding what happened to ``result``."""
    engine: BatchEngine[str] = BatchEngine(
        _Deleter(client, bucket),
        policy=policy,
        raise_on_failure=False,
        keep_answers=False,
        pacer=pacer,
    )
    try:
        for key in keys:
            engine.add(Entry(key, key, key, len(key.encode("utf-8")) + _KEY_OVERHEAD))
    finally:
        # close() accounts for every key added, even when interrupted: count them all
        try:
            engine.close()
        finally:
            page = engine.result
            result.deleted += page.succeeded
            # keys an interrupt kept from reaching the engine were listed: count them too
            result.failed += len(page.failed) + len(keys) - page.submitted
            result.requests += page.requests
            result.resent += page.resent
            failures = result.failures
            for failure in page.failed:
                if len(failures) < max_failures:
                    failures[failure.entry_id] = f"{failure.code}: {failure.message}"
            if page.failed and not page.succeeded:
                result.stopped = page.failed[0].code
