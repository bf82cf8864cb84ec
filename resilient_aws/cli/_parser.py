"""The argument parser of ``resilient-aws``: global options like the AWS CLI's, then commands."""

from __future__ import annotations

import argparse
import datetime

from resilient_aws import __version__

__all__ = ["build_parser"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after the command name (as the AWS CLI does).

    Below the top level their default is SUPPRESS, so a value given before the command is not
    overwritten by the subcommand's default.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        default=default(None),
        help="send requests to this endpoint (moto server, LocalStack, a VPC endpoint)",
    )
    group.add_argument(
        "--region", default=default(None), help="AWS region (default: from the profile/env)"
    )
    group.add_argument("--profile", default=default(None), help="named profile from ~/.aws/config")
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="write the report as one JSON object (see docs/cli.md for its shape)",
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=default(False),
        help="no progress line nor summary line on stderr",
    )
    group.add_argument(
        "--max-attempts",
        type=positive_int,
        metavar="N",
        default=default(10),
        help="attempts per request and per entry before it is reported as failed (default 10)",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log every retry"
    )


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each command sets ``handler`` (``"module:function"``, imported lazily)."""
    parser = argparse.ArgumentParser(
        prog="resilient-aws",
        description="AWS SDK calls that survive production.",
        epilog="exit codes: 0 all succeeded, 1 some entries failed (each one reported), "
        "2 bad usage or input, 3 stopped by an AWS error, 130 interrupted, 141 stdout closed",
    )
    parser.add_argument("--version", action="version", version=f"resilient-aws {__version__}")
    _global_options(parser, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, top=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _demo(commands)
    _load(commands, common)
    _export(commands, common)
    _redrive(commands, common)
    _payloads(commands, common)
    return parser


def _demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="every capability against an embedded moto server with faults injected, counting that nothing is lost",
    )
    demo.add_argument(
        "--items", type=int, default=3000, help="DynamoDB items to write (default 3000)"
    )
    demo.add_argument(
        "--messages", type=int, default=200, help="SQS messages to send (default 200)"
    )
    demo.add_argument(
        "--orders",
        type=int,
        default=100,
        help="orders through @idempotent (each delivered 3 times) and the outbox (default 100)",
    )
    demo.add_argument("--seed", type=int, default=1, help="seed of the fault injection")
    demo.add_argument(
        "--endpoint-url",
        default=argparse.SUPPRESS,
        help="use this endpoint (moto server, LocalStack) instead of starting an embedded moto server",
    )
    # the demo's only global option; accepted after the command name too, as everywhere
    demo.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log every retry"
    )


def _formats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("plain", "dynamodb"),
        default="plain",
        help="plain: one JSON object per item, numbers exact (default); dynamodb: typed "
        'attribute values, one {"Item": {...}} per line as DynamoDB\'s S3 export writes them '
        "(keeps sets and binary)",
    )


def _load(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    load = commands.add_parser(
        "load",
        parents=[common],
        help="bulk load JSON lines into a DynamoDB table (BatchWriter); bad lines are reported",
        description="Put one item per line of FILE into TABLE with BatchWriteItem: unprocessed "
        "items are retried with backoff, a bad line is reported by its number and the other "
        "lines still load.",
    )
    load.add_argument("table", metavar="TABLE")
    load.add_argument("file", metavar="FILE", help="JSON lines file, or - for stdin")
    load.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="requests in flight (default 4)",
    )
    _formats(load)
    load.add_argument(
        "--rejects",
        metavar="PATH",
        help="write every line that failed here, as it was read, to fix and load again",
    )
    load.add_argument(
        "--track-keys",
        type=non_negative_int,
        default=1_000_000,
        metavar="N",
        help="distinct keys remembered to count lines replaced by a later line of the same "
        "key (default 1,000,000, about 70 MB; memory stays bounded by it)",
    )
    native = load.add_argument_group(
        "--native: DynamoDB's ImportTable (creates a NEW table from S3; see docs/cli.md)"
    )
    native.add_argument(
        "--native",
        action="store_true",
        help="upload FILE to S3 as gzipped DynamoDB JSON and create TABLE from it with "
        "ImportTable (TABLE must not exist; no write capacity used)",
    )
    _s3_options(native, "where FILE is uploaded")
    native.add_argument(
        "--key",
        type=key_schema,
        metavar="NAME:TYPE[,NAME:TYPE]",
        help="the new table's key: partition key, then sort key; TYPE is S, N or B "
        "(e.g. pk:S,sk:N); required with --native",
    )
    _poll_interval(native)
    load.set_defaults(handler="resilient_aws.cli._load:run_load")


def _export(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write every item of a DynamoDB table to stdout as JSON lines (parallel scan)",
        description="Scan TABLE in parallel segments and write one JSON object per item to "
        "stdout; the report goes to stderr. The output loads back with `resilient-aws load`.",
    )
    export.add_argument("table", metavar="TABLE")
    export.add_argument(
        "--segments",
        type=positive_int,
        default=4,
        help="TotalSegments of the parallel scan (default 4)",
    )
    export.add_argument(
        "--workers",
        type=positive_int,
        help="threads reading segments (default: min(segments, 8))",
    )
    export.add_argument("--page-size", type=positive_int, metavar="N", help="Limit per request")
    export.add_argument(
        "--consistent-read", action="store_true", help="strongly consistent reads (twice the cost)"
    )
    _formats(export)
    export.add_argument(
        "--resume",
        metavar="TOKEN",
        help="continue an interrupted export from the token it printed (append to the same file)",
    )
    native = export.add_argument_group(
        "--native: DynamoDB's ExportTableToPointInTime (to S3, then read back; see docs/cli.md)"
    )
    native.add_argument(
        "--native",
        action="store_true",
        help="let DynamoDB export the table to S3 (needs point-in-time recovery; no read "
        "capacity used), then write its items to stdout as above",
    )
    _s3_options(native, "where DynamoDB writes the export")
    native.add_argument(
        "--export-time",
        type=export_time,
        metavar="ISO8601",
        help="the point in time to export (default: now), e.g. 2024-05-01T12:00:00Z",
    )
    native.add_argument(
        "--export-arn",
        metavar="ARN",
        help="follow and read this export instead of starting one (after Ctrl-C, or one "
        "started elsewhere)",
    )
    native.add_argument(
        "--no-download",
        action="store_true",
        help="wait for the export, print where it is and its counts; write no items",
    )
    _poll_interval(native)
    # stdout holds the items: every report, an error's too, goes to stderr
    export.set_defaults(handler="resilient_aws.cli._export:run_export", data_on_stdout=True)


def _s3_options(group: argparse._ArgumentGroup, where: str) -> None:
    group.add_argument("--s3-bucket", metavar="BUCKET", help=f"the S3 bucket {where}")
    group.add_argument(
        "--s3-prefix", metavar="PREFIX", help=f"the key prefix {where} (default: the table name)"
    )


def _poll_interval(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--poll-interval",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds between status polls (default 10)",
    )


_KEY_TYPES = ("S", "N", "B")


def key_schema(text: str) -> tuple[tuple[str, str], ...]:
    """``pk:S`` or ``pk:S,sk:N``: the key attributes of a table to create, with their types."""
    parts = [part.strip() for part in text.split(",")]
    if not 1 <= len(parts) <= 2:
        raise argparse.ArgumentTypeError(
            "a partition key and at most one sort key: NAME:TYPE[,NAME:TYPE]"
        )
    keys: list[tuple[str, str]] = []
    for part in parts:
        name, colon, kind = part.rpartition(":")
        kind = kind.strip().upper()
        if not colon or not name or kind not in _KEY_TYPES:
            raise argparse.ArgumentTypeError(
                f"{part!r}: expected NAME:TYPE with TYPE one of {', '.join(_KEY_TYPES)}"
            )
        keys.append((name, kind))
    if len(keys) == 2 and keys[0][0] == keys[1][0]:
        raise argparse.ArgumentTypeError("the sort key must differ from the partition key")
    return tuple(keys)


def export_time(text: str) -> datetime.datetime:
    """An ISO 8601 time; without a UTC offset it is read as UTC."""
    try:
        value = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _redrive(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    redrive = commands.add_parser(
        "redrive",
        help="move dead-lettered messages back, deleting each only once its copy is delivered",
        description="Drain a dead-letter queue: receive in batches, deliver, and delete from "
        "the DLQ exactly the messages whose delivery was acknowledged.",
    )
    sources = redrive.add_subparsers(dest="source", required=True, metavar="SOURCE")
    _redrive_sqs(sources, common)
    _redrive_lambda(sources, common)
    _redrive_eventbridge(sources, common)
    _redrive_stream_pointers(sources, common)


def _drain_options(parser: argparse.ArgumentParser, *, visibility_timeout: int = 120) -> None:
    """Options every drain of a DLQ takes (the library's DrainOptions), with its defaults."""
    parser.add_argument(
        "--max",
        type=positive_int,
        metavar="N",
        help="receive at most N messages in this run (max_messages)",
    )
    parser.add_argument(
        "--rate", type=positive_float, metavar="R", help="at most R messages per second (rate)"
    )
    parser.add_argument(
        "--filter",
        metavar="JMESPATH",
        help="move only messages this JMESPath expression selects, over {messageId, body, "
        "attributes, messageAttributes} (body parsed when JSON); the others stay (skipped)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="receive and filter, move nothing: list what would move (dry_run)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=positive_int,
        default=visibility_timeout,
        metavar="S",
        help="seconds a received message stays invisible, extended while worked on "
        f"(default {visibility_timeout})",
    )
    parser.add_argument(
        "--wait-time",
        type=non_negative_int,
        default=1,
        metavar="S",
        help="ReceiveMessage long-poll seconds, 0..20 (default 1)",
    )
    parser.add_argument(
        "--run-id",
        metavar="ID",
        help="name the run (default random); a restart with the same id within 5 minutes "
        "lets a FIFO target drop what the first run delivered",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="receive workers, one batch in flight each (default 4)",
    )


def _redrive_sqs(
    sources: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    sqs = sources.add_parser(
        "sqs",
        parents=[common],
        help="SQS DLQ -> its source queue or any queue of the same type",
        description="Move the messages of an SQS dead-letter queue back to its source queue "
        "(found with ListDeadLetterSourceQueues) or to --to, keeping message attributes and "
        "FIFO group ids.",
    )
    _from(sqs, "the dead-letter queue's URL")
    sqs.add_argument(
        "--to",
        metavar="URL",
        help="the target queue (default: the DLQ's only source queue)",
    )
    _drain_options(sqs)
    sqs.add_argument(
        "--native",
        action="store_true",
        help="let SQS move the messages (StartMessageMoveTask; DLQs fed by SQS queues); "
        "--rate becomes its messages per second; no --filter, --max nor --dry-run",
    )
    sqs.add_argument(
        "--poll-interval",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="--native: seconds between ListMessageMoveTasks polls (default 5)",
    )
    sqs.add_argument(
        "--preserve-dedup-id",
        action="store_true",
        help="FIFO: resend with the original MessageDeduplicationId instead of a fresh one per run",
    )
    sqs.set_defaults(handler="resilient_aws.cli._redrive:run_redrive_sqs")


def _from(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--from", dest="source_url", required=True, metavar="URL", help=f"{help} (source_queue_url)"
    )


def _redrive_lambda(
    sources: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = sources.add_parser(
        "lambda",
        parents=[common],
        help="failed asynchronous Lambda invocations -> the function again, or a queue",
        description="Re-invoke asynchronously, with its original payload, each failed "
        "invocation in an on-failure destination queue or a Lambda DLQ (or send the payload "
        "to --to). A message is deleted once Lambda accepted the invocation.",
    )
    _from(parser, "the queue holding on-failure records or Lambda DLQ messages")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--function",
        dest="function_name",
        metavar="NAME",
        help="invoke this function (name or ARN; default: the one each record names; "
        "required for Lambda DLQ messages, which do not say) (function_name)",
    )
    target.add_argument(
        "--to",
        metavar="URL",
        help="send each original payload to this queue instead (target_queue_url)",
    )
    _drain_options(parser)
    parser.set_defaults(handler="resilient_aws.cli._redrive:run_redrive_lambda")


def _redrive_eventbridge(
    sources: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = sources.add_parser(
        "eventbridge",
        parents=[common],
        help="EventBridge rule target DLQ -> PutEvents on the event bus",
        description="Put the events of an EventBridge target dead-letter queue back on their "
        "event bus (from each message's RULE_ARN, or --bus). A message is deleted once its "
        "event was accepted.",
    )
    _from(parser, "the rule target's dead-letter queue")
    parser.add_argument(
        "--bus",
        dest="bus_name",
        metavar="NAME",
        help="put every event on this bus (name or ARN; default: the bus of each message's "
        "rule) (bus_name)",
    )
    parser.add_argument(
        "--new-time",
        dest="keep_time",
        action="store_false",
        help="let EventBridge stamp the events now instead of keeping their original time "
        "(keep_time=False)",
    )
    _drain_options(parser)
    parser.set_defaults(handler="resilient_aws.cli._redrive:run_redrive_eventbridge")


def _redrive_stream_pointers(
    sources: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = sources.add_parser(
        "stream-pointers",
        parents=[common],
        help="DynamoDB Streams / Kinesis on-failure pointers -> the records, read from the "
        "stream before they expire",
        description="Resolve each on-failure record of a DynamoDB Streams or Kinesis event "
        "source mapping (DDBStreamBatchInfo / KinesisBatchInfo) into the stream records it "
        "points at, and deliver them to a queue or a function. Pointers whose records the "
        "stream no longer holds are reported as expired.",
    )
    _from(parser, "the event source mapping's on-failure queue")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--to",
        metavar="URL",
        help="one message per record, as JSON in Lambda's shape (target_queue_url)",
    )
    target.add_argument(
        "--function",
        dest="function_name",
        metavar="NAME",
        help='invoke this function with {"Records": [...]} as the mapping would '
        "(default: the function each record names) (function_name)",
    )
    parser.add_argument(
        "--delete-expired",
        action="store_true",
        help="delete pointers whose records have expired instead of leaving them (delete_expired)",
    )
    parser.add_argument(
        "--invoke-identity-arn",
        default="",
        metavar="ARN",
        help="the invokeIdentityArn of rebuilt Kinesis records (the mapping's role) "
        "(invoke_identity_arn)",
    )
    _drain_options(parser, visibility_timeout=300)
    parser.set_defaults(handler="resilient_aws.cli._redrive:run_redrive_stream_pointers")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``15d``, ``36h``, ``90m``, ``3600s``: a positive duration, in seconds."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in _DURATION_UNITS:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (a number and a unit: 15d, 36h, 90m, 3600s)"
        )
    try:
        seconds = float(value) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a duration > 0, got {text!r}")
    return seconds


def _payloads(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    payloads = commands.add_parser(
        "payloads",
        help="claim-check objects in S3 (resilient_aws.payloads)",
        description="Work on the S3 objects that large messages were offloaded to.",
    )
    # "source" as redrive's: the run reports itself as "payloads sweep"
    actions = payloads.add_subparsers(dest="source", required=True, metavar="ACTION")
    sweep = actions.add_parser(
        "sweep",
        parents=[common],
        help="delete the objects older than a retention after which no message points at them",
        description="List BUCKET under PREFIX page by page and delete, with DeleteObjects "
        "(keys S3 fails to delete are retried one by one), each object last modified more than "
        "--older-than ago. Choose it beyond the longest any message may still point at an "
        "object: SQS keeps a message 14 days at most (see docs/payloads.md).",
    )
    sweep.add_argument("--bucket", required=True, metavar="BUCKET", help="the payloads' bucket")
    sweep.add_argument(
        "--prefix",
        default="",
        metavar="PREFIX",
        help="only the keys under this prefix (PayloadConfig.prefix; default: the whole bucket)",
    )
    sweep.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="AGE",
        help="delete what was last modified more than AGE ago: 15d, 36h, 86400s; at least 1d",
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="list and count, delete nothing (dry_run)"
    )
    sweep.add_argument(
        "--page-size",
        type=positive_int,
        default=1000,
        metavar="N",
        help="keys per ListObjectsV2 page and DeleteObjects request, 1..1000 (default 1000)",
    )
    sweep.set_defaults(handler="resilient_aws.cli._payloads:run_payloads_sweep")
