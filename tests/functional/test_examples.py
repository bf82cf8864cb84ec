"""Every script under examples/ runs, so that none of them rots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_there_are_examples() -> None:
    assert SCRIPTS


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_every_example_says_what_it_shows_and_how_to_run_it(example: Path) -> None:
    import ast

    docstring = ast.get_docstring(ast.parse(example.read_text())) or ""
    assert len(docstring.split("\n")[0]) > 20, "a first line saying what it shows"
    how = "pytest" if example.name.startswith("test_") else f"python examples/{example.name}"
    assert how in docstring


def test_the_state_machine_definition_is_valid_json_with_a_resume_loop() -> None:
    import json

    definition = json.loads((EXAMPLES / "parallel_scan_state_machine.json").read_text())
    states = definition["States"]["ScanEachSegment"]["ItemProcessor"]["States"]
    assert states["SegmentDone?"]["Default"] == "ScanSegment"
