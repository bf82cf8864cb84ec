"""``resilient-aws export TABLE --native``: DynamoDB exports the table to S3, we read it back.

``ExportTableToPointInTime`` reads the table's point-in-time recovery data, not the table: it
consumes no read capacity and works for a table no single machine could scan in time. The
export is followed with ``DescribeExport``; then its manifest (``manifest-summary.json`` ->
``manifest-files.json`` -> gzipped data files of ``{"Item": {...}}`` lines) is streamed from
S3 and every item written to stdout as the scan-based export writes it.
"""

from __future__ import annotations

import gzip
import io
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import INTERRUPTED, STOPPED, UsageError, classify_error
from resilient_aws.cli._jsonl import Format, dump_item, parse_item
from resilient_aws.cli._native import (
    DetachedError,
    S3Reader,
    WaitProgress,
    error_code,
    follow,
    s3_url,
)
from resilient_aws.errors import UnknownTableError

__all__ = ["ExportFile", "data_files", "run_native_export"]

_PITR_OFF = "PointInTimeRecoveryUnavailableException"
_BATCH = 500  # lines joined into one write to stdout


@dataclass(frozen=True)
class ExportFile:
    """One data file of an export: its key and, from the manifest, how many items it holds."""

    key: str
    items: int | None = None


class _StopError(Exception):
    """The run cannot go on (exit 3): the message names the table, export or file."""


def run_native_export(ctx: Context) -> int:
    """Export with ``ExportTableToPointInTime`` and write the export's items to stdout."""
    args = ctx.args
    table: str = args.table
    _check_options(args)
    started = time.monotonic()
    client = ctx.client("dynamodb")
    report: dict[str, Any] = {"command": "export", "table": table, "native": True}
    try:
        if args.export_arn:
            description = _describe(ctx, client, args.export_arn)
            _check_table(description, table)
            _check_kind(description)  # before following it to its end
        else:
            description = _start(ctx, client, table)
    except _StopError as stop:
        return _stopped(ctx, report, str(stop), started)
    arn = str(description["ExportArn"])
    report.update(export_arn=arn, s3_bucket=description.get("S3Bucket"))
    report["s3_prefix"] = description.get("S3Prefix")
    waiting = WaitProgress(ctx, f"export {table}")
    try:
        description = follow(
            ctx,
            lambda: _describe(ctx, client, arn),
            finished=lambda state: state.get("ExportStatus") != "IN_PROGRESS",
            interval=args.poll_interval,
            on_poll=lambda state: waiting.show(f"DynamoDB export {state.get('ExportStatus')}"),
        )
    except (DetachedError, KeyboardInterrupt):
        waiting.finish()
        return _detached(ctx, report, table, arn, started)
    status = str(description.get("ExportStatus"))
    count = description.get("ItemCount")
    waiting.detail = f"{count:,} items" if isinstance(count, int) else ""
    waiting.finish()
    report.update(
        status=status,
        item_count=count,
        billed_size_bytes=description.get("BilledSizeBytes"),
        manifest=description.get("ExportManifest"),
    )
    if status != "COMPLETED":
        failure = ": ".join(
            str(part)
            for part in (description.get("FailureCode"), description.get("FailureMessage"))
            if part
        )
        message = f"the DynamoDB export of table {table!r} ended {status}" + (
            f": {failure}" if failure else ""
        )
        report["failure"] = {
            "code": description.get("FailureCode"),
            "message": description.get("FailureMessage"),
        }
        return _stopped(ctx, report, message, started)
    _check_kind(description)
    bucket = str(description["S3Bucket"])
    location = s3_url(bucket, str(description.get("S3Prefix") or ""))
    if args.no_download:
        report.update(complete=True, exported=0, elapsed_s=round(time.monotonic() - started, 3))
        text = [
            f"DynamoDB exported {_items(count)} from {table} to {location} "
            f"(export {arn}); nothing downloaded (--no-download)"
        ]
        return ctx.report(report, text, ok=True, stream=ctx.stderr)
    return _download(ctx, report, description, started)


def _check_options(args: Any) -> None:
    """Options of the scan-based export mean nothing to DynamoDB's export: bad usage."""
    if not args.export_arn and not args.s3_bucket:
        raise UsageError("--native needs --s3-bucket (or --export-arn to follow an export)")
    if args.export_arn and (args.s3_bucket or args.s3_prefix or args.export_time):
        raise UsageError("--export-arn: the export already names its bucket, prefix and time")
    for option, given in (
        ("--segments", args.segments != 4),
        ("--workers", args.workers is not None),
        ("--page-size", args.page_size is not None),
        ("--consistent-read", args.consistent_read),
        ("--resume", args.resume is not None),
    ):
        if given:
            raise UsageError(f"{option} is for the scan-based export, not with --native")


def _start(ctx: Context, client: Any, table: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    args = ctx.args
    options: dict[str, Any] = {
        "TableArn": _table_arn(ctx, client, table),
        "S3Bucket": args.s3_bucket,
        "S3Prefix": (args.s3_prefix or table).strip("/"),
        "ExportFormat": "DYNAMODB_JSON",
        # one token per run: a request retried after a lost response starts no second export
        "ClientToken": uuid.uuid4().hex,
    }
    if args.export_time is not None:
        options["ExportTime"] = args.export_time
    try:
        answer = ctx.policy.call(client.export_table_to_point_in_time, **options)
    except ClientError as error:
        if error_code(error) == _PITR_OFF:
            raise _StopError(
                f"point-in-time recovery is off for table {table!r}: a --native export needs "
                f"it (aws dynamodb update-continuous-backups --table-name {table} "
                "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true)"
            ) from None
        raise
    return dict(answer["ExportDescription"])


def _table_arn(ctx: Context, client: Any, table: str) -> str:
    from botocore.exceptions import ClientError

    try:
        described = ctx.policy.call(client.describe_table, TableName=table)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise UnknownTableError(table) from None
        raise
    return str(described["Table"]["TableArn"])


def _describe(ctx: Context, client: Any, arn: str) -> dict[str, Any]:
    return dict(ctx.policy.call(client.describe_export, ExportArn=arn)["ExportDescription"])


def _check_kind(description: dict[str, Any]) -> None:
    """Only a full export in DynamoDB JSON holds ``{"Item": ...}`` lines: an incremental
    export's lines are changes (``Keys``, ``NewImage``, ``OldImage``), an ION export is not
    JSON. Bad usage, said before a byte is read."""
    arn = description.get("ExportArn")
    kind = description.get("ExportType")
    if kind == "INCREMENTAL_EXPORT":
        raise UsageError(
            f"export {arn} is an incremental export ({kind}): its files hold changes, not "
            "items; `export --native` reads full exports only"
        )
    fmt = description.get("ExportFormat")
    if fmt == "ION":  # (moto says DYNAMO_JSON for DYNAMODB_JSON: only ION is refused)
        raise UsageError(
            f"export {arn} was exported as {fmt}: `export --native` reads DYNAMODB_JSON only"
        )


def _check_table(description: dict[str, Any], table: str) -> None:
    table_arn = str(description.get("TableArn", ""))
    if table_arn and table_arn.rsplit("/", 1)[-1] != table:
        raise UsageError(f"--export-arn: that export is of another table than {table!r}")


# -- reading the export back ------------------------------------------------------------------------


def _download(
    ctx: Context, report: dict[str, Any], description: dict[str, Any], started: float
) -> int:
    args = ctx.args
    table: str = args.table
    fmt: Format = args.format
    s3 = ctx.client("s3")
    bucket = str(description["S3Bucket"])
    try:
        files, summary_count = _manifest(s3, description, ctx.policy)
        expected = _expected(files, description, summary_count)
    except _StopError as stop:
        return _stopped(ctx, report, str(stop), started)
    progress = ctx.progress(f"export {table}", total=expected)
    out = ctx.stdout
    exported = 0
    done_files = 0
    interrupted = False
    problem: str | None = None
    try:
        for file in files:
            for count, lines in _items_of(s3, bucket, file, ctx):
                if lines is None:  # count is then the line's number
                    problem = f"{s3_url(bucket, file.key)} line {count}: not a DynamoDB item"
                    break
                out.write(lines)
                exported += count
                progress.update(exported)
                if ctx.stop.requested:
                    interrupted = True
                    break
            if interrupted or problem:
                break
            done_files += 1
        out.flush()
    except KeyboardInterrupt:
        interrupted = True
    except BrokenPipeError:
        raise
    except Exception as error:  # an S3 error mid-read: report how far it got
        problem = classify_error(error)[1]
    progress.finish()
    complete = not interrupted and problem is None
    if complete and expected is not None and exported != expected:
        problem = f"read {exported:,} items from the export's files, its manifest says {expected:,}"
        complete = False
    report.update(
        format=fmt,
        files=len(files),
        files_read=done_files,
        exported=exported,
        complete=complete,
        elapsed_s=round(time.monotonic() - started, 3),
    )
    location = s3_url(bucket, str(description.get("S3Prefix") or ""))
    text = [
        f"exported {exported:,} items from {table} through a DynamoDB export "
        f"({_plural(len(files), 'file')} under {location})"
        + ("" if complete else "; stopped before the end")
    ]
    code: int | None = None
    if problem is not None:
        report["error"] = {"type": "ExportReadError", "message": problem}
        text.append(f"error: {problem}")
        code = STOPPED
    elif interrupted:
        code = INTERRUPTED
    if not complete:
        text.append(
            f"read it again with: resilient-aws export {table} --native --export-arn "
            f"{report['export_arn']} > FILE  (the export stays in S3: nothing is exported twice)"
        )
    return ctx.report(report, text, ok=complete, stream=ctx.stderr, exit_code=code)


def _expected(
    files: list[ExportFile], description: dict[str, Any], summary: int | None
) -> int | None:
    """How many items the export holds: its ``ItemCount`` (DescribeExport, and the summary
    manifest), which the counts of the files the manifest lists must add up to; a list of
    files that misses some is refused before a line is written."""
    total = description.get("ItemCount")
    total = int(total) if isinstance(total, int) else None
    if summary is not None:
        if total is not None and summary != total:
            raise _StopError(
                f"the export's summary manifest ({description.get('ExportManifest')}) counts "
                f"{summary:,} items, DescribeExport {total:,}"
            )
        total = summary
    listed = [f.items for f in files]
    if None in listed:
        return total
    in_files = sum(n for n in listed if n is not None)
    if total is not None and in_files != total:
        raise _StopError(
            f"the export holds {total:,} items, the files its manifest-files.json lists "
            f"hold {in_files:,}: the list is incomplete, nothing read"
        )
    return in_files


def data_files(s3: Any, description: dict[str, Any], policy: Any) -> list[ExportFile]:
    """The data files of a completed export, from its manifest.

    An endpoint that writes no manifest (moto) gets its files listed instead, under the
    export's prefix, provided no other export shares that prefix.
    """
    return _manifest(s3, description, policy)[0]


def _manifest(
    s3: Any, description: dict[str, Any], policy: Any
) -> tuple[list[ExportFile], int | None]:
    """The data files of an export and the item count of its summary manifest (if any)."""
    bucket = str(description["S3Bucket"])
    prefix = str(description.get("S3Prefix") or "").strip("/")
    manifest = description.get("ExportManifest")
    if manifest:
        summary = json.loads(_get_text(s3, bucket, str(manifest), prefix, policy))
        count = summary.get("itemCount")
        summary_count = int(count) if isinstance(count, int) else None
        files_key = str(summary["manifestFilesS3Key"])
        files: list[ExportFile] = []
        for line in _get_text(s3, bucket, files_key, prefix, policy).splitlines():
            if line.strip():
                entry = json.loads(line)
                count = entry.get("itemCount")
                key = _resolved(s3, bucket, str(entry["dataFileS3Key"]), prefix, policy)
                files.append(ExportFile(key, int(count) if isinstance(count, int) else None))
        return files, summary_count
    return _listed_files(s3, bucket, prefix, str(description["ExportArn"]), policy), None


def _listed_files(s3: Any, bucket: str, prefix: str, arn: str, policy: Any) -> list[ExportFile]:
    root = f"{prefix}/AWSDynamoDB/" if prefix else "AWSDynamoDB/"
    by_export: dict[str, list[str]] = {}
    token: str | None = None
    while True:  # one listing page per request; each request retried by the core
        options: dict[str, Any] = {"Bucket": bucket, "Prefix": root}
        if token:
            options["ContinuationToken"] = token
        page = policy.call(s3.list_objects_v2, **options)
        for entry in page.get("Contents", []):
            key = str(entry["Key"])
            export_id, _, rest = key[len(root) :].partition("/")
            if rest.startswith("data/"):
                by_export.setdefault(export_id, []).append(key)
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    own = arn.rsplit("/", 1)[-1]
    if own in by_export:
        keys = by_export[own]
    elif len(by_export) == 1:
        (keys,) = by_export.values()
    else:
        raise _StopError(
            f"the export names no manifest and {s3_url(bucket, root)} holds "
            f"{len(by_export)} exports: cannot tell its files (give each export its own "
            "--s3-prefix)"
        )
    return [ExportFile(key) for key in sorted(keys)]


def _resolved(s3: Any, bucket: str, key: str, prefix: str, policy: Any) -> str:
    """The key as the manifest wrote it; AWS's examples show keys without the export prefix,
    so when that key is missing and the prefixed one exists, the prefixed one."""
    if not prefix or key.startswith(prefix + "/"):
        return key
    from botocore.exceptions import ClientError

    try:
        policy.call(s3.head_object, Bucket=bucket, Key=key)
        return key
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
    return f"{prefix}/{key}"


def _get_text(s3: Any, bucket: str, key: str, prefix: str, policy: Any) -> str:
    """A manifest file (small: one line per data file)."""
    key = _resolved(s3, bucket, key, prefix, policy)
    # through S3Reader: a read that breaks resumes at the byte it reached (a retried
    # Body.read() would start from what the broken stream had left, losing the start)
    with S3Reader(s3, bucket, key, policy) as raw:
        return io.BufferedReader(raw).read().decode("utf-8")


def _items_of(
    s3: Any, bucket: str, file: ExportFile, ctx: Context
) -> Iterator[tuple[int, str | None]]:
    """``(count, lines)`` chunks of a gzipped data file, converted to the output format; a line
    that is not a DynamoDB item gives ``(line number, None)`` and ends the file.

    Streamed: one read buffer and one decompressed line at a time, whatever the file's size.
    """
    fmt: Format = ctx.args.format
    raw = S3Reader(s3, bucket, file.key, ctx.policy)
    chunk: list[str] = []
    with gzip.GzipFile(fileobj=raw, mode="rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = parse_item(line, "dynamodb")
            except ValueError:
                if chunk:
                    yield len(chunk), "".join(chunk)
                yield number, None
                return
            chunk.append(dump_item(item, fmt) + "\n")
            if len(chunk) >= _BATCH or ctx.stop.requested:
                yield len(chunk), "".join(chunk)
                chunk = []
    if chunk:
        yield len(chunk), "".join(chunk)


# -- reports --------------------------------------------------------------------------------------


def _stopped(ctx: Context, report: dict[str, Any], message: str, started: float) -> int:
    report.update(
        complete=False,
        exported=0,
        error={"type": "ExportError", "message": message},
        elapsed_s=round(time.monotonic() - started, 3),
    )
    return ctx.report(
        report,
        [f"resilient-aws export: error: {message}"],
        ok=False,
        stream=ctx.stderr,
        exit_code=STOPPED,
    )


def _detached(ctx: Context, report: dict[str, Any], table: str, arn: str, started: float) -> int:
    report.update(
        status="IN_PROGRESS",
        complete=False,
        exported=0,
        elapsed_s=round(time.monotonic() - started, 3),
    )
    text = [
        f"stopped following the export of {table}; it keeps running in DynamoDB ({arn})",
        f"follow it and read it with: resilient-aws export {table} --native --export-arn "
        f"{arn} > FILE",
    ]
    return ctx.report(report, text, ok=False, stream=ctx.stderr, exit_code=INTERRUPTED)


def _items(count: Any) -> str:
    return f"{count:,} items" if isinstance(count, int) else "the items"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")
