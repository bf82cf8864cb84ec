"""An embedded moto server for tests, demos and notebooks (needs ``moto[server]``)."""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["DUMMY_CREDENTIALS", "MotoServer", "free_port"]

DUMMY_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


class MotoServer:
    """A running ``ThreadedMotoServer`` and a way to make clients for it.

    ``port=0`` (the default) lets the operating system choose a free port when the server binds,
    so two servers (or a server and anything else) never race for one; :attr:`port` and
    :attr:`endpoint_url` hold the real port once :meth:`start` returned.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        self.host = host
        self.port = port
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)

    @property
    def endpoint_url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has no port until it is started: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        import logging

        # werkzeug logs every request to stderr by default; a demo or test run wants none of it.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource created so far (moto's ``/moto-api/reset``)."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` against this server (dummy credentials)."""
        import boto3

        options: dict[str, Any] = {**DUMMY_CREDENTIALS, "endpoint_url": self.endpoint_url}
        options.update(kwargs)
        return boto3.client(service, **options)  # type: ignore[call-overload]

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
