"""``@idempotent``: run a function once per key, hand every repeat the stored result."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

from botocore.exceptions import ClientError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import (
    ConfigurationError,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyKeyError,
    IdempotencyResultError,
    IdempotencyValidationError,
    RetryError,
)
from resilient_aws.idempotency._cache import CachedResult, ResultCache
from resilient_aws.idempotency._codec import decode_result, encode_result, result_type_of
from resilient_aws.idempotency._key import KeySelector, KeySpec, prepare_payload
from resilient_aws.idempotency._record import COMPLETED, INPROGRESS, IdempotencyRecord
from resilient_aws.idempotency._store import IdempotencyStore, RecordVanishedError
from resilient_aws.retry import ErrorClass, RetryPolicy

__all__ = ["idempotent"]

logger = logging.getLogger("resilient_aws.idempotency")

F = TypeVar("F", bound=Callable[..., Any])

OnInProgress = Literal["raise", "wait"]
OnMissingKey = Literal["raise", "run"]

# A record that should have let the conditional put through (expired, or its lease over) is
# a race with another writer or clock skew: take the key again, a few times at most.
_RACE_ATTEMPTS = 3

_DEFAULT_WAIT = RetryPolicy(max_attempts=60, base_delay=0.1, max_delay=2.0, max_elapsed=60.0)


def idempotent(
    store: IdempotencyStore,
    *,
    key: KeySelector = None,
    payload: str | None = None,
    validate: str | None = None,
    ttl_s: int = 3600,
    lease_s: float = 900.0,
    key_prefix: str | None = None,
    on_missing_key: OnMissingKey = "raise",
    on_in_progress: OnInProgress = "raise",
    wait: RetryPolicy | None = None,
    cache_size: int = 0,
    hash_function: str = "md5",
    result_type: Any = None,
    margin_s: float = 1.0,
) -> Callable[[F], F]:
    """Make a function (sync or ``async def``, a Lambda handler or any method) run once per key.

    The first call with a key takes it with one conditional ``PutItem`` and stores the result
    with one ``UpdateItem``; a repeat costs one ``PutItem`` (the condition fails and DynamoDB
    returns the stored record with it) or nothing with ``cache_size``. If the function raises,
    the key is released so that a retry runs again. If it returns a result that cannot be stored
    (not JSON, over the 400 KB item limit without the store's ``payloads``),
    :class:`IdempotencyResultError`, and the key stays taken until the record expires: the side
    effect ran, and repeats raise the same error.

    - ``payload``: the parameter whose value is the payload (default: the first parameter,
      ``self``/``cls`` skipped, so ``event`` for a Lambda handler).
    - ``key``: a JMESPath expression over the payload (``"body.order_id"``,
      ``"powertools_json(body).id"``), a callable of the payload, or ``None`` for all of it.
      If it selects nothing, ``on_missing_key="raise"`` raises :class:`IdempotencyKeyError`;
      ``"run"`` runs the function without idempotency (logged).
    - ``validate``: JMESPath over the payload; a repeat whose selection differs raises
      :class:`IdempotencyValidationError` instead of replaying another payload's result.
    - ``ttl_s``: how long a completed result is replayed (the record's TTL).
    - ``lease_s``: outside Lambda, how long an unfinished call holds its key before a crashed
      caller's key may run again; in Lambda the invocation's remaining time is the lease.
    - ``on_in_progress``: ``"raise"`` (:class:`IdempotencyInProgressError`) or ``"wait"``: poll
      with ``wait`` (a :class:`RetryPolicy`, jittered backoff) until the first call completes,
      within the Lambda deadline, and return its result. The table's own errors are not waited
      on: they come out as the store's policy raised them.
    - ``key_prefix``: a stable prefix (``"orders"`` makes ``orders#<md5>``) that survives renaming
      the function; the default is Powertools' ``{function name}.{module}.{qualname}`` in
      Lambda and ``{POWERTOOLS_SERVICE_NAME}.{module}.{qualname}`` outside it (with neither,
      ``test-func`` and a ``UserWarning``: services sharing the table would share keys).
    - ``result_type``: what to rebuild a stored result as (default: the return annotation;
      dataclasses and pydantic models round-trip).
    - ``margin_s``: the store's retries stop this long before the Lambda timeout.
    """
    if on_in_progress not in ("raise", "wait"):
        raise ConfigurationError(
            "on_in_progress", f"must be 'raise' or 'wait', got {on_in_progress!r}"
        )
    if on_missing_key not in ("raise", "run"):
        raise ConfigurationError(
            "on_missing_key", f"must be 'raise' or 'run', got {on_missing_key!r}"
        )
    if not isinstance(store, IdempotencyStore):
        raise ConfigurationError("store", f"must be an IdempotencyStore, got {type(store)!r}")
    if not isinstance(ttl_s, int) or isinstance(ttl_s, bool) or ttl_s <= 0:
        raise ConfigurationError("ttl_s", f"must be a positive int of seconds, got {ttl_s!r}")
    if not isinstance(lease_s, (int, float)) or lease_s <= 0:
        raise ConfigurationError("lease_s", f"must be > 0 seconds, got {lease_s!r}")
    if not isinstance(cache_size, int) or cache_size < 0:
        raise ConfigurationError("cache_size", f"must be an int >= 0, got {cache_size!r}")

    def decorate(fn: F) -> F:
        runner = _Idempotent(
            fn,
            store,
            _Options(
                key=key,
                payload=payload,
                validate=validate,
                ttl_s=ttl_s,
                lease_s=float(lease_s),
                key_prefix=key_prefix,
                on_missing_key=on_missing_key,
                on_in_progress=on_in_progress,
                wait=wait,
                cache_size=cache_size,
                hash_function=hash_function,
                result_type=result_type,
                margin_s=margin_s,
            ),
        )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await runner.arun(args, kwargs)

            async_wrapper.idempotency = runner  # type: ignore[attr-defined]
            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return runner.run(args, kwargs)

        wrapper.idempotency = runner  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


@lean_dataclass(frozen=True)
class _Options:
    key: KeySelector
    payload: str | None
    validate: str | None
    ttl_s: int
    lease_s: float
    key_prefix: str | None
    on_missing_key: OnMissingKey
    on_in_progress: OnInProgress
    wait: RetryPolicy | None
    cache_size: int
    hash_function: str
    result_type: Any
    margin_s: float


@lean_dataclass
class _Call:
    """One call's state; never stored on the decorator."""

    key: str
    validation: str | None
    context: Any
    policy: RetryPolicy
    owner: str
    native: bool = False  # an async call on the store's async client (else in a thread)


class _Replay:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_ACQUIRED = object()
_AGAIN = object()
_NO_KEY = object()


class _StillInProgressError(IdempotencyInProgressError):
    """Raised inside the wait loop; the wait policy's classifier retries it."""


class _UnstorableResultError(Exception):
    """The function ran, but its result cannot be stored; ``reason`` says why (no values)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _wait_classifier(error: BaseException) -> ErrorClass:
    """Only "still in progress" is waited on. The table's errors were already retried by the
    store's own policy and reach the caller as they are (a throttled table whose retries gave
    up is a ``RetryError`` naming the throttle): retrying them here would multiply the store's
    attempts, and reporting them as a call in progress would hide that nothing runs."""
    if isinstance(error, _StillInProgressError):
        return ErrorClass(True, "transient", "IdempotencyInProgress")
    return ErrorClass(False, "permanent", type(error).__name__)


class _Idempotent:
    """The decorator's machinery for one function (shared by every call, holds no call state)."""

    def __init__(self, fn: Callable[..., Any], store: IdempotencyStore, options: _Options) -> None:
        self.fn = fn
        self.store = store
        self.options = options
        qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        self.name = f"{getattr(fn, '__module__', None) or type(fn).__module__}.{qualname}"
        self.signature = inspect.signature(fn)
        self.payload_name = options.payload or _default_payload(self.signature, self.name)
        if self.payload_name not in self.signature.parameters:
            raise ConfigurationError(
                "payload", f"{self.name} has no parameter {self.payload_name!r}"
            )
        self.payload_is_varargs = (
            self.signature.parameters[self.payload_name].kind is inspect.Parameter.VAR_POSITIONAL
        )
        self.spec = KeySpec.build(
            key=options.key,
            validate=options.validate,
            hash_function=options.hash_function,
            key_prefix=options.key_prefix,
            function_path=self.name,
        )
        self.cache = ResultCache(options.cache_size) if options.cache_size else None
        base_wait = options.wait or dataclasses.replace(
            _DEFAULT_WAIT, sleep=store.policy.sleep, clock=store.policy.clock
        )
        self.wait_policy = dataclasses.replace(base_wait, classifier=_wait_classifier, budget=None)
        self._result_type: Any = options.result_type

    # -- sync ----------------------------------------------------------------------------------

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = self.prepare(args, kwargs)
        if call is _NO_KEY:
            return self.fn(*args, **kwargs)
        assert isinstance(call, _Call)
        cached = self.from_cache(call)
        if cached is not None:
            return cached.value
        outcome = self.acquire(call)
        if isinstance(outcome, _Replay):
            return outcome.value
        try:
            result = self.fn(*args, **kwargs)
        except Exception:
            self.release(call)
            raise
        try:
            self.complete(call, self.encode(call, result))
        except _UnstorableResultError as unstorable:
            # The side effect happened: never give the key back (the queue would deliver the
            # event again and run it twice). Hold it, marked, until the record expires.
            self.hold_unstorable(call, unstorable.reason)
            raise self.unstorable_error(call, unstorable) from unstorable.__cause__
        return result

    def acquire(self, call: _Call) -> Any:
        if self.options.on_in_progress == "raise":
            return self.try_acquire(call, wait=False)
        policy = self.wait_policy
        if call.context is not None:
            policy = policy.for_lambda(call.context, margin_s=self.options.margin_s)
        try:
            return policy.call(self.try_acquire, call, wait=True)
        except RetryError as error:
            if not isinstance(error.last_error, _StillInProgressError):
                raise  # the table's error, not the wait's: see _wait_classifier
            raise self.still_in_progress(call, error) from error

    def try_acquire(self, call: _Call, *, wait: bool) -> Any:
        for _ in range(_RACE_ATTEMPTS):
            try:
                existing = self.store.put_in_progress(call.key, **self.take(call))
            except RecordVanishedError:
                continue
            verdict = self.verdict(call, existing, wait=wait)
            if verdict is not _AGAIN:
                return verdict
        raise self.race_lost(call)

    def release(self, call: _Call) -> None:
        try:
            self.store.release(call.key, owner=call.owner, policy=call.policy)
        except Exception as error:
            self.not_released(call, error)

    def hold_unstorable(self, call: _Call, reason: str) -> None:
        """Keep the key of a call that ran but whose result cannot be stored, until the record
        expires (``ttl_s``): repeats raise :class:`IdempotencyResultError` instead of running."""
        expires_at = int(self.store.clock()) + self.options.ttl_s
        try:
            held = self.store.hold_unstorable(
                call.key, owner=call.owner, reason=reason, expires_at=expires_at, policy=call.policy
            )
        except Exception as error:
            self.not_held(call, error)
            return
        self.held(call, held)

    def complete(self, call: _Call, data: str) -> None:
        """Store the result. If the table refuses the record itself (``ValidationException``:
        DynamoDB found it larger than the size check did), :class:`_UnstorableResultError`;
        any other failure (the table down past every retry) is logged and the caller gets its
        result: the record stays in progress until its lease ends."""
        expires_at = int(self.store.clock()) + self.options.ttl_s
        try:
            self.store.complete(
                call.key,
                data=data,
                expires_at=expires_at,
                validation=call.validation,
                policy=call.policy,
                owner=call.owner,
            )
        except Exception as error:
            self.not_completed(call, error)
            return
        self.completed(call, expires_at, data)

    # -- what the store's answers mean, for both paths -------------------------------------------

    def take(self, call: _Call) -> dict[str, Any]:
        """The arguments of the store's ``put_in_progress`` for ``call``, now."""
        now = self.store.clock()
        lease_until_ms = self.lease_until_ms(call, now)
        return {
            "owner": call.owner,
            # The take condition treats an expired record as free: an in-progress record must
            # not expire (ttl_s) before its lease ends, or a duplicate runs meanwhile.
            "expires_at": max(int(now) + self.options.ttl_s, lease_until_ms // 1000 + 1),
            "in_progress_until_ms": lease_until_ms,
            "validation": call.validation,
            "policy": call.policy,
        }

    def verdict(self, call: _Call, existing: IdempotencyRecord | None, *, wait: bool) -> Any:
        return _ACQUIRED if existing is None else self.judge(call, existing, wait=wait)

    def race_lost(self, call: _Call) -> IdempotencyError:
        return IdempotencyError(
            f"{self.name}: the record changed under every attempt to take it", key=call.key
        )

    def not_released(self, call: _Call, error: BaseException) -> None:
        logger.warning(
            "%s: could not release idempotency key %s after the function failed (%s); "
            "it stays in progress until its lease ends",
            self.name,
            call.key,
            type(error).__name__,
        )

    def unstorable_error(
        self, call: _Call, unstorable: _UnstorableResultError
    ) -> IdempotencyResultError:
        return IdempotencyResultError(
            f"{self.name}: the function ran, but {unstorable.reason}; the key stays taken and "
            f"repeats raise IdempotencyResultError until the record expires "
            f"(ttl_s={self.options.ttl_s})",
            key=call.key,
        )

    def not_held(self, call: _Call, error: BaseException) -> None:
        logger.error(
            "%s: the function ran but its result cannot be stored under idempotency key %s, "
            "and the key could not be marked (%s); repeats are refused until the lease ends",
            self.name,
            call.key,
            type(error).__name__,
        )

    def held(self, call: _Call, held: bool) -> None:
        if not held:
            logger.error(
                "%s: the function ran but its result cannot be stored under idempotency key %s; "
                "the key was taken over by another call after this call's lease ended",
                self.name,
                call.key,
            )

    def not_completed(self, call: _Call, error: BaseException) -> None:
        """The table refused the record itself (``ValidationException``): raise
        :class:`_UnstorableResultError`. Any other failure: the side effect happened, so hand
        the caller its result rather than an error that would make it (or its queue) run the
        function again. The record stays in progress until its lease ends, so duplicates
        meanwhile are still refused."""
        if isinstance(error, ClientError) and _code(error) == "ValidationException":
            raise _UnstorableResultError(
                f"DynamoDB refused its result's record ({_code(error)})"
            ) from error
        logger.error(
            "%s: the function ran but its result could not be stored under idempotency key "
            "%s (%s); repeats are refused until the lease ends",
            self.name,
            call.key,
            type(error).__name__,
        )

    def completed(self, call: _Call, expires_at: int, data: str) -> None:
        if self.cache is not None:
            self.cache.put(call.key, CachedResult(expires_at, call.validation, data))

    # -- async ---------------------------------------------------------------------------------
    #
    # With the store's async_client, the store's requests are awaited on the event loop (the
    # store's async driver); without one, the sync steps above run in a worker thread.

    async def arun(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = self.prepare(args, kwargs)
        if call is _NO_KEY:
            return await self.fn(*args, **kwargs)
        assert isinstance(call, _Call)
        cached = self.from_cache(call)
        if cached is not None:
            return cached.value
        call.native = self.store.async_client is not None
        outcome = await self.aacquire(call)
        if isinstance(outcome, _Replay):
            return outcome.value
        try:
            result = await self.fn(*args, **kwargs)
        except Exception:
            await self.arelease(call)
            raise
        try:
            await self.acomplete(call, self.encode(call, result))
        except _UnstorableResultError as unstorable:
            await self.ahold_unstorable(call, unstorable.reason)
            raise self.unstorable_error(call, unstorable) from unstorable.__cause__
        return result

    async def aacquire(self, call: _Call) -> Any:
        if self.options.on_in_progress == "raise":
            return await self.atry_acquire(call, wait=False)
        policy = self.wait_policy
        if call.context is not None:
            policy = policy.for_lambda(call.context, margin_s=self.options.margin_s)

        async def attempt() -> Any:
            return await self.atry_acquire(call, wait=True)

        try:
            return await policy.acall(attempt)
        except RetryError as error:
            if not isinstance(error.last_error, _StillInProgressError):
                raise  # the table's error, not the wait's: see _wait_classifier
            raise self.still_in_progress(call, error) from error

    def still_in_progress(self, call: _Call, error: RetryError) -> IdempotencyInProgressError:
        return IdempotencyInProgressError(
            f"{self.name}: still in progress after waiting {error.attempts} time(s)",
            key=call.key,
        )

    async def atry_acquire(self, call: _Call, *, wait: bool) -> Any:
        """``try_acquire`` awaited. A task cancelled meanwhile cannot take back a write that may
        be on its way: the take runs to its end, shielded, and gives the key back, so a call
        that never ran does not hold its key for a whole lease."""
        import asyncio

        taking = asyncio.ensure_future(
            self.atake(call, wait=wait)
            if call.native
            else asyncio.to_thread(self.try_acquire, call, wait=wait)
        )
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            outcomes = await asyncio.gather(taking, return_exceptions=True)
            if outcomes[0] is _ACQUIRED:
                await self.arelease(call)
            raise

    async def atake(self, call: _Call, *, wait: bool) -> Any:
        """``try_acquire`` on the store's async client."""
        for _ in range(_RACE_ATTEMPTS):
            try:
                existing = await self.store.aput_in_progress(call.key, **self.take(call))
            except RecordVanishedError:
                continue
            verdict = self.verdict(call, existing, wait=wait)
            if verdict is not _AGAIN:
                return verdict
        raise self.race_lost(call)

    async def arelease(self, call: _Call) -> None:
        if not call.native:
            import asyncio

            await asyncio.to_thread(self.release, call)
            return
        try:
            await self.store.arelease(call.key, owner=call.owner, policy=call.policy)
        except Exception as error:
            self.not_released(call, error)

    async def ahold_unstorable(self, call: _Call, reason: str) -> None:
        if not call.native:
            import asyncio

            await asyncio.to_thread(self.hold_unstorable, call, reason)
            return
        expires_at = int(self.store.clock()) + self.options.ttl_s
        try:
            held = await self.store.ahold_unstorable(
                call.key, owner=call.owner, reason=reason, expires_at=expires_at, policy=call.policy
            )
        except Exception as error:
            self.not_held(call, error)
            return
        self.held(call, held)

    async def acomplete(self, call: _Call, data: str) -> None:
        if not call.native:
            import asyncio

            await asyncio.to_thread(self.complete, call, data)
            return
        expires_at = int(self.store.clock()) + self.options.ttl_s
        try:
            await self.store.acomplete(
                call.key,
                data=data,
                expires_at=expires_at,
                validation=call.validation,
                policy=call.policy,
                owner=call.owner,
            )
        except Exception as error:
            self.not_completed(call, error)
            return
        self.completed(call, expires_at, data)

    # -- shared steps --------------------------------------------------------------------------

    def prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | object:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        value = bound.arguments.get(self.payload_name)
        if self.payload_is_varargs:
            value = value[0] if value else None
        data = prepare_payload(value)
        key = self.spec.idempotency_key(data)
        if key is None:
            if self.options.on_missing_key == "raise":
                raise IdempotencyKeyError(
                    f"{self.name}: the key {_describe(self.options.key)} selected nothing from "
                    f"the payload"
                )
            logger.warning(
                "%s: the key %s selected nothing; running without idempotency",
                self.name,
                _describe(self.options.key),
            )
            return _NO_KEY
        context = _lambda_context(bound.arguments.values())
        policy = self.store.policy
        if context is not None:
            policy = policy.for_lambda(context, margin_s=self.options.margin_s)
        return _Call(
            key=key,
            validation=self.spec.validation_hash(data),
            context=context,
            policy=policy,
            owner=uuid.uuid4().hex,
        )

    def from_cache(self, call: _Call) -> _Replay | None:
        if self.cache is None:
            return None
        hit = self.cache.get(call.key, self.store.clock())
        if hit is None:
            return None
        self.check_validation(call, hit.validation)
        return _Replay(self.decode(call, hit.data))

    def judge(self, call: _Call, record: IdempotencyRecord, *, wait: bool) -> Any:
        """What an existing record means for this call: a replay, in progress, or try again."""
        self.check_validation(call, record.validation)
        now = self.store.clock()
        if record.expired(now):
            return _AGAIN
        if record.status == COMPLETED:
            if self.cache is not None:
                self.cache.put(
                    call.key, CachedResult(record.expires_at, record.validation, record.data)
                )
            return _Replay(self.decode(call, record.data))
        if record.status == INPROGRESS:
            if record.lease_over(now):
                return _AGAIN
            if record.error is not None:
                raise IdempotencyResultError(
                    f"{self.name}: an earlier call with this key ran, but its result could not "
                    f"be stored ({record.error}); repeats are refused until the record expires",
                    key=call.key,
                )
            error_type = _StillInProgressError if wait else IdempotencyInProgressError
            raise error_type(f"{self.name}: a call with this key is in progress", key=call.key)
        raise IdempotencyError(
            f"{self.name}: the record has an unknown status {record.status!r}", key=call.key
        )

    def check_validation(self, call: _Call, stored: str | None) -> None:
        if call.validation is not None and stored != call.validation:
            raise IdempotencyValidationError(
                f"{self.name}: a repeat of this key carries a different payload "
                f"(validated by {self.options.validate!r})",
                key=call.key,
            )

    def lease_until_ms(self, call: _Call, now: float) -> int:
        if call.context is not None:
            return int(now * 1000) + int(call.context.get_remaining_time_in_millis())
        return int((now + self.options.lease_s) * 1000)

    def encode(self, call: _Call, result: Any) -> str:
        """The result as the record's JSON text; :class:`_UnstorableResultError` (nothing written
        yet) if it has no JSON form, or would not fit in a DynamoDB item and the store has no
        ``payloads`` to put it in S3 (or it is over their ``max_bytes``)."""
        try:
            data = encode_result(result)
        except (TypeError, ValueError) as error:
            raise _UnstorableResultError(
                f"its {type(result).__name__} result cannot be stored as JSON "
                f"({type(error).__name__})"
            ) from error
        reason = self.store.unstorable(call.key, data, call.validation, call.owner)
        if reason is not None:
            raise _UnstorableResultError(reason)
        return data

    def decode(self, call: _Call, data: str | None) -> Any:
        if self._result_type is None:
            self._result_type = result_type_of(self.fn) or Any
        try:
            return decode_result(data, self._result_type)
        except Exception as error:
            raise IdempotencyResultError(
                f"{self.name}: the stored result cannot be rebuilt as {self._result_type!r} "
                f"({type(error).__name__})",
                key=call.key,
            ) from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _default_payload(signature: inspect.Signature, name: str) -> str:
    params = list(signature.parameters)
    if params and params[0] in ("self", "cls"):
        params = params[1:]
    if not params:
        raise ConfigurationError("payload", f"{name} takes no argument to take a key from")
    return params[0]


def _lambda_context(values: Any) -> Any:
    for value in values:
        if callable(getattr(value, "get_remaining_time_in_millis", None)):
            return value
    return None


def _describe(key: KeySelector) -> str:
    if key is None:
        return "(the whole payload)"
    if isinstance(key, str):
        return repr(key)
    return getattr(key, "__name__", "callable")


AsyncFn = Callable[..., Awaitable[Any]]
