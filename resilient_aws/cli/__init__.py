"""The ``resilient-aws`` command line.

``resilient-aws demo`` shows the retry core at work against an embedded moto server;
``load`` and ``export`` move DynamoDB items in and out as JSON lines; ``redrive sqs``,
``redrive lambda``, ``redrive eventbridge`` and ``redrive stream-pointers`` drain dead-letter
queues with :mod:`resilient_aws.redrive`. Global options work as
in the AWS CLI (``--endpoint-url``, ``--region``, ``--profile``), ``--json`` writes a
machine-readable report, and the exit code says how the run went (see ``docs/cli.md``):
0 all succeeded, 1 some entries failed, 2 bad usage or input, 3 stopped by an AWS error,
130 interrupted, 141 stdout closed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resilient-aws`` console script; returns the exit code."""
    from resilient_aws.cli._parser import build_parser

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error argparse already printed
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        # botocore's debug log prints request headers, signatures included: never.
        logging.getLogger("botocore").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    if args.command == "demo":
        from resilient_aws.cli._demo import run_demo

        return run_demo(
            items=args.items,
            messages=args.messages,
            orders=args.orders,
            seed=args.seed,
            endpoint_url=args.endpoint_url,
        )
    from resilient_aws.cli._run import run

    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
