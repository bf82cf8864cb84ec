"""The Lambda layer stays small and self-sufficient, and every subpackage imports cheaply.

The layer is built from this checkout (``scripts/build_layer.py``), unpacked, and imported in a
fresh interpreter that sees the layer and boto3 only, the way a Lambda runtime does. Import
times are measured with ``-X importtime`` on top of ``import boto3`` (which the runtime pays
anyway); the budgets are several times today's figures (docs/performance.md) so that a noisy
machine does not fail them, while an accidental heavy import (pydantic, moto, a thread pool at
import) does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER_BUDGET_BYTES = 1024 * 1024
OPTIONAL = ("pydantic", "aws_lambda_powertools", "moto", "pytest")
# The extras of the async and tracing support: a sync import loads none of them, nor asyncio.
ASYNC_AND_TRACING = ("aiobotocore", "aiohttp", "asyncio", "opentelemetry", "cryptography")

# What a handler imports (the README's and docstrings' examples), on top of boto3: milliseconds,
# the sum of every module's own time after ``import boto3`` (subpackages resolve their names
# lazily, so ``import resilient_aws.outbox`` alone would prove nothing). Measured from the
# compiled layer, best of 7 (docs/performance.md): retry 2.8, consumer 3.1, batch 4.6,
# idempotency 5.3, dynamodb 5.7, redrive 7.1, outbox 9.1 ms; 5.2 / 9.6 / 11.5 ms for the last
# three with the machine's two cores busy. Issue 14's target is 12 ms for every capability;
# the budgets are that target plus a third, for a loaded CI machine.
IMPORTS = {
    "resilient_aws": "import resilient_aws",
    "resilient_aws.errors": "import resilient_aws.errors",
    "resilient_aws.limits": "import resilient_aws.limits",
    "resilient_aws.results": "from resilient_aws.results import BatchResult, FailedEntry",
    "resilient_aws.retry": "from resilient_aws.retry import RetryPolicy",
    "resilient_aws.idempotency": "from resilient_aws.idempotency import IdempotencyStore, idempotent",
    "resilient_aws.batch": "from resilient_aws.batch import SqsSender",
    "resilient_aws.dynamodb": "from resilient_aws.dynamodb import BatchWriter, scan",
    "resilient_aws.redrive": "from resilient_aws.redrive import redrive_sqs",
    "resilient_aws.outbox": (
        "from resilient_aws.outbox import Outbox, OutboxEvent, SqsTarget, relay_handler"
    ),
    "resilient_aws.consumer": (
        "from resilient_aws.consumer import BatchProcessor, SQSRecord, VisibilityBackoff"
    ),
    "resilient_aws.payloads": "from resilient_aws.payloads import PayloadConfig, PayloadStore",
}
IMPORT_BUDGET_MS = {
    "resilient_aws": 3,
    "resilient_aws.errors": 6,
    "resilient_aws.limits": 6,
    "resilient_aws.results": 6,
    "resilient_aws.retry": 8,
    "resilient_aws.idempotency": 16,
    "resilient_aws.batch": 16,
    "resilient_aws.dynamodb": 16,
    "resilient_aws.redrive": 16,
    "resilient_aws.outbox": 16,
    "resilient_aws.consumer": 16,
    "resilient_aws.payloads": 16,
}
MARK = "--- boto3 imported ---"


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build_layer = runpy.run_path(str(ROOT / "scripts" / "build_layer.py"))["build_layer"]
    out = tmp_path_factory.mktemp("layer")
    zip_path = out / "layer.zip"
    size = build_layer(zip_path)
    assert size == zip_path.stat().st_size
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(out / "unpacked")
    return zip_path


def _runtime_python(
    layer: Path, code: str, *flags: str, first: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter without site-packages: the layer first, then boto3's directory
    (``first``, if given, before both)."""
    boto3_site = Path(boto3.__file__).resolve().parents[1]
    path = [str(layer.parent / "unpacked" / "python"), str(boto3_site)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([first, *path] if first else path)}
    return subprocess.run(
        [sys.executable, "-S", *flags, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=layer.parent,  # not the checkout: "-c" puts the working directory on sys.path
        check=True,
    )


def test_layer_is_under_one_megabyte(layer: Path) -> None:
    assert layer.stat().st_size < LAYER_BUDGET_BYTES


def test_layer_holds_the_package_and_tenacity_only(layer: Path) -> None:
    with zipfile.ZipFile(layer) as zf:
        names = zf.namelist()
    tops = {name.split("/")[1] for name in names}
    assert {"resilient_aws", "tenacity"} <= tops
    assert all(top in {"resilient_aws", "tenacity"} or top.startswith("tenacity-") for top in tops)
    # the command line and the test tools run where pip installed the package, never inside a
    # function
    left_out = ("python/resilient_aws/cli/", "python/resilient_aws/testing/")
    assert not [name for name in names if name.startswith(left_out)]
    assert all(name.startswith("python/") for name in names)
    assert "python/resilient_aws/py.typed" in names


def test_layer_ships_unchecked_bytecode_of_every_module_for_the_builders_python(
    layer: Path,
) -> None:
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(layer) as zf:
        names = set(zf.namelist())
        sources = sorted(name for name in names if name.endswith(".py"))
        pycs = {name for name in names if name.endswith(".pyc")}
        expected = set()
        for source in sources:
            folder, _, filename = source.rpartition("/")
            expected.add(f"{folder}/__pycache__/{filename[:-3]}.{tag}.pyc")
        assert pycs == expected
        for pyc in pycs:
            header = zf.read(pyc)[:8]
            assert header[:4] == importlib.util.MAGIC_NUMBER
            # PEP 552 flags: hash-based (bit 0), source not checked (bit 1 clear): Lambda's
            # read-only /opt uses it whatever the unpacked files' timestamps say
            assert int.from_bytes(header[4:8], "little") == 0b01


def test_the_layer_build_is_reproducible(layer: Path, tmp_path: Path) -> None:
    build_layer = runpy.run_path(str(ROOT / "scripts" / "build_layer.py"))["build_layer"]
    build_layer(tmp_path / "again.zip")
    assert (tmp_path / "again.zip").read_bytes() == layer.read_bytes()


def test_importing_from_the_layer_compiles_nothing(layer: Path) -> None:
    code = "import boto3; " + "; ".join(IMPORTS.values())
    result = _runtime_python(layer, code, "-v", "-B")
    unpacked = str(layer.parent / "unpacked")
    compiled = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("# code object from") and unpacked in line and ".pyc" not in line
    ]
    from_bytecode = [
        line for line in result.stderr.splitlines() if unpacked in line and "matches" in line
    ]
    assert compiled == []
    assert len(from_bytecode) > 20


@pytest.mark.parametrize("module", sorted(IMPORT_BUDGET_MS))
def test_every_subpackage_imports_from_the_layer_alone(layer: Path, module: str) -> None:
    code = (
        f"import json, sys, boto3; {IMPORTS[module]}; m = sys.modules[{module!r}];"
        "print(json.dumps([m.__file__, sorted(sys.modules)]))"
    )
    out = _runtime_python(layer, code)
    path, modules = json.loads(out.stdout)
    assert Path(path).is_relative_to(layer.parent / "unpacked" / "python")
    heavy = [name for name in modules if name.split(".")[0] in OPTIONAL + ASYNC_AND_TRACING]
    assert heavy == []
    # tenacity is imported when a call is first retried, not before
    assert [name for name in modules if name.split(".")[0] == "tenacity"] == []


def test_tenacity_is_imported_by_the_first_retry_only(layer: Path) -> None:
    code = (
        "import sys\n"
        "from resilient_aws.retry import RetryPolicy\n"
        "policy = RetryPolicy(sleep=lambda s: None)\n"
        "assert policy.call(lambda: 'ok') == 'ok'\n"
        "assert 'tenacity' not in sys.modules\n"
        "from botocore.exceptions import ClientError\n"
        "fails = [ClientError({'Error': {'Code': 'Throttling'}}, 'Get')]\n"
        "def flaky():\n"
        "    if fails:\n"
        "        raise fails.pop()\n"
        "    return 'ok'\n"
        "assert policy.call(flaky) == 'ok'\n"
        "import tenacity\n"
        "from resilient_aws.retry import wait_jittered\n"
        "assert issubclass(wait_jittered, tenacity.wait.wait_base)\n"
        "print('tenacity' in sys.modules)\n"
    )
    assert _runtime_python(layer, code).stdout.split() == ["True"]


# What the anchor, Powertools' idempotency, took on the machine the budgets were set on (best
# of 7, compiled, over boto3). A machine that imports it slower gets budgets that much larger:
# the budgets are about the code, and the same machine can be twice as slow from one hour to
# the next (seen here: 9.1 then 17.3 ms for the same outbox import).
ANCHOR = "import aws_lambda_powertools.utilities.idempotency"
ANCHOR_MS = 11.5


@pytest.fixture(scope="module")
def machine_factor(layer: Path) -> float:
    """How much slower this machine imports than the one the budgets were set on (>= 1)."""
    pytest.importorskip("aws_lambda_powertools")
    site = str(Path(boto3.__file__).resolve().parents[1])  # installed, with bytecode
    anchor = min(_cold_import_ms(layer, ANCHOR, first=site) for _ in range(5))
    return max(1.0, anchor / ANCHOR_MS)


@pytest.mark.parametrize("module", sorted(IMPORT_BUDGET_MS))
def test_cold_import_stays_within_budget(layer: Path, module: str, machine_factor: float) -> None:
    timings = []
    for _ in range(5):  # the best of five: the budget is about the code, not the machine's load
        timings.append(_cold_import_ms(layer, IMPORTS[module]))
    budget = IMPORT_BUDGET_MS[module] * machine_factor
    assert min(timings) <= budget, (module, timings, f"budget {budget:.1f} ms")


def test_idempotency_imports_faster_than_powertools_idempotency(layer: Path) -> None:
    """Both compiled, both on top of boto3, interleaved: ours costs no more than Powertools'."""
    pytest.importorskip("aws_lambda_powertools")
    powertools_site = Path(boto3.__file__).resolve().parents[1]  # installed, with bytecode
    ours, theirs = [], []
    for _ in range(5):
        ours.append(_cold_import_ms(layer, IMPORTS["resilient_aws.idempotency"]))
        theirs.append(
            _cold_import_ms(
                layer,
                "import aws_lambda_powertools.utilities.idempotency",
                first=str(powertools_site),
            )
        )
    assert min(ours) <= min(theirs), (ours, theirs)


def _cold_import_ms(layer: Path, statement: str, first: str | None = None) -> float:
    """Milliseconds ``statement`` takes after ``import boto3`` in a fresh interpreter: the sum
    of the own time of every module it loads (``-X importtime``)."""
    code = f"import boto3, sys; sys.stderr.write({MARK!r} + '\\n'); sys.stderr.flush(); {statement}"
    result = _runtime_python(layer, code, "-B", "-X", "importtime", first=first)
    _, found, after = result.stderr.partition(MARK + "\n")
    assert found, result.stderr
    total = 0
    for line in after.splitlines():
        # "import time:       412 |      20631 |   resilient_aws.results"
        if line.startswith("import time:") and "|" in line:
            own = line.removeprefix("import time:").split("|")[0].strip()
            total += int(own) if own.isdigit() else 0
    return total / 1000
