"""What every command shares: the AWS session and clients, the retry policy, progress, reports."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from resilient_aws.cli._exit import FAILED, OK
from resilient_aws.cli._interrupt import StopRequest
from resilient_aws.cli._progress import Progress
from resilient_aws.retry import RetryPolicy

__all__ = ["Context"]


class Context:
    """One run of one command: parsed options, streams, and lazily made AWS clients.

    Clients come from a ``boto3.Session`` built from ``--profile`` and ``--region`` (the usual
    AWS credential chain otherwise), pointed at ``--endpoint-url`` when given. Credentials are
    never read, logged nor printed here: botocore resolves them when a request is signed.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        stdout: TextIO,
        stderr: TextIO,
        stop: StopRequest,
    ) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self.stop = stop
        self._clients: dict[str, Any] = {}
        self.json: bool = bool(getattr(args, "json", False))
        self.policy = RetryPolicy(
            max_attempts=int(getattr(args, "max_attempts", 10)), base_delay=0.05, max_delay=10.0
        )

    @functools.cached_property
    def session(self) -> Any:
        import boto3

        return boto3.Session(
            profile_name=getattr(self.args, "profile", None),
            region_name=getattr(self.args, "region", None),
        )

    def client(self, service: str) -> Any:
        """A client for ``service`` with ``--endpoint-url`` and botocore retries under the policy
        (one per service and run)."""
        if service not in self._clients:
            self._clients[service] = self._client(service)
        return self._clients[service]

    def _client(self, service: str) -> Any:
        endpoint_url = getattr(self.args, "endpoint_url", None)
        client = self.session.client(
            service, endpoint_url=endpoint_url, config=self.policy.botocore_config()
        )
        if endpoint_url is None:
            _check_region(self.session, service, client)
        return client

    def progress(
        self,
        label: str,
        *,
        total: int | None = None,
        approximate: bool = False,
        unit: str = "items",
    ) -> Progress:
        """A progress line on stderr: live on a terminal (not with ``-v``, whose log lines would
        tear it), a summary line otherwise; nothing with ``--no-progress``."""
        return Progress(
            label,
            total=total,
            approximate=approximate,
            unit=unit,
            stream=self.stderr,
            enabled=not getattr(self.args, "no_progress", False),
            live=False if getattr(self.args, "verbose", False) else None,
        )

    def report(
        self,
        report: Mapping[str, Any],
        text: Iterable[str],
        *,
        ok: bool,
        stream: TextIO | None = None,
        exit_code: int | None = None,
    ) -> int:
        """Write the report (one JSON object with ``--json``, else ``text``); return the exit code.

        The exit code is ``exit_code`` if given, else 0 when ``ok`` and 1 otherwise.
        """
        from resilient_aws._json import dumps

        code = exit_code if exit_code is not None else (OK if ok else FAILED)
        out = stream if stream is not None else self.stdout
        if self.json:
            out.write(dumps({**report, "ok": ok, "exit_code": code}) + "\n")
        else:
            for line in text:
                out.write(line + "\n")
        out.flush()
        return code


def _check_region(session: Any, service: str, client: Any) -> None:
    """Fail fast, as bad usage, on a region botocore does not know whose endpoint does not
    resolve either (``--region mars-1``): retrying a name that does not exist only wastes time.

    A known region is never looked up (a moto-backed run may have no DNS at all); an unknown
    one that resolves (a region newer than botocore) is used as given.
    """
    import socket
    from urllib.parse import urlsplit

    from resilient_aws.cli._exit import UsageError

    region = client.meta.region_name
    try:
        partition = client.meta.partition
        known = set(session.get_available_regions(service, partition_name=partition))
    except Exception:  # no endpoint data for this service: nothing to check against
        return
    if not known or region in known:
        return
    url = client.meta.endpoint_url
    host = urlsplit(url).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError):
        raise UsageError(
            f"region {region!r} is not a region botocore knows, and its endpoint {url} does not "
            "resolve: check --region, the profile's region or AWS_DEFAULT_REGION"
        ) from None
