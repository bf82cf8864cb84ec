"""Run the npm DynamoDB and Kinesis emulators (dynalite, kinesalite) for tests.

Both are stricter than moto on request validation. Install them with ``npm ci``
at the repository root, then::

    with dynalite() as ddb:
        boto3.client("dynamodb", endpoint_url=ddb.endpoint_url, ...)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = [
    "NODE_MODULES_ENV",
    "EmulatorError",
    "EmulatorNotFound",
    "NodeEmulator",
    "dynalite",
    "find_package",
    "kinesalite",
]

NODE_MODULES_ENV = "RESILIENT_AWS_NODE_MODULES"
_HOST = "127.0.0.1"
# Goes through the package's JS API rather than its CLI: kinesalite's CLI has no
# --host flag and would listen on every interface.
_BOOTSTRAP = (
    "const [, dir, port, opts] = process.argv;"
    "require(dir)(JSON.parse(opts)).listen(Number(port), %r);" % _HOST
)

Options = Mapping[str, "int | str | bool"]


class EmulatorError(RuntimeError):
    """The emulator process exited or did not accept connections in time."""


class EmulatorNotFound(RuntimeError):
    """Node.js or the emulator's npm package is not installed."""


def find_package(package: str, node_modules: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory of ``package`` inside a ``node_modules`` directory.

    Looks in ``node_modules`` if given, then ``$RESILIENT_AWS_NODE_MODULES``, then
    ``node_modules/`` in the current directory and each of its parents.
    """
    roots = [Path(p) for p in (node_modules, os.environ.get(NODE_MODULES_ENV)) if p]
    cwd = Path.cwd().resolve()
    roots += [d / "node_modules" for d in (cwd, *cwd.parents)]
    for root in roots:
        if (root / package / "package.json").is_file():
            return (root / package).resolve()
    raise EmulatorNotFound(
        f"npm package {package!r} not found (searched: {', '.join(map(str, roots))}); "
        f"run `npm ci` at the repository root or set {NODE_MODULES_ENV}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


class NodeEmulator:
    """One emulator subprocess, in memory, on a free localhost port."""

    def __init__(
        self,
        package: str,
        options: Options | None = None,
        *,
        node_modules: str | os.PathLike[str] | None = None,
        node: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        node_path = node or shutil.which("node")
        if node_path is None:
            raise EmulatorNotFound("`node` is not on PATH; install Node.js, then run `npm ci`")
        self.package = package
        self.package_dir = find_package(package, node_modules)
        self.options: dict[str, int | str | bool] = dict(options or {})
        self.startup_timeout = startup_timeout
        self.port = 0
        self._node = node_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` for boto3's ``endpoint_url``."""
        if self._proc is None:
            raise EmulatorError(f"{self.package} is not running")
        return f"http://{_HOST}:{self.port}"

    def start(self) -> NodeEmulator:
        """Start the process and wait until it accepts TCP connections."""
        if self._proc is not None:
            return self
        # Another process may take the port between _free_port() and node's bind.
        for attempt in range(3):
            try:
                self._spawn()
                return self
            except EmulatorError as exc:
                if attempt == 2 or "EADDRINUSE" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self.port = _free_port()
        # An unlinked temp file: no pipe to drain, nothing left on disk.
        self._log = tempfile.TemporaryFile()
        argv = [self._node, "-e", _BOOTSTRAP, str(self.package_dir), str(self.port)]
        self._proc = subprocess.Popen(
            [*argv, json.dumps(self.options)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode}")
            try:
                socket.create_connection((_HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self._fail(f"did not accept connections within {self.startup_timeout}s")
                time.sleep(0.05)

    def _fail(self, what: str) -> None:
        tail = self._output_tail()
        self.stop()
        raise EmulatorError(f"{self.package} on port {self.port} {what}; output:\n{tail}")

    def _output_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process, killing it if it outlives ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> NodeEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._proc is not None else "stopped"
        return f"<NodeEmulator {self.package} {state}>"


def dynalite(
    node_modules: str | os.PathLike[str] | None = None, options: Options | None = None
) -> NodeEmulator:
    """Start dynalite (DynamoDB) with tables switching state instantly."""
    defaults = {"createTableMs": 0, "deleteTableMs": 0, "updateTableMs": 0}
    opts = {**defaults, **(options or {})}
    return NodeEmulator("dynalite", opts, node_modules=node_modules).start()


def kinesalite(
    node_modules: str | os.PathLike[str] | None = None, options: Options | None = None
) -> NodeEmulator:
    """Start kinesalite (Kinesis) with streams switching state instantly."""
    defaults = {"createStreamMs": 0, "deleteStreamMs": 0, "updateStreamMs": 0}
    opts = {**defaults, **(options or {})}
    return NodeEmulator("kinesalite", opts, node_modules=node_modules).start()
