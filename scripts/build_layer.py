"""Build a Lambda layer zip of resilient_aws and its one dependency the runtime lacks.

The Python runtimes ship boto3 and botocore, so the layer holds ``python/resilient_aws`` and
``python/tenacity`` (with its licence and metadata) and nothing else. The zip is reproducible:
sorted entries, fixed timestamps, no ``__pycache__`` (bytecode is specific to the builder's
Python version; Lambda compiles on first import)::

    python scripts/build_layer.py [--output dist/resilient-aws-layer.zip]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "resilient_aws"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _files(top: Path) -> list[Path]:
    return sorted(
        path
        for path in top.rglob("*")
        if path.is_file()
        and not SKIPPED_PARTS.intersection(path.relative_to(top).parts)
        and path.suffix not in SKIPPED_SUFFIXES
    )


def _dependency_files(distribution: str) -> list[tuple[Path, str]]:
    """(file on disk, path inside ``python/``) of an installed distribution."""
    dist = importlib.metadata.distribution(distribution)
    found: list[tuple[Path, str]] = []
    for entry in dist.files or ():
        path = Path(str(dist.locate_file(entry)))
        if entry.suffix in SKIPPED_SUFFIXES or "__pycache__" in entry.parts:
            continue
        if entry.parts[0].startswith("..") or not path.is_file():
            continue  # scripts installed outside site-packages
        if entry.name in {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}:
            continue  # installer bookkeeping that would name this machine's paths
        found.append((path, entry.as_posix()))
    return sorted(found, key=lambda pair: pair[1])


def build_layer(output: Path) -> int:
    """Write the layer zip to ``output``; return its size in bytes."""
    output.parent.mkdir(parents=True, exist_ok=True)
    entries = [
        (path, f"python/resilient_aws/{path.relative_to(PACKAGE).as_posix()}")
        for path in _files(PACKAGE)
    ]
    entries += [(path, f"python/{name}") for path, name in _dependency_files("tenacity")]
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path, name in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return output.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "resilient-aws-layer.zip")
    args = parser.parse_args(argv)
    size = build_layer(args.output)
    print(f"{args.output}: {size / 1024:.0f} KiB (budget: 1024 KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
