"""Build a Lambda layer zip of resilient_aws and its one dependency the runtime lacks, compiled.

The Python runtimes ship boto3 and botocore, so the layer holds ``python/resilient_aws`` and
``python/tenacity`` (with its licence and metadata) and nothing else (not the command line,
``resilient_aws.cli``, nor the test tools, ``resilient_aws.testing``, which no function imports), with the bytecode of every
module: a layer is unpacked to ``/opt``, which is read-only, so a layer without ``__pycache__``
makes every cold start compile every module it imports (2-4 times the import time).

Bytecode is specific to a Python minor version, so a layer is built for one: the sources are
compiled by the interpreter given with ``--python`` (default: the one running this script),
into ``__pycache__/<module>.<cache tag>.pyc``, as *unchecked-hash* pycs (PEP 552): the
runtime uses them without looking at the sources' timestamps (which a zip does not keep
reliably) and without hashing the sources. Use the layer with the runtime of that version
only (``python3.11`` for a layer built by Python 3.11); on another version it still works,
compiling at every cold start. The zip is reproducible: sorted entries, fixed timestamps,
no path of the build machine in the bytecode (``co_filename`` is ``/opt/python/...``)::

    python scripts/build_layer.py [--python python3.12 ...] [--output dist/resilient-aws-layer-python{version}.zip]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "resilient_aws"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
LAMBDA_ROOT = "/opt"  # where Lambda unpacks a layer: python/ is on the runtime's sys.path
DEFAULT_OUTPUT = "dist/resilient-aws-layer-python{version}.zip"
# Subpackages no function imports: the command line and the test tools (chaos, moto servers,
# the pytest plugin) run where pip installed the package.
LEFT_OUT = ("cli", "testing")

# Run by the target interpreter (``-I -S``: nothing of the environment), reads
# [[source, name in the layer, pyc to write], ...] on stdin, prints its version and cache tag.
_COMPILE = """
import json, py_compile, sys
for source, name, pyc in json.load(sys.stdin):
    py_compile.compile(
        source, cfile=pyc, dfile=name, doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
print(json.dumps(["%d.%d" % sys.version_info[:2], sys.implementation.cache_tag]))
"""


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


def _compiled(
    python: str, sources: list[tuple[Path, str]], workdir: Path
) -> tuple[str, list[tuple[bytes, str]]]:
    """Compile ``sources`` (file, name in the zip) with ``python``: its version, and the
    (pyc bytes, name in the zip) of each module."""
    jobs = [
        [str(path), f"{LAMBDA_ROOT}/{name}", str(workdir / f"{i}.pyc")]
        for i, (path, name) in enumerate(sources)
    ]
    done = subprocess.run(
        [python, "-I", "-S", "-c", _COMPILE],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=True,
    )
    version, tag = json.loads(done.stdout.splitlines()[-1])
    pycs = []
    for (_, name), (_, _, pyc) in zip(sources, jobs, strict=True):
        folder, _, filename = name.rpartition("/")
        pycs.append((Path(pyc).read_bytes(), f"{folder}/__pycache__/{filename[:-3]}.{tag}.pyc"))
    return version, pycs


def build_layer(output: Path, python: str = sys.executable) -> int:
    """Write the layer zip, compiled by ``python``, to ``output``; return its size in bytes."""
    output.parent.mkdir(parents=True, exist_ok=True)
    entries = [
        (path, f"python/resilient_aws/{path.relative_to(PACKAGE).as_posix()}")
        for path in _files(PACKAGE)
        if path.relative_to(PACKAGE).parts[0] not in LEFT_OUT
    ]
    entries += [(path, f"python/{name}") for path, name in _dependency_files("tenacity")]
    contents = [(path.read_bytes(), name) for path, name in entries]
    with tempfile.TemporaryDirectory() as workdir:
        sources = [(path, name) for path, name in entries if name.endswith(".py")]
        _, pycs = _compiled(python, sources, Path(workdir))
    contents = sorted(contents + pycs, key=lambda pair: pair[1])
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for data, name in contents:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return output.stat().st_size


def python_version(python: str) -> str:
    """``"3.11"`` for a Python 3.11 interpreter."""
    done = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter to compile with, once per layer (default: this one)",
    )
    parser.add_argument(
        "--output",
        default=str(ROOT / DEFAULT_OUTPUT),
        help="zip to write; {version} is replaced by the interpreter's, e.g. 3.11",
    )
    args = parser.parse_args(argv)
    for python in args.python or [sys.executable]:
        version = python_version(python)
        output = Path(args.output.format(version=version))
        size = build_layer(output, python)
        print(f"{output}: python{version} runtime, {size / 1024:.0f} KiB (budget: 1024 KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
