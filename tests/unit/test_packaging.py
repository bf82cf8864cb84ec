"""The Lambda layer stays small and self-sufficient, and every subpackage imports cheaply.

The layer is built from this checkout (``scripts/build_layer.py``), unpacked, and imported in a
fresh interpreter that sees the layer and boto3 only, the way a Lambda runtime does. Import
times are measured with ``-X importtime`` on top of ``import boto3`` (which the runtime pays
anyway); the budgets are several times today's figures (docs/performance.md) so that a noisy
machine does not fail them, while an accidental heavy import (pydantic, moto, a thread pool at
import) does.
"""

from __future__ import annotations

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

# milliseconds, cumulative for the subpackage on top of boto3; measured 1-60 ms (see performance.md)
IMPORT_BUDGET_MS = {
    "resilient_aws": 20,
    "resilient_aws.errors": 20,
    "resilient_aws.limits": 20,
    "resilient_aws.results": 100,
    "resilient_aws.retry": 100,
    "resilient_aws.dynamodb": 150,
    "resilient_aws.batch": 150,
    "resilient_aws.idempotency": 150,
    "resilient_aws.outbox": 200,
    "resilient_aws.redrive": 200,
}


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


def _runtime_python(layer: Path, code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter without site-packages: the layer first, then boto3's directory."""
    boto3_site = Path(boto3.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(layer.parent / "unpacked" / "python"), str(boto3_site)]),
    }
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
    assert all(name.startswith("python/") for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert "python/resilient_aws/py.typed" in names


@pytest.mark.parametrize("module", sorted(IMPORT_BUDGET_MS))
def test_every_subpackage_imports_from_the_layer_alone(layer: Path, module: str) -> None:
    code = (
        "import json, sys, boto3, importlib; m = importlib.import_module(sys.argv[1]);"
        "print(json.dumps([m.__file__, sorted(sys.modules)]))"
    )
    out = _runtime_python(layer, code.replace("sys.argv[1]", repr(module)))
    path, modules = json.loads(out.stdout)
    assert Path(path).is_relative_to(layer.parent / "unpacked" / "python")
    heavy = [name for name in modules if name.split(".")[0] in OPTIONAL]
    assert heavy == []


@pytest.mark.parametrize("module", sorted(IMPORT_BUDGET_MS))
def test_cold_import_stays_within_budget(layer: Path, module: str) -> None:
    timings = []
    for _ in range(3):  # the best of three: the budget is about the code, not the machine's load
        result = _runtime_python(layer, f"import boto3; import {module}", "-X", "importtime")
        timings.append(_import_time_ms(result.stderr, module))
    assert min(timings) <= IMPORT_BUDGET_MS[module], (module, timings)


def _import_time_ms(stderr: str, module: str) -> float:
    """Cumulative microseconds of ``module``'s own line in ``-X importtime`` output, in ms."""
    for line in stderr.splitlines():
        # "import time:       412 |      20631 |   resilient_aws.results"
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.strip() == module and cumulative.strip().isdigit():
            return int(cumulative) / 1000
    raise AssertionError(f"{module} not in the -X importtime output")
