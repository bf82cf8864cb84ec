"""The clients the library makes when none is given: shared, made once, retried by the core.

``BatchWriter("orders")``, ``scan("orders")``, ``SqsSender(url)``... without ``client=`` used
to build a new boto3 client per call (tens of milliseconds, and a ``DescribeTable`` per writer)
with botocore's own retries on. Now each one takes the *default client* of its service: one per
service and environment (region, endpoint, profile, credentials, config files), or one per
service and ``session=`` (and one per ``region``/``endpoint_url`` asked for), made under a lock
(boto3 sessions are not thread-safe; clients are) with :meth:`RetryPolicy.botocore_config`
(botocore retries nothing: the core makes every retry).

A change of region or credentials in the environment gives a new client; a user's
``boto3.setup_default_session(...)`` is honoured. :func:`clear_default_clients` forgets them
all (a test that recreates a table with another key schema under the same name needs it: the
key schema is cached per client). :func:`on_default_client` lets
:func:`resilient_aws.testing.chaos_defaults` reach every one of them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["clear_default_clients", "default_client", "default_clients", "on_default_client"]

Listener = Callable[[str, Any], None]

# Environment variables botocore reads when it makes a client (region, endpoint, profile,
# config files); credentials are keyed by a digest, never kept in clear.
_ENVIRONMENT = (
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_lock = threading.RLock()
_by_environment: dict[tuple[Any, ...], Any] = {}
# per session: (service, region, endpoint_url) -> client
_by_session: weakref.WeakKeyDictionary[Any, dict[tuple[str, str | None, str | None], Any]] = (
    weakref.WeakKeyDictionary()
)
_listeners: list[Listener] = []


def _reader() -> Callable[[str], Any]:
    """A fast ``os.environ.get``: ``IdempotencyStore`` and ``Outbox`` look their default
    client up on every call. ``os.environ.get`` raises and catches a ``KeyError`` for every
    variable that is not set (most of these): read the encoded mapping behind it instead,
    raw values being as good as decoded ones in a key."""
    env = os.environ
    data = getattr(env, "_data", None)
    encode = getattr(env, "encodekey", None)
    if isinstance(data, dict) and callable(encode):
        return lambda name: data.get(encode(name))
    return env.get


def _environment_key(service: str, region: str | None, endpoint_url: str | None) -> tuple[Any, ...]:
    get = _reader()
    endpoint = get("AWS_ENDPOINT_URL_" + service.upper().replace("-", "_"))
    secrets = repr(tuple(get(name) for name in _CREDENTIALS))
    import boto3

    # A default session the user set up (boto3.setup_default_session) is theirs: keyed by
    # identity, and kept alive by the entry so that the identity is never reused.
    return (
        service,
        region,
        endpoint_url,
        id(boto3.DEFAULT_SESSION) if boto3.DEFAULT_SESSION is not None else None,
        endpoint,
        tuple(get(name) for name in _ENVIRONMENT),
        hashlib.sha256(secrets.encode()).hexdigest(),
    )


def _make(service: str, session: Any, region: str | None, endpoint_url: str | None) -> Any:
    from resilient_aws.retry import DEFAULT_POLICY

    options: dict[str, Any] = {"config": DEFAULT_POLICY.botocore_config()}
    if region:
        options["region_name"] = region
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return session.client(service, **options)


def _announce(service: str, client: Any) -> None:
    # Under _lock: a listener added now is either told here or sees the client in
    # default_clients(), never both nor neither.
    for listener in list(_listeners):
        listener(service, client)


def default_client(
    service: str,
    session: Any = None,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> Any:
    """The shared client of ``service`` for this environment (or for ``session``), made once.

    ``region`` and ``endpoint_url`` (when given) are passed to boto3 and are part of the key:
    the Lambda client of a function in another region is a default client of its own. Its
    config is the default policy's ``botocore_config()``: botocore retries nothing, every
    retry is the core's.
    """
    region = region or None
    endpoint_url = endpoint_url or None
    with _lock:
        if session is not None:
            clients = _by_session.setdefault(session, {})
            wanted = (service, region, endpoint_url)
            client = clients.get(wanted)
            if client is None:
                client = clients[wanted] = _make(service, session, region, endpoint_url)
                _announce(service, client)
            return client
        key = _environment_key(service, region, endpoint_url)
        entry = _by_environment.get(key)
        if entry is None:
            import boto3

            # The user's default session if they set one up, else a session of our own per
            # environment: boto3's default one caches the first credentials it resolved.
            made_from = boto3.DEFAULT_SESSION or boto3.session.Session()
            entry = _by_environment[key] = (
                made_from,
                _make(service, made_from, region, endpoint_url),
            )
            _announce(service, entry[1])
        return entry[1]


def default_clients() -> list[tuple[str, Any]]:
    """Every default client made so far (and not cleared), as ``(service, client)`` pairs."""
    with _lock:
        made = [(key[0], client) for key, (_, client) in _by_environment.items()]
        for clients in list(_by_session.values()):
            made.extend((wanted[0], client) for wanted, client in clients.items())
        return made


def clear_default_clients() -> None:
    """Forget every default client: the next call without ``client=`` makes a new one.

    For tests: a fresh client has an empty key-schema cache (a table recreated under the same
    name with another key) and picks up a new ``boto3.setup_default_session``.
    """
    with _lock:
        _by_environment.clear()
        _by_session.clear()


def on_default_client(listener: Listener) -> Callable[[], None]:
    """Call ``listener(service, client)`` for every default client made from now on, and
    for every one made already; returns a function that removes it."""
    with _lock:
        _listeners.append(listener)
        for service, client in default_clients():
            listener(service, client)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove
