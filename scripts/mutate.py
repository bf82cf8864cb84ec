"""Mutation testing of the retry core and the batch engine (``make mutate``).

Applies one small change at a time to a *copy* of ``resilient_aws/retry/`` and
``resilient_aws/_batching.py`` -- a flipped comparison, ``and`` for ``or``, a dropped ``not``,
call or operand, a changed constant, ``min`` for ``max``, a negated condition -- runs the tests
against it, and reports which changes the tests caught (*killed*) and which they did not
(*survived*). A mutant that makes the tests hang past the time limit counts as killed.

The tests are ``tests/unit`` and ``tests/reliability/test_pressure.py``. They run once first,
under coverage, to learn which test runs which line (and to check that they pass); each mutant
is then tested by the tests that run its lines only, the ones that killed its neighbours first,
stopping at the first failure. Each worker is a process that imports the heavy dependencies
once and forks a child per mutant.

The working tree is never modified: each worker has its own copy of the project in a temporary
directory, removed at the end, also on Ctrl-C or SIGTERM.

By default only the critical functions are mutated (giving up, counting attempts, backoff,
deadlines, the budget: ``CRITICAL`` below); ``--all`` mutates every function of those files.

    python scripts/mutate.py                 # the critical lines, 2 workers
    python scripts/mutate.py --list          # the mutants, without running anything
    python scripts/mutate.py --only _batching.py:BatchEngine._send_back --jobs 1
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent

TARGETS = sorted(
    [
        *(p for p in (ROOT / "resilient_aws" / "retry").glob("*.py") if p.name != "__init__.py"),
        ROOT / "resilient_aws" / "_batching.py",
    ]
)

# The functions whose lines decide when to give up, how attempts are counted and how long to
# back off: mutated by default. Patterns (fnmatch) of qualified names, as in the file
# (Class.method); a pattern that matches nothing is reported, so that a rename is noticed.
CRITICAL: dict[str, tuple[str, ...]] = {
    "_run.py": (
        "Run.is_retryable",
        "Run.should_stop",
        "Run.wait",
        "Run.before_sleep",
        "Run.succeeded",
        "Run.give_up_error",
        "_botocore_retries",
        "call",
        "acall",
    ),
    "_wait.py": ("*.ceiling", "*.delay", "*.__call__", "retry_after"),
    "_policy.py": ("RetryPolicy.with_deadline", "RetryPolicy.botocore_config"),
    "_budget.py": ("*",),
    "_deadline.py": ("*",),
    "_pacer.py": ("Pacer.reserve", "Pacer.record", "Pacer.stalled_for", "backoff"),
    "_partial.py": ("_PartialRun.after_send", "_PartialRun.finish", "run_partial", "_settle"),
    "_classify.py": ("classify", "classify_entry"),
    "_batching.py": (
        "BatchEngine._send",
        "BatchEngine._still_worth_sending",
        "BatchEngine._request_failed",
        "BatchEngine._answered",
        "BatchEngine._send_back",
        "_botocore_retries",
        "botocore_retries",
        "_gave_up",
    ),
}

# The tests run against each mutant, the likeliest to kill first (pytest -x stops at the first
# failure): then the rest of tests/unit, and the pressure tests.
FIRST = [
    "tests/unit/test_retry_mutants.py",
    "tests/unit/test_core.py",
    "tests/unit/test_jitter.py",
    "tests/unit/test_policy.py",
    "tests/unit/test_classify.py",
    "tests/unit/test_partial.py",
    "tests/unit/test_pressure.py",
    "tests/unit/test_wire_accounting.py",
    "tests/unit/test_retry_events.py",
    "tests/unit/test_engine_accounting.py",
    "tests/unit/test_engine_holes.py",
    "tests/unit/test_batch_split.py",
    "tests/reliability/test_pressure.py",
]
TESTS = list(
    dict.fromkeys(
        [*FIRST, *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests/unit").glob("test_*.py"))]
    )
)

IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "site",
    "dist",
    "build",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)

_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.Pow: ast.Mult,
    ast.FloorDiv: ast.Div,
}
_SYMBOL: dict[type[ast.AST], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.FloorDiv: "//",
}
# Calls whose removal only changes what is logged or warned about.
_QUIET_CALLS = {"logger", "warnings", "logging"}


@dataclass(frozen=True)
class Mutant:
    path: Path
    function: str
    line: int
    start: int  # byte offsets in the file
    end: int
    replacement: str
    description: str
    source: str  # the mutated line, as it was
    covered_by: tuple[int, int]  # the lines whose tests run this mutant

    def label(self) -> str:
        return f"{self.path.name}:{self.line} {self.function}: {self.description}  | {self.source}"

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.replacement.encode() + source[self.end :]


class _Collector(ast.NodeVisitor):
    """Walks one module and lists the mutants of the functions in scope."""

    def __init__(self, path: Path, source: bytes, scope: tuple[str, ...] | None) -> None:
        self.path, self.source, self.scope = path, source, scope
        self.line_starts = [0]
        for line in source.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.lines = source.decode().splitlines()
        self.names: list[str] = []
        self.mutants: list[Mutant] = []
        # A default value or a class attribute runs once, at import: its mutants are run by the
        # tests that run the function (or the class) it belongs to.
        self.covered_by: tuple[int, int] | None = None
        self.matched: set[str] = set()

    # -- where we are ---------------------------------------------------------------------------

    def function(self) -> str:
        return ".".join(self.names)

    def in_scope(self) -> bool:
        if not self.names or self.names[-1] == "__repr__":
            return False
        if self.scope is None:
            return True
        qualified = self.function()
        for pattern in self.scope:
            if fnmatch.fnmatchcase(qualified, pattern) or qualified.startswith(pattern + "."):
                self.matched.add(pattern)
                return True
        return False

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.names.append(node.name)
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.visit(statement)
            else:
                self.covered_by = (node.lineno, node.end_lineno or node.lineno)
                self.visit(statement)
                self.covered_by = None
        self.names.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.names.append(node.name)
        outer, self.covered_by = self.covered_by, (node.body[0].lineno, node.end_lineno or 0)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.covered_by = outer
        for statement in node.body:
            self.visit(statement)
        self.names.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        if self.in_scope() and not isinstance(node.test, (ast.Compare, ast.BoolOp, ast.UnaryOp)):
            self.add(node.test, f"not ({ast.unparse(node.test)})", "condition negated")
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return  # an f-string's text: nothing to test there

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)  # never the annotation: a string under __future__.annotations

    # -- mutations ------------------------------------------------------------------------------

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def add(self, node: ast.AST, replacement: str, description: str, *, wrap: bool = True) -> None:
        lineno, col = getattr(node, "lineno", None), getattr(node, "col_offset", None)
        end_line, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
        if lineno is None or col is None or end_line is None or end_col is None:
            return
        self.mutants.append(
            Mutant(
                self.path,
                self.function(),
                lineno,
                self.offset(lineno, col),
                self.offset(end_line, end_col),
                f"({replacement})" if wrap else replacement,
                description,
                self.lines[lineno - 1].strip()[:72],
                self.covered_by or (lineno, end_line),
            )
        )

    def visit_Compare(self, node: ast.Compare) -> None:
        if self.in_scope():
            for i, op in enumerate(node.ops):
                swap = _COMPARE_SWAP.get(type(op))
                if swap is None:
                    continue
                ops = [*node.ops[:i], swap(), *node.ops[i + 1 :]]
                mutated = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
                change = f"{_SYMBOL[type(op)]} -> {_SYMBOL[swap]}"
                self.add(node, ast.unparse(mutated), f"{change} in `{_short(node)}`")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        if self.in_scope():
            swapped = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            mutated = ast.BoolOp(op=swapped, values=node.values)
            names = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            self.add(node, ast.unparse(mutated), f"{names[0]} -> {names[1]} in `{_short(node)}`")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if self.in_scope() and isinstance(node.op, ast.Not):
            self.add(node, ast.unparse(node.operand), "not dropped")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if self.in_scope():
            swap = _BINOP_SWAP.get(type(node.op))
            if swap is not None:
                mutated = ast.BinOp(left=node.left, op=swap(), right=node.right)
                self.add(node, ast.unparse(mutated), f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[swap]}")
            if isinstance(node.op, (ast.Add, ast.Sub)):
                self.add(node, ast.unparse(node.left), f"`{ast.unparse(node.right)}` term dropped")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if self.in_scope():
            swap = _BINOP_SWAP.get(type(node.op))
            if swap is not None:
                mutated = ast.AugAssign(target=node.target, op=swap(), value=node.value)
                description = f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[swap]}="
                self.add(node, ast.unparse(mutated), description, wrap=False)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not self.in_scope():
            return
        value = node.value
        if isinstance(value, bool):
            self.add(node, repr(not value), f"{value} -> {not value}")
        elif isinstance(value, int):
            self.add(node, repr(value + 1), f"{value} -> {value + 1}")
        elif isinstance(value, float):
            changed = value * 2 if value else 1.0
            self.add(node, repr(changed), f"{value} -> {changed}")

    def visit_Call(self, node: ast.Call) -> None:
        if self.in_scope() and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            other = "max" if node.func.id == "min" else "min"
            mutated = ast.Call(func=ast.Name(id=other), args=node.args, keywords=node.keywords)
            self.add(node, ast.unparse(mutated), f"{node.func.id} -> {other}")
        self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if self.in_scope() and isinstance(call, (ast.Call, ast.Await)):
            inner = call.value if isinstance(call, ast.Await) else call
            root = inner.func if isinstance(inner, ast.Call) else inner
            while isinstance(root, (ast.Attribute, ast.Call)):
                root = root.value if isinstance(root, ast.Attribute) else root.func
            if not (isinstance(root, ast.Name) and root.id in _QUIET_CALLS):
                head = ast.unparse(inner.func if isinstance(inner, ast.Call) else inner)
                self.add(node, "pass", f"call to {head}() dropped", wrap=False)
        self.generic_visit(node)


def _short(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


def collect(everything: bool, only: Sequence[str]) -> list[Mutant]:
    mutants: list[Mutant] = []
    for path in TARGETS:
        source = path.read_bytes()
        scope = None if everything else CRITICAL.get(path.name, ())
        collector = _Collector(path, source, scope)
        collector.visit(ast.parse(source, filename=str(path)))
        mutants += collector.mutants
        for pattern in sorted(set(scope or ()) - collector.matched):
            print(f"warning: no function of {path.name} matches {pattern!r}", file=sys.stderr)
    if only:
        mutants = [
            m for m in mutants if any(f"{m.path.name}:{m.function}".startswith(o) for o in only)
        ]
    # A mutant that does not compile is no mutant (never expected, but never run either).
    valid = []
    for mutant in mutants:
        try:
            compile(mutant.apply(mutant.path.read_bytes()), str(mutant.path), "exec")
        except SyntaxError:
            continue
        valid.append(mutant)
    return valid


# -- which tests run each mutant: one coverage pass ---------------------------------------------


def _pytest_args(tests: Sequence[str]) -> list[str]:
    return ["-q", "--no-header", "-p", "no:cacheprovider", "--hypothesis-seed=0", *tests]


def _enter(copy: Path) -> None:
    """Make ``copy`` the project this process imports and tests."""
    os.chdir(copy)
    sys.path.insert(0, str(copy))


def coverage_pass(copy: Path, out: Path) -> int:
    """Run the tests listed in ``out`` (JSON) once on the unmutated ``copy``, recording which
    test runs which line of the targets and how long each test takes; written to ``out``."""
    import coverage
    import pytest

    tests = json.loads(out.read_text())
    _enter(copy)
    targets = [str(copy / path.relative_to(ROOT)) for path in TARGETS]
    cov = coverage.Coverage(data_file=None, include=targets, config_file=False)
    order: list[str] = []
    durations: dict[str, float] = {}
    failed: list[str] = []

    class Contexts:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
            cov.switch_context(item.nodeid)
            started = time.perf_counter()
            yield
            durations[item.nodeid] = time.perf_counter() - started
            order.append(item.nodeid)
            cov.switch_context("")

        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if report.failed:
                failed.append(report.nodeid)

    cov.start()
    try:
        code = pytest.main(_pytest_args(tests), plugins=[Contexts()])
    finally:
        cov.stop()
    data = cov.get_data()
    lines: dict[str, dict[int, list[str]]] = {}
    for measured in data.measured_files():
        relative = str(Path(measured).resolve().relative_to(copy))
        by_line = data.contexts_by_lineno(measured)
        lines[relative] = {n: [c for c in contexts if c] for n, contexts in by_line.items()}
    out.write_text(
        json.dumps(
            {
                "code": int(code),
                "order": order,
                "durations": durations,
                "lines": lines,
                "failed": failed,
            }
        )
    )
    return 0


@dataclass(frozen=True)
class Coverage:
    order: list[str]
    durations: dict[str, float]
    lines: dict[str, dict[int, list[str]]]

    def tests_for(self, mutant: Mutant) -> list[str]:
        """The tests that run a line of ``mutant``: module by module, the modules whose tests
        take least time first (pytest -x stops at the first failure), and in each module in
        the order the suite runs them (a test may rely on its module's order)."""
        by_line = self.lines.get(str(mutant.path.relative_to(ROOT)), {})
        covering: set[str] = set()
        first, last = mutant.covered_by
        for line in range(first, last + 1):
            covering.update(by_line.get(line, ()))
        modules: dict[str, list[str]] = {}
        for test in self.order:
            if test in covering:
                modules.setdefault(test.split("::")[0], []).append(test)
        cost = {m: sum(self.durations[t] for t in tests) for m, tests in modules.items()}
        return [t for m in sorted(modules, key=cost.__getitem__) for t in modules[m]]


def measure(copies: list[Path], workdir: Path) -> Coverage:
    """The coverage pass, the test files shared out between the copies (one process each)."""
    runs: list[tuple[Path, subprocess.Popen[bytes]]] = []
    try:
        for n, copy in enumerate(copies):
            out = workdir / f"coverage-{n}.json"
            out.write_text(json.dumps(TESTS[n :: len(copies)]))
            command = [sys.executable, str(Path(__file__).resolve()), "--coverage-pass"]
            process = subprocess.Popen(
                [*command, str(copy), str(out)], env=_environment(), stdout=subprocess.DEVNULL
            )
            runs.append((out, process))
        for _, process in runs:
            if process.wait() != 0:
                raise SystemExit("the coverage pass crashed")
    finally:
        for _, process in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
    code, order, failed = 0, [], []
    durations: dict[str, float] = {}
    lines: dict[str, dict[int, list[str]]] = {}
    for out, _ in runs:
        part = json.loads(out.read_text())
        code = code or part["code"]
        order += part["order"]
        failed += part["failed"]
        durations.update(part["durations"])
        for path, by_line in part["lines"].items():
            mine = lines.setdefault(path, {})
            for n, tests in by_line.items():
                mine.setdefault(int(n), []).extend(tests)
    flaky: set[str] = set()
    if code != 0:
        listed = "".join(f"\n  {test}" for test in failed)
        again = subprocess.run(
            [sys.executable, "-m", "pytest", *_pytest_args(failed)] if failed else ["false"],
            cwd=copies[0],
            env={**_environment(), "PYTHONPATH": str(copies[0])},
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if again.returncode != 0:
            raise SystemExit(
                f"the tests fail without any mutant (pytest exit {code}): fix them first{listed}"
            )
        # failed once, passed when run again (a timing test on a busy machine): never asked
        print(f"  left out, failed once then passed (flaky):{listed}", flush=True)
        flaky = set(failed)
    if not lines:
        raise SystemExit(
            "the tests never ran the copy's resilient_aws: is it importable from there?"
        )
    for by_line in lines.values():
        for n, tests in by_line.items():
            by_line[n] = [t for t in tests if t not in flaky]
    return Coverage([t for t in order if t not in flaky], durations, lines)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


# -- running the mutants: one forking server per worker ------------------------------------------


def serve(copy: Path) -> int:
    """Read mutants (JSON lines) on stdin, run each one's tests in a forked child on ``copy``,
    answer with its outcome. The heavy imports are made once, before forking."""
    import boto3  # noqa: F401 - preloaded for every child
    import botocore.session  # noqa: F401
    import hypothesis  # noqa: F401
    import moto  # noqa: F401
    import pytest
    import tenacity  # noqa: F401

    killer = copy / ".mutate-killer"  # the test that killed the mutant, written by the child

    class FirstFailure:
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if report.failed and not killer.exists():
                killer.write_text(report.nodeid)

    _enter(copy)
    for line in sys.stdin:
        job = json.loads(line)
        target = copy / job["path"]
        original = target.read_bytes()
        compiled = Path(importlib.util.cache_from_source(str(target)))
        started = time.monotonic()
        try:
            target.write_bytes(
                original[: job["start"]] + job["replacement"].encode() + original[job["end"] :]
            )
            compiled.unlink(missing_ok=True)  # never a stale .pyc of another mutant
            # -x: the first failure kills the mutant; a test that hangs fails after 10 s
            # (pytest-timeout), a child that hangs anyway is killed at the job's timeout
            args = _pytest_args(["-x", "-o", "timeout=10", *job["tests"]])
            killer.unlink(missing_ok=True)
            outcome = _run_child(
                functools.partial(pytest.main, args, plugins=[FirstFailure()]), job["timeout"]
            )
        finally:
            target.write_bytes(original)
            compiled.unlink(missing_ok=True)
        answer = {
            "outcome": outcome,
            "seconds": time.monotonic() - started,
            "killer": killer.read_text() if killer.exists() else None,
        }
        print(json.dumps(answer), flush=True)
    return 0


def _run_child(run: Callable[[], object], timeout: float) -> str:
    pid = os.fork()
    if pid == 0:  # the child: run the tests, say nothing, exit with pytest's code
        code = 3
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            result = run()
            code = int(result) if isinstance(result, int) else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.005)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "survived"
    if code in (1, 2, 3) or code < 0:  # tests failed, collection or pytest broke, a crash
        return "killed"
    return f"error {code}"  # pytest found no test to run: a bug of this script


class Workers:
    """``jobs`` servers, each on its own copy of the project."""

    def __init__(self, copies: list[Path]) -> None:
        self.lock = threading.Lock()
        self.stopping = False
        self.servers = [
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve", str(copy)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_environment(),
                text=True,
                start_new_session=True,  # its own process group, with its children
            )
            for copy in copies
        ]

    def run_all(
        self,
        jobs: list[tuple[Mutant, list[str], float]],
        done: Callable[[Mutant, str, float], None],
    ) -> None:
        queue = list(reversed(jobs))
        # The tests that killed mutants of a function (or a file) kill its next ones likeliest:
        # they run first, the most recent first.
        killers: dict[tuple[Path, str], list[str]] = {}

        def first_the_killers(mutant: Mutant, tests: list[str]) -> list[str]:
            known = [
                *killers.get((mutant.path, mutant.function), ()),
                *killers.get((mutant.path, ""), ()),
            ]
            chosen = set(tests)
            front = list(dict.fromkeys(t for t in known if t in chosen))
            return front + [t for t in tests if t not in set(front)]

        def learn(mutant: Mutant, test: str) -> None:
            for key in ((mutant.path, mutant.function), (mutant.path, "")):
                seen = killers.setdefault(key, [])
                if test in seen:
                    seen.remove(test)
                seen.insert(0, test)
                del seen[8:]

        def work(server: subprocess.Popen[str]) -> None:
            assert server.stdin is not None
            assert server.stdout is not None
            while True:
                with self.lock:
                    if self.stopping or not queue:
                        return
                    mutant, tests, timeout = queue.pop()
                    tests = first_the_killers(mutant, tests)
                job = {
                    "path": str(mutant.path.relative_to(ROOT)),
                    "start": mutant.start,
                    "end": mutant.end,
                    "replacement": mutant.replacement,
                    "tests": tests,
                    "timeout": timeout,
                }
                try:
                    server.stdin.write(json.dumps(job) + "\n")
                    server.stdin.flush()
                    answer = server.stdout.readline()
                except (BrokenPipeError, OSError):
                    answer = ""
                if not answer:
                    with self.lock:
                        self.stopping = True
                    return
                outcome = json.loads(answer)
                if outcome["killer"]:
                    with self.lock:
                        learn(mutant, outcome["killer"])
                done(mutant, outcome["outcome"], outcome["seconds"])

        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in self.servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # a signal in the main thread interrupts the wait

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
        for server in self.servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)  # the server and its test child
            server.wait()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    mutants = collect(args.all, args.only)
    if args.list:
        for mutant in mutants:
            print(mutant.label())
        print(f"{len(mutants)} mutants")
        return 0
    if not mutants:
        print("no mutant", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    jobs = max(1, args.jobs)
    workdir = Path(tempfile.mkdtemp(prefix="resilient-aws-mutate-"))
    results: dict[Mutant, str] = {}
    spent: dict[str, float] = {}  # seconds of test runs, by outcome
    started = time.monotonic()
    workers: Workers | None = None
    try:
        copies = []
        for n in range(jobs):
            copies.append(workdir / f"w{n}")
            shutil.copytree(ROOT, copies[-1], ignore=IGNORED)
        print(f"{len(mutants)} mutants; measuring which tests run which line...", flush=True)
        coverage = measure(copies, workdir)
        print(
            f"  {len(coverage.order)} tests, {sum(coverage.durations.values()):.0f} s of tests, "
            f"measured with coverage in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        work: list[tuple[Mutant, list[str], float]] = []
        for mutant in mutants:
            tests = coverage.tests_for(mutant)
            if not tests:
                results[mutant] = "uncovered"
                continue
            seconds = sum(coverage.durations[t] for t in tests)
            work.append((mutant, tests, 10.0 + 2 * seconds))
        total = len(mutants)

        def done(mutant: Mutant, outcome: str, seconds: float) -> None:
            results[mutant] = outcome
            spent[outcome] = spent.get(outcome, 0.0) + seconds
            if outcome != "killed":
                print(f"  {outcome} ({seconds:.1f} s): {mutant.label()}", flush=True)
            if len(results) % 50 == 0 or len(results) == total:
                print(f"[{len(results)}/{total}] {time.monotonic() - started:.0f} s", flush=True)

        workers = Workers(copies)
        workers.run_all(work, done)
        if len(results) < total:
            print("a worker died: not every mutant was run", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("interrupted: the working tree was never modified", file=sys.stderr)
        return 130
    finally:
        if workers is not None:
            workers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    by_outcome = ", ".join(f"{outcome} {s:.0f} s" for outcome, s in sorted(spent.items()))
    print(f"time in test runs (all workers): {by_outcome}")
    return report(mutants, results, time.monotonic() - started, args.fail_under)


def report(
    mutants: list[Mutant], results: dict[Mutant, str], seconds: float, fail_under: float
) -> int:
    counts = Counter(results.values())
    survivors = [m for m in mutants if results[m] not in ("killed", "timeout")]
    print()
    if survivors:
        print("survivors (uncovered: no test runs the line):")
        for mutant in survivors:
            print(f"  {results[mutant]:9} {mutant.label()}")
        print()
    for path in TARGETS:
        mine = [m for m in mutants if m.path == path]
        if mine:
            killed = sum(results[m] in ("killed", "timeout") for m in mine)
            print(f"  {path.relative_to(ROOT)}: {killed}/{len(mine)} killed")
    killed = counts["killed"] + counts["timeout"]
    rate = 100.0 * killed / len(mutants)
    print(
        f"mutation score: {killed}/{len(mutants)} killed ({rate:.1f}%) "
        f"[{counts['timeout']} by a hang; {counts['survived']} survived, "
        f"{counts['uncovered']} uncovered] in {seconds:.0f} s"
    )
    return 1 if rate < fail_under else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation testing of the retry core.")
    parser.add_argument("--jobs", type=int, default=2, help="workers (default 2)")
    parser.add_argument("--all", action="store_true", help="every function, not only CRITICAL")
    parser.add_argument("--only", action="append", default=[], help="FILE.py:Qual.name prefix")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--fail-under", type=float, default=0.0, help="minimum kill rate, %%")
    parser.add_argument("--coverage-pass", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.coverage_pass:
        return coverage_pass(*args.coverage_pass)
    if args.serve:
        return serve(args.serve)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
