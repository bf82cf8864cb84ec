"""Powertools is imported by resilient_aws.powertools only, never by the core (fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

OPTIONAL = {"aws_lambda_powertools", "pydantic", "moto", "pytest"}


def _top_level_modules(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


def test_the_retry_core_emitting_events_never_imports_powertools() -> None:
    loaded = _top_level_modules(
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG)\n"
        "import resilient_aws\n"
        "from resilient_aws.retry import FailedEntry, add_listener, run_partial\n"
        "from resilient_aws.testing import FakeClock\n"
        "seen = []\n"
        "add_listener(seen.append)\n"
        "rounds = [{'a'}, set()]\n"
        "def send(batch):\n"
        "    failing = rounds.pop(0)\n"
        "    return [FailedEntry(e, e, 'Unprocessed', retryable=True) for e in batch if e in failing]\n"
        "run_partial(FakeClock().policy(), send, ['a', 'b'], entry_id=str, operation='Put')\n"
        "assert [e.kind for e in seen] == ['partial_failure', 'retry', 'recovered'], seen\n"
    )
    assert not loaded & OPTIONAL


def test_the_powertools_subpackage_imports_powertools_and_nothing_else_optional() -> None:
    loaded = _top_level_modules("import resilient_aws.powertools")
    assert "aws_lambda_powertools" in loaded
    assert not loaded & (OPTIONAL - {"aws_lambda_powertools"})
