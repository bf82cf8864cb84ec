"""Snippet includes in the docs keep their exact syntax (a formatter once mangled them, and
mkdocs then rendered the directive as code instead of the example)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_snippet_directive_is_well_formed_and_points_to_a_file() -> None:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    directives = [
        (page, line)
        for page in pages
        for line in page.read_text().splitlines()
        if line.lstrip().startswith("--8")
    ]
    assert directives, "no snippet includes found"
    for page, line in directives:
        match = re.fullmatch(r'\s*--8<-- "([^":]+)(?::([\w-]+))?"', line)
        assert match, f"{page.name}: malformed snippet directive {line!r}"
        path, section = ROOT / match.group(1), match.group(2)
        assert path.is_file(), f"{page.name}: {match.group(1)} does not exist"
        if section:
            assert f"--8<-- [start:{section}]" in path.read_text(), (page.name, section)
