"""The ``resilient-aws`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from resilient_aws import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilient-aws",
        description="AWS SDK calls that survive production.",
    )
    parser.add_argument("--version", action="version", version=f"resilient-aws {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every retry")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="write and read items through the retry core against an embedded moto server, with faults injected",
    )
    demo.add_argument(
        "--items", type=int, default=3000, help="DynamoDB items to write (default 3000)"
    )
    demo.add_argument(
        "--messages", type=int, default=200, help="SQS messages to send (default 200)"
    )
    demo.add_argument("--seed", type=int, default=1, help="seed of the fault injection")
    demo.add_argument(
        "--endpoint-url",
        help="use this endpoint (moto server, LocalStack) instead of starting an embedded moto server",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resilient-aws`` console script."""
    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("botocore").setLevel(logging.WARNING)
    if args.command == "demo":
        from resilient_aws.cli._demo import run_demo

        return run_demo(
            items=args.items,
            messages=args.messages,
            seed=args.seed,
            endpoint_url=args.endpoint_url,
        )
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
