"""``resilient-aws payloads sweep``: a thin wrapper over :func:`resilient_aws.payloads.sweep_payloads`.

Each option maps to one parameter; this module adds the progress line, Ctrl-C that stops after
the page in hand, the report and the exit code.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import FAILED, INTERRUPTED, OK, STOPPED

__all__ = ["run_payloads_sweep"]

_SHOWN = 20


class _Stopped(Exception):  # noqa: N818 - a request, not an error
    """Raised from the progress callback after Ctrl-C: the sweep stops after its page."""


def _done(error: BaseException) -> Any:
    """What the sweep that ``error`` ended did (``sweep_result``), or None when it ended
    before its first page was listed."""
    result = getattr(error, "sweep_result", None)
    return result if result is not None and result.pages else None


def run_payloads_sweep(ctx: Context) -> int:
    """``payloads sweep --bucket B [--prefix P] --older-than AGE [--dry-run]``."""
    from resilient_aws.payloads import PayloadConfig, PayloadError, PayloadStore, sweep_payloads

    args = ctx.args
    store = PayloadStore(
        PayloadConfig(bucket=args.bucket, prefix=args.prefix),
        client=ctx.client("s3"),
        policy=ctx.policy,
    )
    progress = ctx.progress("payloads sweep", unit="objects")

    def on_page(result: Any) -> None:
        progress.update(result.listed, failed=result.failed)
        if ctx.stop.requested:
            raise _Stopped

    started = time.monotonic()
    interrupted = False
    ended: str | None = None
    result: Any = None
    try:
        result = sweep_payloads(
            store,
            older_than_s=args.older_than,
            dry_run=args.dry_run,
            page_size=args.page_size,
            progress=on_page,
        )
    except (_Stopped, KeyboardInterrupt) as error:
        interrupted = True
        result = _done(error)
    except PayloadError as error:
        # a listing error after some pages: report what they did (exit 3), not only the error
        result = _done(error)
        if result is None:
            raise
        result.stopped = error.code or type(error).__name__
        ended = str(error)
    progress.finish()
    elapsed = round(time.monotonic() - started, 3)
    where = f"s3://{args.bucket}/{args.prefix}"
    if result is None:
        return ctx.report(
            {
                "command": "payloads sweep",
                "bucket": args.bucket,
                "prefix": args.prefix,
                "interrupted": True,
            },
            [f"payloads sweep: interrupted before the first page of {where} was swept"],
            ok=False,
            exit_code=INTERRUPTED,
        )
    if interrupted:
        code = INTERRUPTED
    elif result.stopped is not None:
        code = STOPPED
    elif result.failed:
        code = FAILED
    else:
        code = OK
    cutoff = datetime.datetime.fromtimestamp(result.cutoff, datetime.timezone.utc)
    data = {
        "command": "payloads sweep",
        **result.to_dict(),
        "cutoff": cutoff.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "older_than_s": args.older_than,
        "interrupted": interrupted,
        "elapsed_s": elapsed,
    }
    data.pop("ok")  # the command's ok (exit code 0) is set by ctx.report
    text = [str(result), f"old: last modified before {data['cutoff']}"]
    for key, reason in list(result.failures.items())[:_SHOWN]:
        text.append(f"{key}: failed: {reason}")
    if result.failed > _SHOWN:
        shown = min(result.failed, len(result.failures))
        text.append(f"... {result.failed:,} failed in all (--json lists the first {shown:,})")
    if interrupted:
        text.append("interrupted: every key listed so far is counted; run again to go on")
    if ended is not None:
        text.append(f"stopped: {ended}")
    return ctx.report(data, text, ok=code == OK, exit_code=code)
