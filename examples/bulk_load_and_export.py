"""A batch script: bulk load a table from JSON lines, export it back with a parallel scan.

::

    python examples/bulk_load_and_export.py load orders orders.jsonl --concurrency 8
    python examples/bulk_load_and_export.py export orders orders-copy.jsonl --segments 8

* ``load``: ``BatchWriter`` — 25 items per request, up to ``--concurrency`` requests in flight,
  ``UnprocessedItems`` and throttles retried with backoff. A line that can never be written (not
  JSON, no key, over 400 KB) is reported by line number and the rest is loaded; numbers are read
  as ``Decimal`` from their text, so ``19.99`` stays ``19.99``. The exit status is 1 if anything
  was not written.
* ``export``: ``parallel_scan`` — ``--segments`` segments read on as many threads, every page of
  every segment, numbers written digit for digit.

From a shell, ``resilient-aws load`` and ``resilient-aws export`` do the same with progress and
resume. Without arguments the script runs against moto in process
(``pip install 'resilient-aws[test]'``): it generates a file of orders (with two bad lines),
loads it while ``chaos`` throttles and withholds entries, exports the table and checks that
every item round-trips::

    python examples/bulk_load_and_export.py
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from resilient_aws.dynamodb import BatchWriter, parallel_scan
from resilient_aws.errors import EntryValidationError, ResilientAWSError
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=10, base_delay=0.05, max_delay=5.0)


def load(
    table: str, path: Path, *, client: Any, concurrency: int = 4, policy: RetryPolicy = POLICY
) -> tuple[int, list[str]]:
    """Write every item of a JSON-lines file; return (items written, what was not written)."""
    problems: list[str] = []
    with BatchWriter(
        table, client=client, policy=policy, concurrency=concurrency, raise_on_failure=False
    ) as writer:
        for number, item in _read_lines(path, problems):
            try:
                writer.put(item)
            except EntryValidationError as invalid:  # refused before sending; the rest goes on
                problems.append(f"line {number}: {invalid}")
    result = writer.result
    # What failed after it was sent (retries exhausted) is named by key, never by content.
    problems += [f"{f.entry_id}: {f.code} {f.message}" for f in result.failed]
    print(f"load {table}: {result}", file=sys.stderr)
    return result.succeeded, problems


def export(
    table: str, path: Path, *, client: Any, segments: int = 4, policy: RetryPolicy = POLICY
) -> int:
    """Write every item of ``table`` to a JSON-lines file; return the number of items."""
    scan = parallel_scan(table, segments=segments, client=client, policy=policy)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for item in scan:  # items arrive from every segment as their pages come back
            out.write(to_json(item) + "\n")
            count += 1
    print(f"export {table}: {count} items, {scan.summary.pages} pages", file=sys.stderr)
    return count


def _read_lines(path: Path, problems: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line, parse_float=Decimal)
            except json.JSONDecodeError as error:
                # where, never what: a line may hold personal data
                problems.append(f"line {number}: not JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(item, dict):
                problems.append(f"line {number}: not a JSON object")
                continue
            yield number, item


def to_json(value: Any) -> str:
    """JSON text of a scanned item; ``Decimal`` numbers exactly (``json.dumps`` has no way to
    write them but through a float), sets as sorted lists, binary as base64."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        values = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "[" + ",".join(to_json(v) for v in values) + "]"
    if hasattr(value, "value") and isinstance(value.value, bytes):  # boto3's Binary
        return json.dumps(base64.b64encode(value.value).decode("ascii"))
    return json.dumps(value)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint-url", help="e.g. http://localhost:8000 for DynamoDB Local")
    commands = parser.add_subparsers(dest="command", required=True)
    load_cmd = commands.add_parser("load", help="JSON lines file -> table")
    load_cmd.add_argument("table")
    load_cmd.add_argument("file", type=Path)
    load_cmd.add_argument("--concurrency", type=int, default=4)
    export_cmd = commands.add_parser("export", help="table -> JSON lines file")
    export_cmd.add_argument("table")
    export_cmd.add_argument("file", type=Path)
    export_cmd.add_argument("--segments", type=int, default=4)
    args = parser.parse_args(argv)

    client = boto3.client(
        "dynamodb", endpoint_url=args.endpoint_url, config=POLICY.botocore_config()
    )
    try:
        if args.command == "load":
            _, problems = load(args.table, args.file, client=client, concurrency=args.concurrency)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        export(args.table, args.file, client=client, segments=args.segments)
        return 0
    except ResilientAWSError as error:  # e.g. the table does not exist, retries exhausted
        print(f"error: {error}", file=sys.stderr)
        return 1


def demo() -> None:
    import os
    import tempfile

    from moto import mock_aws

    from resilient_aws.testing import FakeClock, chaos

    # The demo's retries sleep on a fake clock: the same decisions, without the waiting.
    policy = FakeClock().policy(POLICY)

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        source = Path(tmp, "orders.jsonl")
        with source.open("w") as out:
            for i in range(600):
                order = {
                    "pk": f"order#{i:05d}",
                    "total": f"{i}.{i % 100:02d}",  # written as a JSON number below
                    "lines": [{"sku": f"sku-{i % 7}", "quantity": 1 + i % 3}],
                    "tags": ["new"] if i % 2 else [],
                    "paid": i % 5 != 0,
                }
                line = json.dumps(order).replace(f'"{order["total"]}"', order["total"])
                out.write(line + "\n")
                if i == 10:
                    out.write("{this is not json\n")
                if i == 20:
                    out.write('{"total": 1}\n')  # no key: refused before anything is sent

        with chaos(client, partial=0.2, throttle=0.02, seed=7) as faults:
            written, problems = load("orders", source, client=client, policy=policy)
        print(f"loaded {written} items; chaos withheld {faults.stats.withheld_entries} entries")
        print("not loaded:", *problems, sep="\n  ")
        assert written == 600
        assert len(problems) == 2

        copy = Path(tmp, "orders-copy.jsonl")
        # The command line, as from a shell (its own client; moto serves it in this process).
        assert main(["export", "orders", str(copy), "--segments", "4"]) == 0
        exported = sum(1 for _ in copy.open())
        original = [item for _, item in _read_lines(source, []) if "pk" in item]
        back = [json.loads(line, parse_float=Decimal) for line in copy.open()]
        print(f"exported {exported} items; round trip exact: {_by_key(back) == _by_key(original)}")
        assert exported == written
        assert _by_key(back) == _by_key(original)


def _by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["pk"]: item for item in items}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1:]))
    demo()
