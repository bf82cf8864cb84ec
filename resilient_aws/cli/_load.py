"""``resilient-aws load TABLE FILE``: JSON lines into DynamoDB through BatchWriter."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import INTERRUPTED, UsageError
from resilient_aws.cli._jsonl import Format, parse_item
from resilient_aws.cli._progress import Progress
from resilient_aws.dynamodb import BatchWriter, describe_key_schema

__all__ = ["LineFailure", "run_load"]

_SHOWN = 20


class _Line(dict):  # type: ignore[type-arg]
    """An item that remembers its line: a failure reported by the writer names the line."""

    __slots__ = ("number", "raw")

    def __init__(self, item: dict[str, Any], number: int, raw: bytes | None) -> None:
        super().__init__(item)
        self.number = number
        self.raw = raw


@dataclass(frozen=True)
class LineFailure:
    """A line that was not loaded: its number, the item's key if it had one, and why."""

    line: int
    id: str | None
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "code": self.code, "message": self.message}

    def __str__(self) -> str:
        name = f" {self.id}" if self.id else ""
        return f"line {self.line}{name}: {self.code}: {self.message}"


def run_load(ctx: Context) -> int:
    """Put every line of the file into the table; report each line that failed by number."""
    args = ctx.args
    table: str = args.table
    fmt: Format = args.format
    started = time.monotonic()
    with ExitStack() as stack:
        source = stack.enter_context(_open(args.file))
        total = _count_lines(args.file)
        rejects: IO[bytes] | None = None
        if args.rejects:
            rejects = stack.enter_context(_create(args.rejects))
        client = ctx.client("dynamodb")
        # The table's key schema first: an unknown table is bad input before a line is read.
        schema = describe_key_schema(client, table, ctx.policy)
        writer = BatchWriter(
            table,
            client=client,
            policy=ctx.policy,
            concurrency=args.concurrency,
            keys=schema,
            raise_on_failure=False,
            on_invalid="report",  # a bad item is a failed line, not the end of the run
        )
        progress = ctx.progress(f"load {table}", total=total, unit="lines")
        tally = _Tally()
        with writer:
            try:
                _feed(ctx, source, writer, fmt, tally, rejects, progress)
            except KeyboardInterrupt:  # the second Ctrl-C: stop reading, still settle and report
                tally.interrupted = True
            # Leaving the block sends what is buffered, also after a stop request.
        result = writer.result
        lines, blank, interrupted = tally.lines, tally.blank, tally.interrupted
        failures = tally.bad + [
            LineFailure(_line_of(f.entry), f.entry_id, f.code, f.message or (f.gave_up or ""))
            for f in result.failed
        ]
        failures.sort(key=lambda f: f.line)
        if rejects is not None:
            for failed in result.failed:
                if isinstance(failed.entry, _Line) and failed.entry.raw is not None:
                    rejects.write(_ended(failed.entry.raw))
        progress.update(
            result.succeeded + result.deduplicated + len(failures) + blank, failed=len(failures)
        )
        progress.finish()
    elapsed = time.monotonic() - started
    items = lines - blank
    report: dict[str, Any] = {
        "command": "load",
        "table": table,
        "file": args.file,
        "format": fmt,
        "lines": lines,
        "blank": blank,
        "items": items,
        "loaded": result.succeeded,
        "replaced": result.deduplicated,
        "failed": len(failures),
        "failures": [f.to_dict() for f in failures],
        "requests": result.requests,
        "resent": result.resent,
        "interrupted": interrupted,
        "elapsed_s": round(elapsed, 3),
    }
    text = [
        f"loaded {result.succeeded:,} of {items:,} items from {lines:,} lines into {table}"
        + (f"; {len(failures):,} failed" if failures else "")
        + (
            f"; {result.deduplicated:,} replaced by a later line of the same key"
            if result.deduplicated
            else ""
        )
        + f" ({result.requests:,} requests, {result.resent:,} items re-sent)"
    ]
    text += [str(f) for f in failures[:_SHOWN]]
    if len(failures) > _SHOWN:
        text.append(f"... and {len(failures) - _SHOWN:,} more (--json lists them all)")
    if args.rejects and failures:
        text.append(f"failed lines written to {args.rejects}")
    if interrupted:
        text.append(
            f"interrupted after line {lines:,}: lines up to it were sent; the rest of the file "
            "was not read (loading again is safe: a put of the same item is idempotent)"
        )
    ok = not failures and not interrupted
    return ctx.report(report, text, ok=ok, exit_code=INTERRUPTED if interrupted else None)


@dataclass
class _Tally:
    lines: int = 0
    blank: int = 0
    interrupted: bool = False
    bad: list[LineFailure] = field(default_factory=list)


def _feed(
    ctx: Context,
    source: Iterable[bytes],
    writer: BatchWriter,
    fmt: Format,
    tally: _Tally,
    rejects: IO[bytes] | None,
    progress: Progress,
) -> None:
    """Hand every line to the writer, until the end or a stop request."""
    for number, raw in enumerate(source, 1):
        if ctx.stop.requested:
            tally.interrupted = True
            return
        tally.lines = number
        if not raw.strip():
            tally.blank += 1
            continue
        try:
            item = parse_item(raw, fmt)
        except ValueError as error:
            tally.bad.append(LineFailure(number, None, "InvalidLine", str(error)))
            if rejects is not None:
                rejects.write(_ended(raw))
            continue
        writer.put(_Line(item, number, raw if rejects is not None else None))
        result = writer.result
        settled = result.succeeded + result.deduplicated + len(result.failed) + len(tally.bad)
        progress.update(settled + tally.blank, failed=len(result.failed) + len(tally.bad))


def _line_of(entry: Any) -> int:
    return entry.number if isinstance(entry, _Line) else 0


def _ended(raw: bytes) -> bytes:
    return raw if raw.endswith(b"\n") else raw + b"\n"


def _open(path: str) -> Any:
    if path == "-":
        return _Borrowed(sys.stdin.buffer)
    try:
        return open(path, "rb")
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None


def _create(path: str) -> IO[bytes]:
    try:
        return open(path, "wb")
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None


class _Borrowed:
    """stdin for the ``with`` statement: iterated, never closed (it is not ours)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def __enter__(self) -> Iterator[bytes]:
        return iter(self.stream)

    def __exit__(self, *exc_info: object) -> None:
        return None


def _count_lines(path: str) -> int | None:
    """Lines in a regular file (fast: newlines in 1 MiB blocks), for the progress total."""
    if path == "-":
        return None
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        count = 0
        last = b"\n"
        with open(path, "rb") as counted:
            while block := counted.read(1 << 20):
                count += block.count(b"\n")
                last = block[-1:]
        return count + (0 if last == b"\n" else 1)
    except OSError:
        return None
