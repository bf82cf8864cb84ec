"""``resilient-aws load TABLE FILE``: JSON lines into DynamoDB through BatchWriter."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import INTERRUPTED, STOPPED, UsageError, stops_the_run
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
    if getattr(args, "native", False):
        from resilient_aws.cli._native_load import run_native_load

        return run_native_load(ctx)
    for option, name in (
        ("--s3-bucket", "s3_bucket"),
        ("--s3-prefix", "s3_prefix"),
        ("--key", "key"),
    ):
        if getattr(args, name, None):
            raise UsageError(f"{option} goes with --native")
    table: str = args.table
    fmt: Format = args.format
    started = time.monotonic()
    with ExitStack() as stack:
        source, total, rejects = open_input(stack, args)
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
        tally = _Tally(
            keys=schema.attributes,
            track_keys=getattr(args, "track_keys", DEFAULT_TRACK_KEYS),
        )
        with writer:
            try:
                _feed(ctx, source, writer, fmt, tally, progress)
            except KeyboardInterrupt:  # the second Ctrl-C: stop reading, still settle and report
                tally.interrupted = True
            # Leaving the block sends what is buffered, also after a stop request.
        result = writer.result
        stop = tally.stop or _first_stop(result.failed, 0)
        lines, blank, interrupted = tally.lines, tally.blank, tally.interrupted
        refused = [
            LineFailure(_line_of(f.entry), f.entry_id, f.code, f.message or (f.gave_up or ""))
            for f in result.failed
            if stop is None or f.code != stop.code
        ]
        # Lines that met the error that stopped the run are counted, not listed one by one.
        stopped_lines = len(result.failed) - len(refused)
        failures = sorted(tally.bad + refused, key=lambda f: f.line)
        if rejects is not None:
            raw_of = dict(tally.raw_bad)
            for failed in result.failed:
                if isinstance(failed.entry, _Line) and failed.entry.raw is not None:
                    raw_of[failed.entry.number] = failed.entry.raw
            for number in sorted(raw_of):  # in the order of the input
                rejects.write(_ended(raw_of[number]))
        failed_count = len(failures) + stopped_lines
        # A line whose key an earlier line of the file already had replaced that line: the
        # writer counts those within one batch, the rest were sent and overwritten.
        replaced = tally.repeated
        loaded = max(0, result.succeeded + result.deduplicated - tally.repeated)
        progress.update(
            result.succeeded + result.deduplicated + failed_count + len(tally.bad) + blank,
            failed=failed_count,
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
        "loaded": loaded,
        "replaced": replaced,
        "keys_untracked": tally.untracked,
        "failed": failed_count,
        "failures": [f.to_dict() for f in failures],
        "requests": result.requests,
        "resent": result.resent,
        "interrupted": interrupted,
        "elapsed_s": round(elapsed, 3),
    }
    text = [
        f"loaded {loaded:,} of {items:,} items from {lines:,} lines into {table}"
        + (f"; {failed_count:,} failed" if failed_count else "")
        + (f"; {replaced:,} replaced by a later line of the same key" if replaced else "")
        + f" ({result.requests:,} requests, {result.resent:,} items re-sent)"
    ]
    if tally.untracked:
        text.append(
            f"note: {tally.untracked:,} lines came after the first {tally.track_keys:,} distinct"
            " keys; a repeated key among them counts as loaded (raise --track-keys)"
        )
    code: int | None = INTERRUPTED if interrupted else None
    if stop is not None:
        message = f"{stop.code}: {stop.message}" if stop.message else stop.code
        report["error"] = {"type": stop.code, "message": message}
        report["stopped_lines"] = stopped_lines
        text.append(
            f"error: {message} — stopped at line {lines:,}; {stopped_lines:,} lines sent "
            "before it came back were refused the same way (not listed)"
        )
        code = STOPPED
    text += [str(f) for f in failures[:_SHOWN]]
    if len(failures) > _SHOWN:
        text.append(f"... and {len(failures) - _SHOWN:,} more (--json lists them all)")
    if args.rejects and failed_count:
        text.append(f"failed lines written to {args.rejects}, in the order of the input")
    if interrupted:
        text.append(
            f"interrupted after line {lines:,}: lines up to it were sent; the rest of the file "
            "was not read (loading again is safe: a put of the same item is idempotent)"
        )
    ok = not failed_count and not interrupted and stop is None
    return ctx.report(report, text, ok=ok, exit_code=code)


@dataclass(frozen=True)
class _Stop:
    code: str
    message: str


def _first_stop(failed: list[Any], start: int) -> _Stop | None:
    """The first failure from ``start`` on whose error every further request would meet."""
    for failure in failed[start:]:
        if stops_the_run(failure.code):
            return _Stop(str(failure.code), failure.message or "")
    return None


# Distinct keys remembered to count lines replaced by a later line of the same key: ~70 MB.
DEFAULT_TRACK_KEYS = 1_000_000


@dataclass
class _Tally:
    keys: tuple[str, ...] = ()
    lines: int = 0
    blank: int = 0
    interrupted: bool = False
    stop: _Stop | None = None
    repeated: int = 0
    bad: list[LineFailure] = field(default_factory=list)
    raw_bad: list[tuple[int, bytes]] = field(default_factory=list)
    # 64-bit digests of the keys put so far (a later line of the same key replaces the item),
    # at most track_keys of them (~70 bytes each): memory bounded by the option, not the file
    seen: set[int] = field(default_factory=set)
    track_keys: int = DEFAULT_TRACK_KEYS
    untracked: int = 0  # lines whose key was not remembered: the set was full

    def note_key(self, item: dict[str, Any]) -> None:
        digest = int.from_bytes(
            hashlib.blake2b(
                repr([_key_part(item.get(name)) for name in self.keys]).encode(), digest_size=8
            ).digest(),
            "big",
        )
        if digest in self.seen:
            self.repeated += 1
        elif len(self.seen) < self.track_keys:
            self.seen.add(digest)
        else:
            self.untracked += 1


def _key_part(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return ("N", str(value.normalize()))  # "1" and "1.0" are one key to DynamoDB
    if isinstance(value, int) and not isinstance(value, bool):
        return ("N", str(Decimal(value).normalize()))
    return (type(value).__name__, value if not hasattr(value, "value") else value.value)


def _feed(
    ctx: Context,
    source: Iterable[bytes],
    writer: BatchWriter,
    fmt: Format,
    tally: _Tally,
    progress: Progress,
) -> None:
    """Hand every line to the writer, until the end, a stop request or an error that every
    further request would meet too (access denied...)."""
    checked = 0
    keep_raw = bool(ctx.args.rejects)  # the raw line is kept only to write it to --rejects
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
            if keep_raw:
                tally.raw_bad.append((number, raw))
            continue
        result = writer.result
        failed_before = len(result.failed)
        writer.put(_Line(item, number, raw if keep_raw else None))
        if len(result.failed) == failed_before or not _rejected_here(result.failed, number):
            tally.note_key(item)  # refused before sending (an invalid item) replaces nothing
        if len(result.failed) > checked:
            tally.stop = _first_stop(result.failed, checked)
            checked = len(result.failed)
            if tally.stop is not None:
                return
        settled = result.succeeded + result.deduplicated + len(result.failed) + len(tally.bad)
        progress.update(settled + tally.blank, failed=len(result.failed) + len(tally.bad))


def _rejected_here(failed: list[Any], number: int) -> bool:
    return any(isinstance(f.entry, _Line) and f.entry.number == number for f in failed[-4:])


def _line_of(entry: Any) -> int:
    return entry.number if isinstance(entry, _Line) else 0


def _ended(raw: bytes) -> bytes:
    return raw if raw.endswith(b"\n") else raw + b"\n"


def open_input(stack: ExitStack, args: Any) -> tuple[Any, int | None, IO[bytes] | None]:
    """The input lines (a file or stdin), their count for the progress line (None for stdin),
    and the ``--rejects`` file if asked; closed with ``stack``."""
    source = stack.enter_context(_open(args.file))
    total = _count_lines(args.file)
    rejects = stack.enter_context(_create(args.rejects)) if args.rejects else None
    return source, total, rejects


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
