"""Tracing costs nothing until an application configures OpenTelemetry: with
``opentelemetry-api`` and the SDK installed (as here), importing resilient_aws and every
subpackage, and using them, imports no ``opentelemetry`` module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.test_packaging import IMPORTS

ROOT = Path(__file__).resolve().parents[2]

USE = """
from botocore.exceptions import ClientError
from resilient_aws import tracing
from resilient_aws.consumer import BatchProcessor
from resilient_aws.retry import RetryPolicy, RetryEvent, emit

fails = [ClientError({"Error": {"Code": "Throttling"}}, "Put")]
def put():
    if fails:
        raise fails.pop()
    return "ok"
assert RetryPolicy(sleep=lambda s: None).call(put) == "ok"
event = {"Records": [{"eventSource": "aws:sqs", "messageId": "m", "receiptHandle": "r",
          "body": "{}", "messageAttributes": {"traceparent": {"stringValue": "x"}}}]}
assert BatchProcessor().process(event, lambda r: None).failed == []
emit(RetryEvent(kind="retry", operation="Put", attempt=1))
assert tracing.inject("sqs") == {} and not tracing.enabled()
with tracing.span("x") as s:
    s.set_attribute("k", 1)
    tracing.mark_failed(s, ValueError("x"))
with tracing.request_span("PutRecords", entries=1, client=object()) as s:
    pass
"""


def _modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return [m for m in json.loads(done.stdout) if m.split(".")[0] == "opentelemetry"]


def test_opentelemetry_is_installed_here() -> None:
    # the tests below prove something only if there is something not to import
    assert _modules_after("import opentelemetry.trace") != []


def test_no_subpackage_imports_opentelemetry() -> None:
    statements = [*IMPORTS.values(), "import resilient_aws.tracing"]
    assert _modules_after("\n".join(statements)) == []


def test_using_the_library_with_tracing_unconfigured_imports_no_opentelemetry() -> None:
    assert _modules_after(USE) == []
