"""What ``export --native`` and ``load --native`` share: following a DynamoDB task to its end,
and reading or writing one S3 object as a stream.

Everything here waits and retries through the retry core: a poll that finds the task still
running is a retryable "not done yet" on a policy whose wait is the poll interval, and whose
sleep wakes up at the first Ctrl-C; a broken download resumes with a ranged GET; every part of
an upload is a retried request of its own. Memory is one upload part or one read buffer,
never the size of the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
from collections.abc import Callable
from typing import Any, TextIO

from resilient_aws.cli._context import Context
from resilient_aws.cli._interrupt import StopRequest
from resilient_aws.cli._progress import Progress, format_duration
from resilient_aws.retry import RetryPolicy

__all__ = [
    "MAX_PARTS",
    "PART_SIZE",
    "DetachedError",
    "S3Reader",
    "S3Upload",
    "WaitProgress",
    "error_code",
    "follow",
    "s3_url",
]

PART_SIZE = 8 * 1024 * 1024
"""Bytes per multipart upload part (S3 takes 5 MiB to 5 GiB): the memory an upload holds."""

MAX_PARTS = 10_000
"""S3's most parts in one multipart upload (numbered 1 to 10,000)."""

MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
"""S3's largest part: 5 GiB."""

_PARTS_PER_SIZE = 1_000
"""Parts sent at one size before the size doubles: 8 MiB parts hold the first 7.8 GiB in the
memory of one part; an object over 78 GiB, which 10,000 parts of 8 MiB cannot hold, gets
bigger parts (16 MiB, 32 MiB ...), up to 7.8 TiB in 10,000 parts."""


class DetachedError(Exception):
    """Ctrl-C while following a task: stop following, the task keeps running in AWS."""


class _NotDoneError(Exception):
    """The task is still running: the only error the polling policy retries."""


def _poll_classifier(error: BaseException) -> Any:
    from resilient_aws.retry import ErrorClass

    if isinstance(error, _NotDoneError):
        return ErrorClass(retryable=True, kind="transient", code="InProgress")
    # A describe call that failed was already retried by the command's own policy.
    return ErrorClass(retryable=False, kind="permanent", code=type(error).__name__)


def _pause(stop: StopRequest, seconds: float) -> None:
    # The stop request's event, not time.sleep: the first Ctrl-C ends the wait at once.
    stop.event.wait(seconds)


def follow(
    ctx: Context,
    describe: Callable[[], dict[str, Any]],
    *,
    finished: Callable[[dict[str, Any]], bool],
    interval: float,
    on_poll: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Call ``describe`` every ``interval`` seconds until ``finished`` says so; its last answer.

    The loop is the retry core's: "still running" is a retryable outcome of a policy with a
    fixed wait, no attempt cap and no budget (a long export is not a failing service), and the
    command's deadline if it has one. Raises :class:`DetachedError` after a Ctrl-C.
    """
    import tenacity

    policy: RetryPolicy = dataclasses.replace(
        ctx.policy,
        classifier=_poll_classifier,
        wait=tenacity.wait_fixed(interval),
        max_attempts=sys.maxsize,
        max_elapsed=None,
        budget=None,
        sleep=lambda seconds: _pause(ctx.stop, seconds),
    )

    def once() -> dict[str, Any]:
        if ctx.stop.requested:
            raise DetachedError
        state = describe()
        on_poll(state)
        if not finished(state):
            raise _NotDoneError
        return state

    return policy.call(once)


class WaitProgress(Progress):
    """The progress line of a task that runs in AWS: its status, a detail, the time waited.

    ``export orders: DynamoDB export IN_PROGRESS · 2:31``; the summary replaces it at the end.
    """

    def __init__(self, ctx: Context, label: str, *, stream: TextIO | None = None) -> None:
        args = ctx.args
        super().__init__(
            label,
            unit="items",
            stream=stream if stream is not None else ctx.stderr,
            enabled=not getattr(args, "no_progress", False),
            live=False if getattr(args, "verbose", False) else None,
        )
        self.status = "starting"
        self.detail = ""

    def show(self, status: str, detail: str = "", done: int = 0) -> None:
        """Redraw with the task's latest status."""
        self.status, self.detail = status, detail
        self.update(done)

    def line(self) -> str:
        detail = f" · {self.detail}" if self.detail else ""
        return f"{self.label}: {self.status}{detail} · {format_duration(self.elapsed)}"

    def summary(self) -> str:
        detail = f", {self.detail}" if self.detail else ""
        return f"{self.label}: {self.status} after {format_duration(self.elapsed)}{detail}"


def error_code(error: BaseException) -> str:
    """The service error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


class S3Reader(io.RawIOBase):
    """One S3 object as a raw byte stream that survives a dropped connection.

    Each read is a call through the retry core: a connection reset or a timeout in the middle
    of the body reopens the object at the byte it reached (``Range``), pinned to the version
    first read (``IfMatch`` on its ETag), so nothing is read twice nor skipped.
    """

    def __init__(self, client: Any, bucket: str, key: str, policy: RetryPolicy) -> None:
        super().__init__()
        self.client = client
        self.bucket = bucket
        self.key = key
        self.policy = policy
        self.offset = 0
        self.size: int | None = None
        self.etag: str | None = None
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.policy.call(self._read, len(view))
        view[: len(data)] = data
        return len(data)

    def _read(self, size: int) -> bytes:
        if self.size is not None and self.offset >= self.size:
            return b""
        if self._body is None:
            self._open()
        from botocore.exceptions import IncompleteReadError, ResponseStreamingError

        try:
            data: bytes = self._body.read(size)
        except IncompleteReadError as error:
            # botocore's body ended cleanly before its Content-Length: what it gave is good,
            # the rest is asked for again (a dropped connection, which the core retries)
            self._drop()
            raise ResponseStreamingError(error=error) from error
        except Exception:
            self._drop()  # the next attempt reopens at self.offset
            raise
        if not data and size and self.size is not None and self.offset < self.size:
            # a body that ends early without saying so: never taken for the end of the object
            self._drop()
            raise ResponseStreamingError(
                error=f"{s3_url(self.bucket, self.key)} ended at byte {self.offset:,} "
                f"of {self.size:,}"
            )
        self.offset += len(data)
        return data

    def _open(self) -> None:
        options: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.offset:
            options["Range"] = f"bytes={self.offset}-"
        if self.etag:
            options["IfMatch"] = self.etag
        response = self.client.get_object(**options)
        self._body = response["Body"]
        if self.etag is None:
            self.etag = response.get("ETag")
            length = response.get("ContentLength")
            self.size = int(length) if isinstance(length, int) else None

    def _drop(self) -> None:
        body, self._body = self._body, None
        # a broken connection may refuse to close: it is dropped anyway
        with contextlib.suppress(Exception):
            body.close()

    def close(self) -> None:
        if self._body is not None:
            self._drop()
        super().close()


class S3Upload:
    """Bytes written to one S3 object: one ``PutObject`` if they fit in a part, else a
    multipart upload whose every part is a request retried by the core.

    Memory is one part (:data:`PART_SIZE`, doubled every 1,000 parts so that the object fits in
    S3's 10,000). :meth:`close` completes the object; :meth:`abort`
    removes what was uploaded (a multipart upload left open is billed until aborted).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        policy: RetryPolicy,
        *,
        part_size: int = PART_SIZE,
        content_type: str = "application/gzip",
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.policy = policy
        self.part_size = part_size
        self.content_type = content_type
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._next_part_size():
            size = self._next_part_size()
            self._send_part(bytes(self._buffer[:size]))
            del self._buffer[:size]
        return len(data)

    def _next_part_size(self) -> int:
        """The size of the next part: :attr:`part_size`, doubled every 1,000 parts, so that
        10,000 parts (S3's most) hold far more than 10,000 parts of the first size."""
        doublings = len(self._parts) // _PARTS_PER_SIZE
        return min(self.part_size << doublings, MAX_PART_SIZE)

    def flush(self) -> None:
        return None  # parts leave when full: a flush must not send a part below S3's minimum

    def close(self) -> None:
        """Send what is buffered and complete the object."""
        if self._upload_id is None:
            self.policy.call(
                self.client.put_object,
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self.content_type,
            )
        else:
            if self._buffer or not self._parts:
                self._send_part(bytes(self._buffer))
            self.policy.call(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()

    def abort(self) -> None:
        """Give the upload up: S3 drops the parts already sent."""
        self._buffer.clear()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            # the run is already failing: its own error is the one to report
            with contextlib.suppress(Exception):
                self.policy.call(
                    self.client.abort_multipart_upload,
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                )

    def _send_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = self.policy.call(
                self.client.create_multipart_upload,
                Bucket=self.bucket,
                Key=self.key,
                ContentType=self.content_type,
            )
            self._upload_id = str(created["UploadId"])
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise ValueError(
                f"{s3_url(self.bucket, self.key)}: over {MAX_PARTS:,} parts of up to "
                f"{MAX_PART_SIZE:,} bytes, more than one S3 object holds"
            )
        sent = self.policy.call(
            self.client.upload_part,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})
