"""Every public subpackage has an API reference page in the docs site's navigation."""

from __future__ import annotations

from pathlib import Path

import pytest

import resilient_aws

ROOT = Path(__file__).resolve().parents[2]
NOT_A_LIBRARY_API = {"cli"}  # documented as commands in docs/cli.md


@pytest.mark.parametrize(
    "name", sorted(set(resilient_aws.__all__) - {"__version__"} - NOT_A_LIBRARY_API)
)
def test_subpackage_has_a_reference_page(name: str) -> None:
    page = ROOT / "docs" / "api" / f"{name}.md"
    assert page.is_file(), f"docs/api/{name}.md is missing"
    assert f"::: resilient_aws.{name}" in page.read_text()
    assert f"api/{name}.md" in (ROOT / "mkdocs.yml").read_text()
