"""The real ``resilient-aws`` console script, in a subprocess, against the moto server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from resilient_aws.testing import MotoServer
from tests.dynamo_tables import create_table

SCRIPT = Path(sys.executable).with_name("resilient-aws")


def _run(
    server: MotoServer, *argv: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return subprocess.run(
        [str(SCRIPT), "--endpoint-url", server.endpoint_url, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_console_script_loads_exports_and_exits_with_the_documented_codes(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    ddb: Any = moto_server.client("dynamodb")
    table = create_table(ddb, "cli-console")
    lines = [json.dumps({"pk": f"k{i:03d}", "price": i / 4}) for i in range(120)]

    loaded = _run(moto_server, "load", table, "-", "--json", stdin="\n".join([*lines, "{bad"]))
    assert loaded.returncode == 1, loaded.stderr
    report = json.loads(loaded.stdout)
    assert (report["loaded"], report["failed"]) == (120, 1)
    assert report["failures"][0]["line"] == 121

    exported = _run(moto_server, "export", table, "--segments", "2")
    assert exported.returncode == 0, exported.stderr
    assert sorted(exported.stdout.splitlines()) == sorted(line.replace(" ", "") for line in lines)
    assert f"exported 120 items from {table}" in exported.stderr

    missing = _run(moto_server, "export", "no-such-table", "--json")
    assert missing.returncode == 2
    assert missing.stdout == ""  # export's stdout is its data, even when it fails
    assert json.loads(missing.stderr.splitlines()[-1])["error"]["type"] == "UnknownTableError"

    usage = _run(moto_server, "load", table)
    assert usage.returncode == 2
    assert "usage: resilient-aws load" in usage.stderr

    demo_help = _run(moto_server, "demo", "--help")
    assert demo_help.returncode == 0
    assert "--items ITEMS" in demo_help.stdout


def test_console_script_redrives_a_dlq(moto_server: MotoServer) -> None:
    sqs: Any = moto_server.client("sqs")
    dlq = sqs.create_queue(QueueName="cli-console-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    source = sqs.create_queue(QueueName="cli-console", Attributes={"RedrivePolicy": policy})[
        "QueueUrl"
    ]
    sqs.send_message_batch(
        QueueUrl=dlq, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)]
    )

    dry = _run(moto_server, "redrive", "sqs", "--from", dlq, "--dry-run", "--wait-time", "0")
    assert dry.returncode == 0, dry.stderr
    assert "10 received, 10 would move" in dry.stdout

    moved = _run(moto_server, "redrive", "sqs", "--from", dlq, "--json", "--wait-time", "0")
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert (report["target"], report["moved"], report["ok"]) == (source, 10, True)
    bodies = []
    while batch := sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in batch]
        for m in batch:
            sqs.delete_message(QueueUrl=source, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(bodies) == sorted(f"m{i}" for i in range(10))
