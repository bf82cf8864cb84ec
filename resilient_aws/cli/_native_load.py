"""``resilient-aws load TABLE FILE --native``: a new table from FILE with DynamoDB's ImportTable.

The lines are converted to DynamoDB JSON (``{"Item": {...}}`` per line), gzipped and uploaded
to S3 as one object, streamed: memory is one upload part, whatever the file's size. Then
``ImportTable`` creates TABLE from that object — DynamoDB writes the items itself, without
consuming write capacity — and ``DescribeImport`` is followed to the end.

ImportTable creates a table; it cannot load into an existing one, so an existing TABLE is bad
usage (exit 2) before anything is uploaded.
"""

from __future__ import annotations

import gzip
import re
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import INTERRUPTED, STOPPED, UsageError
from resilient_aws.cli._jsonl import Format, dump_item, parse_item
from resilient_aws.cli._load import LineFailure, _ended, open_input
from resilient_aws.cli._native import (
    DetachedError,
    S3Upload,
    WaitProgress,
    error_code,
    follow,
    s3_url,
)
from resilient_aws.cli._progress import Progress
from resilient_aws.limits import DYNAMODB_ITEM_BYTES

__all__ = ["key_problem", "run_native_load"]

_SHOWN = 20
_TABLE_NAME = re.compile(r"[a-zA-Z0-9_.\-]{3,255}")
# DynamoDB's limits on what one item holds: an item DynamoDB refuses may make ImportTable skip
# the rest of the object it is in, so they are bad lines here, before the upload.
_KEY_BYTES = (2048, 1024)  # partition key, sort key
_RUNNING = frozenset({"IN_PROGRESS", "CANCELLING"})


@dataclass
class _Converted:
    lines: int = 0
    blank: int = 0
    items: int = 0
    interrupted: bool = False
    bad: list[LineFailure] = field(default_factory=list)
    raw_bad: list[tuple[int, bytes]] = field(default_factory=list)


def run_native_load(ctx: Context) -> int:
    """Upload FILE as DynamoDB JSON, create TABLE from it with ImportTable, and report."""
    args = ctx.args
    table: str = args.table
    if not args.s3_bucket:
        raise UsageError("--native needs --s3-bucket: ImportTable reads from S3")
    if not args.key:
        raise UsageError(
            "--native needs --key NAME:TYPE[,NAME:TYPE]: the key of the table ImportTable creates"
        )
    if args.concurrency != 4:
        raise UsageError("--concurrency is for the BatchWriter load, not with --native")
    if not _TABLE_NAME.fullmatch(table):
        raise UsageError(
            f"{table!r} is not a table name ImportTable can create: 3 to 255 characters "
            "among a-z A-Z 0-9 _ - ."
        )
    keys: tuple[tuple[str, str], ...] = args.key
    bucket: str = args.s3_bucket
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    object_key = (
        f"{(args.s3_prefix or table).strip('/')}/{table}-{stamp}-{uuid.uuid4().hex[:8]}.json.gz"
    )
    started = time.monotonic()
    with ExitStack() as stack:
        source, total, rejects = open_input(stack, args)
        client = ctx.client("dynamodb")
        _refuse_existing(ctx, client, table)
        upload = S3Upload(ctx.client("s3"), bucket, object_key, ctx.policy)
        progress = ctx.progress(f"upload {table}", total=total, unit="lines")
        converted = _Converted()
        try:
            # mtime=0: the same file gives the same bytes, whenever it is uploaded
            with gzip.GzipFile(fileobj=upload, mode="wb", mtime=0) as packed:
                _convert(ctx, source, packed, keys, converted, progress)
            if converted.interrupted or not converted.items:
                upload.abort()
            else:
                upload.close()
        except BaseException:
            upload.abort()
            raise
        progress.update(converted.lines, failed=len(converted.bad))
        progress.finish()
        if rejects is not None:
            for _, raw in converted.raw_bad:
                rejects.write(_ended(raw))
    report: dict[str, Any] = {
        "command": "load",
        "table": table,
        "file": args.file,
        "format": args.format,
        "native": True,
        "lines": converted.lines,
        "blank": converted.blank,
        "items": converted.items + len(converted.bad),
        "uploaded": converted.items,
        "failed": len(converted.bad),
        "failures": [f.to_dict() for f in converted.bad],
        "s3_bucket": bucket,
        "s3_key": object_key,
        "uploaded_bytes": upload.size,
        "interrupted": converted.interrupted,
    }
    text = _failure_lines(converted.bad, args.rejects)
    if converted.interrupted:
        report.update(loaded=0, elapsed_s=round(time.monotonic() - started, 3))
        text.insert(
            0,
            f"interrupted after line {converted.lines:,} of {args.file}: nothing uploaded, "
            f"no table created",
        )
        return ctx.report(report, text, ok=False, exit_code=INTERRUPTED)
    if not converted.items:
        report.update(loaded=0, elapsed_s=round(time.monotonic() - started, 3))
        text.insert(0, f"no item to import in {args.file}: no table created")
        return ctx.report(report, text, ok=not converted.bad)
    return _import(ctx, report, text, keys, started)


def _refuse_existing(ctx: Context, client: Any, table: str) -> None:
    from botocore.exceptions import ClientError

    try:
        ctx.policy.call(client.describe_table, TableName=table)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return
        raise
    raise UsageError(_EXISTS.format(table=table))


_EXISTS = (
    "table {table!r} exists: ImportTable creates a new table and cannot load into an existing "
    "one (load without --native writes into it)"
)


def _convert(
    ctx: Context,
    source: Any,
    packed: gzip.GzipFile,
    keys: tuple[tuple[str, str], ...],
    converted: _Converted,
    progress: Progress,
) -> None:
    """Every good line into ``packed`` as DynamoDB JSON; bad ones reported by number."""
    fmt: Format = ctx.args.format
    keep_raw = bool(ctx.args.rejects)
    try:
        for number, raw in enumerate(source, 1):
            if ctx.stop.requested:
                converted.interrupted = True
                return
            converted.lines = number
            if not raw.strip():
                converted.blank += 1
                continue
            failure: LineFailure | None = None
            try:
                item = parse_item(raw, fmt)
            except ValueError as error:
                failure = LineFailure(number, None, "InvalidLine", str(error))
            else:
                problem = key_problem(item, keys)
                if problem is not None:
                    failure = LineFailure(number, None, "InvalidKeyError", problem)
                else:
                    try:
                        line = dump_item(item, "dynamodb").encode("utf-8") + b"\n"
                        failure = _too_large(number, item, len(line))
                    except (ValueError, TypeError) as error:
                        failure = LineFailure(number, None, type(error).__name__, str(error))
            if failure is not None:
                converted.bad.append(failure)
                if keep_raw:
                    converted.raw_bad.append((number, raw))
            else:
                packed.write(line)
                converted.items += 1
            progress.update(number, failed=len(converted.bad))
    except KeyboardInterrupt:  # the second Ctrl-C
        converted.interrupted = True


def _too_large(number: int, item: dict[str, Any], line_bytes: int) -> LineFailure | None:
    """The failure of an item over DynamoDB's 400 KB, ``None`` for one that fits.

    An item's DynamoDB JSON line (UTF-8) is never shorter than its DynamoDB size (every name
    and value is in it, with quotes, type tags, base64 for binary), so only a long line is
    measured.
    """
    if line_bytes <= DYNAMODB_ITEM_BYTES:
        return None
    from resilient_aws.dynamodb import item_size, serialize_item

    size = item_size(serialize_item(item))
    if size <= DYNAMODB_ITEM_BYTES:
        return None
    return LineFailure(
        number,
        None,
        "EntryTooLargeError",
        f"the item is {size:,} bytes, over DynamoDB's {DYNAMODB_ITEM_BYTES:,}",
    )


def key_problem(item: dict[str, Any], keys: tuple[tuple[str, str], ...]) -> str | None:
    """Why ``item`` cannot be stored under ``keys`` (a missing, empty or mistyped key
    attribute), naming the attribute, never its value; ``None`` when it can."""
    from boto3.dynamodb.types import Binary

    from resilient_aws.dynamodb._serialize import raw_bytes

    for name, kind in keys:
        if name not in item or item[name] is None:
            return f"key attribute {name!r} is missing"
        value = item[name]
        if kind == "S":
            fits = isinstance(value, str)
        elif kind == "N":
            fits = isinstance(value, (int, Decimal)) and not isinstance(value, bool)
        else:
            fits = isinstance(value, (bytes, bytearray, Binary))
        if not fits:
            return f"key attribute {name!r} is not of type {kind}"
        size = len(raw_bytes(value)) if kind == "B" else len(value) if kind == "S" else 1
        if size == 0:
            return f"key attribute {name!r} is empty"
        limit = _KEY_BYTES[0 if name == keys[0][0] else 1]
        if kind == "S":
            size = len(value.encode("utf-8"))
        if size > limit:
            role = "partition" if name == keys[0][0] else "sort"
            return f"key attribute {name!r} is {size:,} bytes, over the {role} key's {limit:,}"
    return None


def _import(
    ctx: Context,
    report: dict[str, Any],
    text: list[str],
    keys: tuple[tuple[str, str], ...],
    started: float,
) -> int:
    from botocore.exceptions import ClientError

    args = ctx.args
    table: str = args.table
    client = ctx.client("dynamodb")
    schema = [{"AttributeName": keys[0][0], "KeyType": "HASH"}]
    if len(keys) == 2:
        schema.append({"AttributeName": keys[1][0], "KeyType": "RANGE"})
    try:
        answer = ctx.policy.call(
            client.import_table,
            # one token per run: a request retried after a lost response starts no second import
            ClientToken=uuid.uuid4().hex,
            S3BucketSource={"S3Bucket": report["s3_bucket"], "S3KeyPrefix": report["s3_key"]},
            InputFormat="DYNAMODB_JSON",
            InputCompressionType="GZIP",
            TableCreationParameters={
                "TableName": table,
                "AttributeDefinitions": [
                    {"AttributeName": name, "AttributeType": kind} for name, kind in keys
                ],
                "KeySchema": schema,
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
    except ClientError as error:
        if error_code(error) == "ResourceInUseException":  # created since we looked
            location = s3_url(report["s3_bucket"], report["s3_key"])
            raise UsageError(
                _EXISTS.format(table=table) + f"; the upload stays at {location}"
            ) from None
        raise
    arn = str(answer["ImportTableDescription"]["ImportArn"])
    report["import_arn"] = arn
    waiting = WaitProgress(ctx, f"load {table}")

    def show(state: dict[str, Any]) -> None:
        waiting.show(
            f"DynamoDB import {state.get('ImportStatus')}",
            f"{_count(state, 'ProcessedItemCount'):,} items processed, "
            f"{_count(state, 'ErrorCount'):,} errors",
            _count(state, "ProcessedItemCount"),
        )

    try:
        state = follow(
            ctx,
            lambda: dict(
                ctx.policy.call(client.describe_import, ImportArn=arn)["ImportTableDescription"]
            ),
            finished=lambda state: state.get("ImportStatus") not in _RUNNING,
            interval=args.poll_interval,
            on_poll=show,
        )
    except (DetachedError, KeyboardInterrupt):
        waiting.finish()
        report.update(status="IN_PROGRESS", elapsed_s=round(time.monotonic() - started, 3))
        text[:0] = [
            f"stopped following the import into {table}; it keeps running in DynamoDB ({arn})",
            f"follow it with: aws dynamodb describe-import --import-arn {arn}",
        ]
        return ctx.report(report, text, ok=False, exit_code=INTERRUPTED)
    waiting.finish()
    status = str(state.get("ImportStatus"))
    imported = _count(state, "ImportedItemCount")
    errors = _count(state, "ErrorCount")
    log_group = state.get("CloudWatchLogGroupArn")
    uploaded = int(report["uploaded"])
    # every uploaded item is imported or counted as an error; the rest DynamoDB dropped without
    # a word: items that share a key (one is kept, the others are not errors) or the rest of an
    # object after an item it could not read ("Import format quotas and validation")
    unaccounted = max(uploaded - imported - errors, 0) if status == "COMPLETED" else 0
    report.update(
        status=status,
        loaded=imported,
        processed=_count(state, "ProcessedItemCount"),
        import_errors=errors,
        unaccounted=unaccounted,
        log_group=log_group,
        elapsed_s=round(time.monotonic() - started, 3),
    )
    location = s3_url(report["s3_bucket"], report["s3_key"])
    summary = (
        f"imported {imported:,} of {report['items']:,} items from {report['lines']:,} lines "
        f"into the new table {table} (DynamoDB import {status}, from {location})"
    )
    if report["failed"]:
        summary += f"; {report['failed']:,} lines failed before the upload"
    problems: list[str] = []
    code: int | None = None
    if status != "COMPLETED":
        # whatever the item errors, the import itself failed: its failure is the news (exit 3)
        failure = ": ".join(
            str(part) for part in (state.get("FailureCode"), state.get("FailureMessage")) if part
        )
        message = f"the DynamoDB import into {table!r} ended {status}" + (
            f": {failure}" if failure else ""
        )
        report["error"] = {"type": "ImportError", "message": message}
        problems.append(f"error: {message}")
        code = STOPPED
    if errors:
        where = f"CloudWatch Logs {log_group}" if log_group else "the import's CloudWatch logs"
        problems.append(f"error: DynamoDB could not import {errors:,} items: see {where}")
    if unaccounted:
        message = (
            f"{unaccounted:,} of the {uploaded:,} uploaded items were neither imported nor "
            "counted as errors (DynamoDB keeps one of the items that share a key, and may skip "
            "the rest of an object after an item it cannot read)"
        )
        report.setdefault("error", {"type": "ImportIncomplete", "message": message})
        problems.append(f"error: {message}")
    text[:0] = [summary, *problems]
    ok = status == "COMPLETED" and not errors and not unaccounted and not report["failed"]
    return ctx.report(report, text, ok=ok, exit_code=code)


def _count(state: dict[str, Any], name: str) -> int:
    value = state.get(name)
    return int(value) if isinstance(value, int) else 0


def _failure_lines(failures: list[LineFailure], rejects: str | None) -> list[str]:
    text = [str(f) for f in failures[:_SHOWN]]
    if len(failures) > _SHOWN:
        text.append(f"... and {len(failures) - _SHOWN:,} more (--json lists them all)")
    if rejects and failures:
        text.append(f"failed lines written to {rejects}, in the order of the input")
    return text
