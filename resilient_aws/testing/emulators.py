"""Run the npm DynamoDB and Kinesis emulators (dynalite, kinesalite) for tests.

Both validate requests more strictly than moto. Install them with ``npm ci`` at
the repository root, then ``with dynalite() as ddb: boto3.client("dynamodb",
endpoint_url=ddb.endpoint_url, ...)``.
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
from typing import IO, Any, NoReturn

NODE_MODULES_ENV = "RESILIENT_AWS_NODE_MODULES"
_HOST = "127.0.0.1"
# Uses the package's JS API, not its CLI: kinesalite's CLI has no --host flag
# and would listen on every interface. The marker line tells us *our* process
# bound the port, not some other listener that grabbed it first.
_READY = b"resilient_aws emulator listening"
_BOOTSTRAP = (
    "const [, d, p, h, o] = process.argv;"
    f"require(d)(JSON.parse(o)).listen(+p, h, () => console.log('{_READY.decode()}'))"
)

PathArg = str | os.PathLike[str] | None
Options = Mapping[str, int | str | bool]


class EmulatorError(RuntimeError):
    """The emulator process exited or did not accept connections in time."""


class EmulatorNotFound(RuntimeError):  # noqa: N818 - public name
    """Node.js or the emulator's npm package is not installed."""


def find_package(package: str, node_modules: PathArg = None) -> Path:
    """Return ``<node_modules>/<package>``, searching ``node_modules``, then
    ``$RESILIENT_AWS_NODE_MODULES``, then ``node_modules/`` in the current
    directory and each of its parents."""
    roots = [Path(p) for p in (node_modules, os.environ.get(NODE_MODULES_ENV)) if p]
    cwd = Path.cwd().resolve()
    roots += [d / "node_modules" for d in (cwd, *cwd.parents)]
    for root in roots:
        if (root / package / "package.json").is_file():
            return (root / package).resolve()
    raise EmulatorNotFound(
        f"npm package {package!r} not found in {', '.join(map(str, roots))}; "
        f"run `npm ci` at the repository root or set {NODE_MODULES_ENV}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


class NodeEmulator:
    """One emulator subprocess, in memory, on a free localhost port."""

    def __init__(
        self,
        package: str,
        options: Options | None = None,
        *,
        node_modules: PathArg = None,
        startup_timeout: float = 20.0,
    ) -> None:
        node = shutil.which("node")
        if node is None:
            raise EmulatorNotFound("`node` is not on PATH: install Node.js, then run `npm ci`")
        self.package = package
        self.package_dir = find_package(package, node_modules)
        self.options = dict(options or {})
        self.startup_timeout = startup_timeout
        self.port = 0
        self._node = node
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``, for boto3's ``endpoint_url``."""
        if self._proc is None:
            raise EmulatorError(f"{self.package} is not running")
        return f"http://{_HOST}:{self.port}"

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` against this emulator (dummy credentials)."""
        import boto3

        from resilient_aws.testing._moto import DUMMY_CREDENTIALS

        options: dict[str, Any] = {**DUMMY_CREDENTIALS, "endpoint_url": self.endpoint_url}
        options.update(kwargs)
        return boto3.client(service, **options)  # type: ignore[call-overload]

    def start(self) -> NodeEmulator:
        """Start the process (if not running) and wait until it accepts connections."""
        attempt = 0
        while self._proc is None:
            attempt += 1
            try:
                self._spawn()
            except EmulatorError as exc:
                # Someone may grab the port between _free_port() and node's bind.
                if attempt == 3 or "EADDRINUSE" not in str(exc):
                    raise
        return self

    def _spawn(self) -> None:
        self.port = _free_port()
        # An unlinked temp file: no pipe to drain, nothing left on disk; closed in stop().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        args = [str(self.package_dir), str(self.port), _HOST, json.dumps(self.options)]
        self._proc = proc = subprocess.Popen(
            [self._node, "-e", _BOOTSTRAP, *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if proc.poll() is not None:
                self._fail(f"exited with code {proc.returncode}")
            try:
                if _READY in self._output():
                    socket.create_connection((_HOST, self.port), timeout=0.5).close()
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._fail(f"did not accept connections within {self.startup_timeout}s")
            time.sleep(0.05)

    def _output(self) -> bytes:
        if self._log is None:
            return b""
        # pread: seeking would move the file offset that the child writes at.
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def _fail(self, what: str) -> NoReturn:
        tail = self._output()[-4000:].decode(errors="replace")
        self.stop()
        raise EmulatorError(f"{self.package} on port {self.port} {what}; output:\n{tail}")

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process, and kill it if it outlives ``timeout`` seconds."""
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


def _instant(noun: str) -> dict[str, int | str | bool]:
    return {f"{verb}{noun}Ms": 0 for verb in ("create", "delete", "update")}


def dynalite(node_modules: PathArg = None, options: Options | None = None) -> NodeEmulator:
    """Start dynalite (DynamoDB); tables leave CREATING/UPDATING/DELETING at once."""
    opts = {**_instant("Table"), **(options or {})}
    return NodeEmulator("dynalite", opts, node_modules=node_modules).start()


def kinesalite(node_modules: PathArg = None, options: Options | None = None) -> NodeEmulator:
    """Start kinesalite (Kinesis); streams leave CREATING/UPDATING/DELETING at once."""
    opts = {**_instant("Stream"), **(options or {})}
    return NodeEmulator("kinesalite", opts, node_modules=node_modules).start()
