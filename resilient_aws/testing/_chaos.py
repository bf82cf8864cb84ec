"""Make a boto3 client behave like AWS under load: throttles, 5xx, resets, partial batch failures.

Faults are injected through botocore's event system at the SDK boundary, after botocore's own
retry layer, so what the caller sees is what reaches application code in production when AWS is
struggling. Entries reported as failed in a batch response were really withheld from the
request: the service (moto, an emulator, AWS) never applied them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import threading
from collections.abc import Callable, Collection, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import field
from typing import Any, NamedTuple

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from resilient_aws._dataclass import lean_dataclass
from resilient_aws.errors import ConfigurationError

__all__ = ["Chaos", "ChaosStats", "chaos"]

_CONTEXT_KEY = "resilient_aws.chaos"
_ALL_WITHHELD_KEY = "resilient_aws.chaos.all_withheld"
_ids = itertools.count()

# service id -> code AWS uses when it throttles a whole request
_THROTTLE_CODES = {
    "dynamodb": ("ProvisionedThroughputExceededException", 400),
    "kinesis": ("ProvisionedThroughputExceededException", 400),
    "sqs": ("RequestThrottled", 400),
    "sns": ("Throttled", 429),
    "eventbridge": ("ThrottlingException", 400),
    "firehose": ("ServiceUnavailableException", 503),
    "s3": ("SlowDown", 503),  # "Please reduce your request rate."
}


@lean_dataclass
class ChaosStats:
    """What a :class:`Chaos` injected so far."""

    calls: int = 0
    throttled: int = 0
    errors_5xx: int = 0
    resets: int = 0
    lost_responses: int = 0
    partial_calls: int = 0
    withheld_entries: int = 0
    by_operation: dict[str, int] = field(default_factory=dict)

    @property
    def faults(self) -> int:
        return (
            self.throttled
            + self.errors_5xx
            + self.resets
            + self.lost_responses
            + self.partial_calls
        )


# -- how each batch API carries its entries and reports per-entry failures ----------------------

_Withhold = Callable[[Any], bool]
"""Asked once per entry of a batch call, with the entry: True withholds it."""
_Split = Callable[[dict[str, Any], _Withhold], Any]
_Inject = Callable[[dict[str, Any], Any], int]


def _split_table_lists(params: dict[str, Any], withhold: _Withhold) -> dict[str, list[Any]]:
    # Build new containers: the nested objects belong to the caller and must not change.
    withheld: dict[str, list[Any]] = {}
    kept_items: dict[str, list[Any]] = {}
    for table, requests in params.get("RequestItems", {}).items():
        kept: list[Any] = []
        held: list[Any] = []
        for request in requests:
            (held if withhold((table, request)) else kept).append(request)
        if held:
            withheld[table] = held
        if kept:
            kept_items[table] = kept
    params["RequestItems"] = kept_items
    return withheld


def _inject_unprocessed_items(parsed: dict[str, Any], withheld: dict[str, list[Any]]) -> int:
    unprocessed = parsed.setdefault("UnprocessedItems", {})
    for table, requests in withheld.items():
        unprocessed.setdefault(table, []).extend(requests)
    return sum(len(r) for r in withheld.values())


def _split_table_keys(params: dict[str, Any], withhold: _Withhold) -> dict[str, dict[str, Any]]:
    withheld: dict[str, dict[str, Any]] = {}
    kept_items: dict[str, dict[str, Any]] = {}
    for table, spec in params.get("RequestItems", {}).items():
        kept: list[Any] = []
        held: list[Any] = []
        for key in spec.get("Keys", []):
            (held if withhold((table, key)) else kept).append(key)
        if held:
            withheld[table] = {**spec, "Keys": held}
        if kept:
            kept_items[table] = {**spec, "Keys": kept}
    params["RequestItems"] = kept_items
    return withheld


def _inject_unprocessed_keys(parsed: dict[str, Any], withheld: dict[str, dict[str, Any]]) -> int:
    parsed.setdefault("Responses", {})
    unprocessed = parsed.setdefault("UnprocessedKeys", {})
    for table, spec in withheld.items():
        if table in unprocessed:
            unprocessed[table]["Keys"].extend(spec["Keys"])
        else:
            unprocessed[table] = {**spec, "Keys": list(spec["Keys"])}
    return sum(len(s["Keys"]) for s in withheld.values())


def _split_list(name: str) -> _Split:
    def split(params: dict[str, Any], withhold: _Withhold) -> list[tuple[int, Any]]:
        entries = params.get(name, [])
        # The caller's "Id" is a position in the request for some senders: not the identity.
        held = [
            (i, e)
            for i, e in enumerate(entries)
            if withhold({k: v for k, v in e.items() if k != "Id"} if isinstance(e, dict) else e)
        ]
        held_ids = {i for i, _ in held}
        params[name] = [e for i, e in enumerate(entries) if i not in held_ids]
        return held

    return split


def _inject_failed_by_id(code: str) -> _Inject:
    """SQS and SNS: a ``Failed`` list of ``{Id, SenderFault, Code, Message}``."""

    def inject(parsed: dict[str, Any], held: list[tuple[int, Any]]) -> int:
        parsed.setdefault("Successful", [])
        failed = parsed.setdefault("Failed", [])
        for _, entry in held:
            failed.append(
                {
                    "Id": entry["Id"],
                    "SenderFault": False,
                    "Code": code,
                    "Message": "injected by chaos",
                }
            )
        return len(held)

    return inject


def _inject_positional(results: str, count: str, code: str) -> _Inject:
    """EventBridge, Kinesis, Firehose: one result per entry, in request order, and a count."""

    def inject(parsed: dict[str, Any], held: list[tuple[int, Any]]) -> int:
        answered = iter(parsed.get(results, []))
        held_at = {i for i, _ in held}
        total = len(parsed.get(results, [])) + len(held)
        merged = [
            {"ErrorCode": code, "ErrorMessage": "injected by chaos"}
            if i in held_at
            else next(answered)
            for i in range(total)
        ]
        parsed[results] = merged
        parsed[count] = int(parsed.get(count, 0) or 0) + len(held)
        return len(held)

    return inject


class _BatchSpec(NamedTuple):
    split: _Split
    inject: _Inject
    empty_response: dict[str, Any]


_BATCH_OPERATIONS: dict[tuple[str, str], _BatchSpec] = {
    ("dynamodb", "BatchWriteItem"): _BatchSpec(
        _split_table_lists,
        _inject_unprocessed_items,
        {"UnprocessedItems": {}},
    ),
    ("dynamodb", "BatchGetItem"): _BatchSpec(
        _split_table_keys,
        _inject_unprocessed_keys,
        {"Responses": {}, "UnprocessedKeys": {}},
    ),
    ("sqs", "SendMessageBatch"): _BatchSpec(
        _split_list("Entries"),
        _inject_failed_by_id("InternalError"),
        {},
    ),
    ("sqs", "DeleteMessageBatch"): _BatchSpec(
        _split_list("Entries"),
        _inject_failed_by_id("InternalError"),
        {},
    ),
    ("sqs", "ChangeMessageVisibilityBatch"): _BatchSpec(
        _split_list("Entries"),
        _inject_failed_by_id("InternalError"),
        {},
    ),
    ("sns", "PublishBatch"): _BatchSpec(
        _split_list("PublishBatchRequestEntries"),
        _inject_failed_by_id("InternalError"),
        {},
    ),
    ("eventbridge", "PutEvents"): _BatchSpec(
        _split_list("Entries"),
        _inject_positional("Entries", "FailedEntryCount", "ThrottlingException"),
        {"Entries": [], "FailedEntryCount": 0},
    ),
    ("kinesis", "PutRecords"): _BatchSpec(
        _split_list("Records"),
        _inject_positional(
            "Records", "FailedRecordCount", "ProvisionedThroughputExceededException"
        ),
        {"Records": [], "FailedRecordCount": 0},
    ),
    ("firehose", "PutRecordBatch"): _BatchSpec(
        _split_list("Records"),
        _inject_positional("RequestResponses", "FailedPutCount", "ServiceUnavailableException"),
        {"RequestResponses": [], "FailedPutCount": 0, "Encrypted": False},
    ),
}


def _entries_left(params: dict[str, Any]) -> bool:
    return any(
        params.get(name)
        for name in ("RequestItems", "Entries", "Records", "PublishBatchRequestEntries")
    )


class Chaos:
    """Fault injection installed on one boto3 client; use :func:`chaos` to make one.

    Rates are probabilities in ``[0, 1]``: ``throttle``, ``error5xx`` and ``reset`` fail a whole
    request before it is sent; ``lost_response`` lets a request be applied and then drops the
    response (the caller sees a read timeout for a write that happened, as on a real network);
    ``partial`` withholds each entry of a batch call with that probability and reports it failed
    the way the service does. ``stats`` counts what was injected.

    Every decision is a function of the ``seed``, the operation, what is decided on — an entry
    of a batch call for ``partial``, the request's parameters for the other rates — and how many
    times that same entry or request was decided on before: never of the order in which threads
    reach the client. The same seed and the same requests give the same faults at any
    concurrency, so a failing seeded test reproduces. (A request whose content changes from run
    to run — a timestamp in an item — draws afresh each run.)
    """

    def __init__(
        self,
        client: Any,
        *,
        partial: float = 0.0,
        throttle: float = 0.0,
        error5xx: float = 0.0,
        reset: float = 0.0,
        lost_response: float = 0.0,
        seed: int | None = None,
        operations: Collection[str] | None = None,
    ) -> None:
        for name, rate in (
            ("partial", partial),
            ("throttle", throttle),
            ("error5xx", error5xx),
            ("reset", reset),
            ("lost_response", lost_response),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ConfigurationError(name, f"must be a probability in [0, 1], got {rate!r}")
        if throttle + error5xx + reset > 1.0:
            raise ConfigurationError("throttle", "throttle + error5xx + reset must not exceed 1")
        self.client = client
        self.partial = partial
        self.throttle = throttle
        self.error5xx = error5xx
        self.reset = reset
        self.lost_response = lost_response
        self.operations = frozenset(operations) if operations is not None else None
        self.stats = ChaosStats()
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        self._salt = repr(self.seed).encode("ascii")
        # (kind, operation, digest of the content) -> how many times it was decided on
        self._seen: dict[tuple[str, str, bytes], int] = {}
        self._lock = threading.Lock()
        self._service = client.meta.service_model.service_id.hyphenize()
        self._unique = f"resilient_aws-chaos-{next(_ids)}"
        # Per instance: several Chaos on one client (a fixture and a with block) must not mix.
        self._withheld_key = f"{_CONTEXT_KEY}.{self._unique}"
        self._all_withheld_key = f"{_ALL_WITHHELD_KEY}.{self._unique}"
        self._call_key = f"{_CONTEXT_KEY}.call.{self._unique}"
        self._lost_key = f"{_CONTEXT_KEY}.lost.{self._unique}"
        self._installed = False

    # -- lifecycle ------------------------------------------------------------------------------

    def install(self) -> Chaos:
        events = self.client.meta.events
        svc = self._service
        events.register(
            f"before-parameter-build.{svc}",
            self._before_parameter_build,
            unique_id=self._unique + "-p",
        )
        events.register(f"before-call.{svc}", self._before_call, unique_id=self._unique + "-c")
        events.register(f"after-call.{svc}", self._after_call, unique_id=self._unique + "-a")
        self._installed = True
        return self

    def uninstall(self) -> None:
        if not self._installed:
            return
        events = self.client.meta.events
        svc = self._service
        events.unregister(f"before-parameter-build.{svc}", unique_id=self._unique + "-p")
        events.unregister(f"before-call.{svc}", unique_id=self._unique + "-c")
        events.unregister(f"after-call.{svc}", unique_id=self._unique + "-a")
        self._installed = False

    def __enter__(self) -> Chaos:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    # -- botocore event handlers ----------------------------------------------------------------

    def _applies(self, model: Any) -> bool:
        return self.operations is None or model.name in self.operations

    def _draw(self, kind: str, operation: str, content: Any) -> float:
        """A number in [0, 1) fixed by the seed, the operation, the content and how many times
        this content was drawn for before (its attempt number): not by thread interleaving."""
        text = content if isinstance(content, bytes) else _canonical(content)
        digest = hashlib.blake2b(text, digest_size=16).digest()
        key = (kind, operation, digest)
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
        word = hashlib.blake2b(
            b"%s|%s|%s|%d|" % (self._salt, kind.encode(), operation.encode(), attempt) + digest,
            digest_size=8,
        ).digest()
        return int.from_bytes(word, "big") / 2.0**64

    def _before_parameter_build(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if not self._applies(model):
            return
        spec = _BATCH_OPERATIONS.get((self._service, model.name))
        original = dict(params)
        withheld = None
        if spec is not None and self.partial > 0:
            withheld = spec.split(
                params, lambda entry: self._draw("partial", model.name, entry) < self.partial
            )
        all_withheld = bool(withheld) and not _entries_left(params)
        # The whole-request draws are decided on what is sent (after the split; the request as
        # given when nothing is left of it), before botocore serializes the parameters.
        sent = _canonical(original if all_withheld else params)
        context[self._call_key] = self._draw("call", model.name, sent)
        context[self._lost_key] = sent
        if not withheld:
            return
        context[self._withheld_key] = withheld
        if all_withheld:
            # botocore rejects an empty list before sending: send nothing, answer in before-call.
            params.update(original)
            context[self._all_withheld_key] = True

    def _before_call(
        self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> Any:
        if not self._applies(model):
            return None
        with self._lock:
            self.stats.calls += 1
            self.stats.by_operation[model.name] = self.stats.by_operation.get(model.name, 0) + 1
        draw = context.pop(self._call_key, None)
        if draw is None:  # not built through this client's parameter build: decide on the body
            draw = self._draw("call", model.name, params.get("body", b""))
        url = params.get("url", "")
        if draw < self.throttle:
            code, status = _THROTTLE_CODES.get(self._service, ("ThrottlingException", 400))
            self._count("throttled")
            return _error_response(url, status, code, "Rate exceeded (injected by chaos)")
        if draw < self.throttle + self.error5xx:
            self._count("errors_5xx")
            return _error_response(
                url, 500, "InternalServerError", "Internal error (injected by chaos)"
            )
        if draw < self.throttle + self.error5xx + self.reset:
            self._count("resets")
            raise ConnectionClosedError(endpoint_url=url)
        if context.pop(self._all_withheld_key, False):
            # Every entry was withheld: AWS would answer 200 with all of them failed.
            spec = _BATCH_OPERATIONS[(self._service, model.name)]
            body = {
                k: (v.copy() if isinstance(v, (dict, list)) else v)
                for k, v in spec.empty_response.items()
            }
            body["ResponseMetadata"] = {
                "HTTPStatusCode": 200,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            }
            return AWSResponse(url, 200, HTTPHeaders(), None), body
        return None

    def _after_call(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        if not self._applies(model) or http_response is None or http_response.status_code >= 300:
            return
        withheld = context.pop(self._withheld_key, None)
        if withheld:
            count = _BATCH_OPERATIONS[(self._service, model.name)].inject(parsed, withheld)
            with self._lock:
                self.stats.partial_calls += 1
                self.stats.withheld_entries += count
        if (
            self.lost_response
            and self._draw("lost", model.name, context.get(self._lost_key, b""))
            < self.lost_response
        ):
            self._count("lost_responses")
            raise ReadTimeoutError(endpoint_url=getattr(http_response, "url", ""))

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


def _canonical(value: Any) -> bytes:
    """The same bytes for the same content, whatever the order of its dicts and sets."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, AbstractSet):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, (bytes, bytearray)):
        return {"$b": bytes(value).hex()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _error_response(
    url: str, status: int, code: str, message: str
) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return AWSResponse(url, status, HTTPHeaders(), None), parsed


def chaos(
    client: Any,
    *,
    partial: float = 0.0,
    throttle: float = 0.0,
    error5xx: float = 0.0,
    reset: float = 0.0,
    lost_response: float = 0.0,
    seed: int | None = None,
    operations: Collection[str] | None = None,
) -> Chaos:
    """Make ``client`` behave like AWS under load, until the ``with`` block ends.

    ::

        with chaos(dynamodb, partial=0.3, throttle=0.05, seed=1) as c:
            writer.put_many(items)       # some BatchWriteItem entries come back unprocessed
        assert c.stats.withheld_entries > 0

    ``operations`` limits the faults to some operation names (``{"BatchWriteItem"}``).
    """
    return Chaos(
        client,
        partial=partial,
        throttle=throttle,
        error5xx=error5xx,
        reset=reset,
        lost_response=lost_response,
        seed=seed,
        operations=operations,
    )
