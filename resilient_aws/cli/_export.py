"""``resilient-aws export TABLE``: every item as JSON lines on stdout, from a parallel scan."""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import INTERRUPTED, OK, UsageError, classify_error
from resilient_aws.cli._jsonl import Format, dump_item
from resilient_aws.dynamodb import parallel_scan
from resilient_aws.errors import UnknownTableError

__all__ = ["decode_resume", "encode_resume", "run_export"]


def run_export(ctx: Context) -> int:
    """Write every item of the table to stdout; the report goes to stderr.

    A run that stops early (Ctrl-C, an AWS error) reports a resume token: every page written
    before it is covered by the token, so ``--resume TOKEN >> out.jsonl`` completes the file
    with nothing skipped.
    """
    args = ctx.args
    if getattr(args, "native", False):
        from resilient_aws.cli._native_export import run_native_export

        return run_native_export(ctx)
    _refuse_native_options(args)
    table: str = args.table
    segments: int = args.segments
    fmt: Format = args.format
    positions: dict[int, str | None] = {}
    if args.resume:
        positions = decode_resume(args.resume, table, segments)
    client = ctx.client("dynamodb")
    total = _item_count(client, table, ctx)
    options: dict[str, Any] = {"policy": ctx.policy}
    if args.page_size:
        options["page_size"] = args.page_size
    if args.consistent_read:
        options["ConsistentRead"] = True
    read = parallel_scan(
        table,
        segments=segments,
        workers=args.workers,
        cursors=dict(positions),
        client=client,
        **options,
    )
    progress = ctx.progress(
        f"export {table}", total=None if args.resume else total, approximate=True
    )
    out = ctx.stdout
    exported = 0
    started = time.monotonic()
    stopped: BaseException | None = None
    interrupted = False
    try:
        for segment, page in read.pages():
            if page.items:
                out.write("".join(dump_item(item, fmt) + "\n" for item in page.items))
            # The page is out: a resume starts after it (None: the segment is finished).
            positions[segment] = page.cursor
            exported += len(page.items)
            progress.update(exported)
            if ctx.stop.requested:
                interrupted = True
                break
        out.flush()
    except KeyboardInterrupt:
        interrupted = True
    except BrokenPipeError:
        raise
    except Exception as error:  # an AWS error mid-scan: report how far it got, and resume
        stopped = error
    complete = not interrupted and stopped is None
    progress.finish()
    token = None if complete else encode_resume(table, segments, positions)
    report: dict[str, Any] = {
        "command": "export",
        "table": table,
        "segments": segments,
        "format": fmt,
        "exported": exported,
        "scanned": read.summary.scanned,
        "pages": read.summary.pages,
        "complete": complete,
        "resume": token,
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    text = [
        f"exported {exported:,} items from {table} ({_plural(segments, 'segment')}, "
        f"{_plural(read.summary.pages, 'page')})" + ("" if complete else "; stopped before the end")
    ]
    code = OK
    if stopped is not None:
        code, message = classify_error(stopped)
        report["error"] = {"type": type(stopped).__name__, "message": message}
        text.append(f"error: {message}")
    elif interrupted:
        code = INTERRUPTED
    if token is not None:
        text.append(f"resume with: {_resume_command(ctx, table, segments, fmt, token)} >> FILE")
    # stdout holds the items: the report goes to stderr.
    return ctx.report(report, text, ok=complete, stream=ctx.stderr, exit_code=code)


def _refuse_native_options(args: Any) -> None:
    for option, name in (
        ("--s3-bucket", "s3_bucket"),
        ("--s3-prefix", "s3_prefix"),
        ("--export-time", "export_time"),
        ("--export-arn", "export_arn"),
        ("--no-download", "no_download"),
    ):
        if getattr(args, name, None):
            raise UsageError(f"{option} goes with --native")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _resume_command(ctx: Context, table: str, segments: int, fmt: str, token: str) -> str:
    """The command that continues this export: the same endpoint, account and reads."""
    import shlex

    args = ctx.args
    words = ["resilient-aws", "export", table, "--segments", str(segments), "--format", fmt]
    for option, value in (
        ("--endpoint-url", getattr(args, "endpoint_url", None)),
        ("--region", getattr(args, "region", None)),
        ("--profile", getattr(args, "profile", None)),
        ("--page-size", getattr(args, "page_size", None)),
        ("--workers", getattr(args, "workers", None)),
    ):
        if value is not None:
            words += [option, str(value)]
    if getattr(args, "consistent_read", False):
        words.append("--consistent-read")
    return shlex.join([*words, "--resume", token])


def _item_count(client: Any, table: str, ctx: Context) -> int | None:
    """DynamoDB's ItemCount (refreshed about every six hours): a progress total, not a promise."""
    from botocore.exceptions import ClientError

    try:
        described = ctx.policy.call(client.describe_table, TableName=table)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise UnknownTableError(table) from None
        return None  # no dynamodb:DescribeTable permission: scan without a total
    count = described.get("Table", {}).get("ItemCount")
    return int(count) if isinstance(count, int) and count > 0 else None


def encode_resume(table: str, segments: int, positions: dict[int, str | None]) -> str:
    """A token naming, for each segment touched, where to resume (``null``: finished)."""
    body = {"t": table, "n": segments, "c": {str(s): c for s, c in sorted(positions.items())}}
    raw = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_resume(token: str, table: str, segments: int) -> dict[int, str | None]:
    """The segment positions of a token made by an export of the same table and segments."""
    try:
        raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode("ascii"))
        body = json.loads(raw)
        cursors = {int(s): c for s, c in body["c"].items()}
        same = body["t"] == table and body["n"] == segments
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise UsageError("--resume: not a token printed by resilient-aws export") from None
    if not same:
        raise UsageError(
            f"--resume: the token is for table {body['t']!r} with --segments {body['n']}"
        )
    if not all(0 <= s < segments and (c is None or isinstance(c, str)) for s, c in cursors.items()):
        raise UsageError("--resume: not a token printed by resilient-aws export")
    return cursors
