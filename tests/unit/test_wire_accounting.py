"""One retry accounting with botocore: what reaches the wire is what the policy says.

The requests are answered in botocore's ``before-send`` event, below its retry handler: botocore
sees those answers exactly as if they had come from the network, and would retry them if its
own retries were on. (``chaos`` and ``Stubber`` answer in ``before-call``, above the retry
handler, where botocore never retries.) botocore's own sleeps are recorded instead of slept.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.endpoint
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker
from botocore.stub import Stubber
from tenacity import wait_fixed

from resilient_aws.errors import (
    AttemptsExhaustedError,
    ConfigurationError,
    DeadlineExceededError,
    RetryBudgetExhaustedError,
    RetryError,
)
from resilient_aws.retry import RetryBudget, RetryPolicy, classify
from resilient_aws.testing import FakeClock
from tests.unit.helpers import Flaky

_URL = "https://dynamodb.us-east-1.amazonaws.com/"
_KEY = {"pk": {"S": "1"}}


def _error(
    code: str,
    status: int = 400,
    *,
    headers: dict[str, str] | None = None,
    operation: str = "GetItem",
) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": dict(headers or {}),
                "RetryAttempts": 0,
            },
        },
        operation,
    )


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def dynamodb_answer(
    code: str | None = "ProvisionedThroughputExceededException",
    status: int = 400,
    headers: dict[str, str] | None = None,
) -> AWSResponse:
    """An HTTP answer of DynamoDB: the error ``code``, or (``code=None``) an empty GetItem."""
    document: dict[str, Any] = (
        {} if code is None else {"__type": f"com.amazonaws.dynamodb.v20120810#{code}"}
    )
    return AWSResponse(
        _URL,
        status if code is not None else 200,
        {"Content-Type": "application/x-amz-json-1.0", **(headers or {})},
        _Body(json.dumps(document).encode()),
    )


class Wire:
    """The HTTP layer of one client: counts the requests and answers each with ``answer()``."""

    def __init__(self, client: Any, answer: Callable[[], AWSResponse] = dynamodb_answer) -> None:
        self.requests = 0
        self.answer = answer
        self._lock = threading.Lock()
        client.meta.events.register("before-send.dynamodb", self._send)

    def _send(self, request: Any, **_: Any) -> AWSResponse:
        with self._lock:
            self.requests += 1
        return self.answer()


def dynamodb(policy: RetryPolicy) -> Any:
    """A client configured the way the README says."""
    return boto3.client("dynamodb", region_name="us-east-1", config=policy.botocore_config())


@pytest.fixture
def botocore_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep botocore's retry handler asks for, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=slept.append))
    return slept


# -- max_attempts is what reaches the wire ------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_max_attempts_is_the_number_of_requests_on_the_wire(
    max_attempts: int, fake_clock: FakeClock, botocore_sleeps: list[float]
) -> None:
    policy = fake_clock.policy(max_attempts=max_attempts)
    client = dynamodb(policy)
    wire = Wire(client)
    with pytest.raises(AttemptsExhaustedError) as caught:
        policy.call(client.get_item, TableName="t", Key=_KEY)
    assert wire.requests == max_attempts, (
        f"max_attempts={max_attempts} put {wire.requests} requests on the wire"
    )
    assert caught.value.attempts == max_attempts
    assert botocore_sleeps == [], "botocore retried on a client from botocore_config()"
    assert len(fake_clock.slept) == max_attempts - 1


def test_botocore_config_turns_botocore_retries_off() -> None:
    config = RetryPolicy(max_attempts=8).botocore_config(connect_timeout=3)
    # total_max_attempts is botocore's total; its max_attempts key would mean retries
    assert config.retries == {"mode": "legacy", "total_max_attempts": 1}
    assert config.connect_timeout == 3


def test_the_deprecated_botocore_share_counts_in_max_attempts(
    fake_clock: FakeClock, botocore_sleeps: list[float]
) -> None:
    policy = fake_clock.policy(max_attempts=5)
    with pytest.warns(DeprecationWarning, match="max_attempts"):
        config = policy.botocore_config(max_attempts=3)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert policy.botocore_config(max_attempts=9).retries["total_max_attempts"] == 5
    client = boto3.client("dynamodb", region_name="us-east-1", config=config)
    wire = Wire(client)
    with pytest.raises(AttemptsExhaustedError):
        policy.call(client.get_item, TableName="t", Key=_KEY)
    # botocore's 3, then the core sees RetryAttempts=2, counts 3 of its 5, and sends 3 more:
    # the last botocore round may overshoot by at most its own share - 1
    assert wire.requests == 6
    assert len(botocore_sleeps) == 4


def test_botocore_config_rejects_what_it_cannot_honour() -> None:
    policy = RetryPolicy()
    with pytest.raises(ConfigurationError, match="retries"):
        policy.botocore_config(retries={"mode": "legacy"})
    with pytest.raises(ConfigurationError, match="max_attempts"):
        policy.botocore_config(max_attempts=0)


# -- throttles back off from the throttle base, and x-amz-retry-after is honoured --------------


def test_throttles_back_off_from_one_second_other_errors_from_base_delay(
    fake_clock: FakeClock, botocore_sleeps: list[float]
) -> None:
    policy = fake_clock.policy(max_attempts=4, base_delay=0.05, max_delay=3.0, jitter="none")
    client = dynamodb(policy)
    wire = Wire(client)  # always ProvisionedThroughputExceededException
    with pytest.raises(AttemptsExhaustedError):
        policy.call(client.get_item, TableName="t", Key=_KEY)
    assert fake_clock.slept == [1.0, 2.0, 3.0]  # capped by max_delay
    assert botocore_sleeps == []

    fake_clock.slept.clear()
    wire.answer = lambda: dynamodb_answer("InternalServerError", 500)
    with pytest.raises(AttemptsExhaustedError):
        policy.call(client.get_item, TableName="t", Key=_KEY)
    assert fake_clock.slept == pytest.approx([0.05, 0.1, 0.2])


def test_throttle_base_delay_is_a_policy_field(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(
        max_attempts=4, base_delay=0.01, throttle_base_delay=0.2, max_delay=5.0, jitter="none"
    )
    throttles = Flaky(*[_error("ThrottlingException") for _ in range(3)])
    assert policy.call(throttles) == "ok"
    assert fake_clock.slept == pytest.approx([0.2, 0.4, 0.8])
    # never below base_delay: a throttle waits at least as long as any other error
    slow = fake_clock.policy(base_delay=3.0, max_delay=3.0, jitter="none", max_attempts=2)
    fake_clock.slept.clear()
    assert slow.call(Flaky(_error("ThrottlingException"))) == "ok"
    assert fake_clock.slept == [3.0]


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated", "none"])
def test_every_throttle_sleep_is_within_the_jitter_bounds_of_the_throttle_base(
    jitter: str, fake_clock: FakeClock
) -> None:
    policy = fake_clock.policy(
        max_attempts=8, base_delay=0.01, throttle_base_delay=0.5, max_delay=4.0, jitter=jitter
    )
    assert policy.call(Flaky(*[_error("Throttling") for _ in range(7)])) == "ok"
    assert len(fake_clock.slept) == 7
    for n, delay in enumerate(fake_clock.slept, start=1):
        ceiling = min(4.0, 0.5 * 2 ** (n - 1))
        assert 0.0 <= delay <= 4.0
        if jitter in ("full", "equal", "none"):
            assert delay <= ceiling + 1e-12
        if jitter in ("equal", "none"):
            assert delay >= ceiling / 2 - 1e-12
        if jitter == "decorrelated":
            assert delay >= 0.5  # from the throttle base, not from base_delay


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), True, "1"])
def test_throttle_base_delay_is_validated(value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy(throttle_base_delay=value)  # type: ignore[arg-type]
    assert caught.value.field == "throttle_base_delay"


async def test_async_calls_back_off_from_the_throttle_base(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(max_attempts=3, jitter="none")
    errors = [_error("Throttling"), _error("Throttling")]

    async def throttled() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert await policy.acall(throttled) == "ok"
    assert fake_clock.slept == [1.0, 2.0]


@pytest.mark.parametrize(
    ("header", "status", "code", "expected"),
    [
        ("3000", 400, "ThrottlingException", 3.0),  # longer than the backoff (1 s): honoured
        ("200", 400, "ThrottlingException", 1.0),  # shorter: the backoff stands
        ("60000", 400, "ThrottlingException", 6.0),  # at most 5 s past the backoff
        ("300", 500, "InternalServerError", 0.3),  # any retried error, as in botocore
        ("soon", 400, "ThrottlingException", 1.0),  # not a number: ignored
        ("-5", 400, "ThrottlingException", 1.0),
        ("1.5", 400, "ThrottlingException", 1.0),  # botocore reads whole milliseconds only
    ],
)
def test_x_amz_retry_after_is_honoured_within_bounds(
    header: str, status: int, code: str, expected: float, fake_clock: FakeClock
) -> None:
    policy = fake_clock.policy(max_attempts=2, base_delay=0.05, jitter="none")
    error = _error(code, status, headers={"x-amz-retry-after": header})
    assert policy.call(Flaky(error)) == "ok"
    assert fake_clock.slept == pytest.approx([expected])


def test_x_amz_retry_after_from_the_wire(
    fake_clock: FakeClock, botocore_sleeps: list[float]
) -> None:
    policy = fake_clock.policy(max_attempts=2, jitter="none")
    client = dynamodb(policy)
    answers = iter(
        [dynamodb_answer(headers={"X-Amz-Retry-After": "2500"}), dynamodb_answer(code=None)]
    )
    Wire(client, lambda: next(answers))
    policy.call(client.get_item, TableName="t", Key=_KEY)
    assert fake_clock.slept == [2.5]
    assert botocore_sleeps == []


def test_no_retry_after_sleep_runs_past_the_deadline(fake_clock: FakeClock) -> None:
    policy = fake_clock.policy(max_attempts=5, jitter="none").with_deadline(2.0)
    error = _error("ThrottlingException", headers={"x-amz-retry-after": "4000"})
    with pytest.raises(DeadlineExceededError):
        policy.call(Flaky(error, error))
    assert fake_clock.slept == []


def test_a_wait_strategy_replaces_throttle_base_and_retry_after(fake_clock: FakeClock) -> None:
    error = _error("ThrottlingException", headers={"x-amz-retry-after": "4000"})
    policy = fake_clock.policy(max_attempts=3, jitter="none")
    assert policy.call(Flaky(error, error)) == "ok"
    assert fake_clock.slept == [4.0, 4.0]
    fake_clock.slept.clear()
    assert dataclasses.replace(policy, wait=wait_fixed(0.25)).call(Flaky(error, error)) == "ok"
    assert fake_clock.slept == [0.25, 0.25]


def test_the_policy_wait_strategy_knows_throttles_on_its_own() -> None:
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

    slept: list[float] = []
    policy = RetryPolicy(jitter="none", rng=random.Random(0))
    retrying = Retrying(
        wait=policy.wait_strategy(),
        sleep=slept.append,
        stop=stop_after_attempt(3),
        retry=retry_if_exception_type(ClientError),
        reraise=True,
    )
    assert retrying(Flaky(_error("Throttling"), _error("InternalServerError", 500))) == "ok"
    assert slept == pytest.approx([1.0, 0.1])


# -- the Deadline bounds everything ------------------------------------------------------------


def test_an_endless_throttle_ends_at_the_deadline_without_botocore_sleeping(
    fake_clock: FakeClock, botocore_sleeps: list[float]
) -> None:
    policy = fake_clock.policy(max_attempts=1000, max_delay=5.0)
    client = dynamodb(policy)
    wire = Wire(client)
    deadline = fake_clock.deadline(2.0)
    with pytest.raises(DeadlineExceededError):
        policy.with_deadline(deadline).call(client.get_item, TableName="t", Key=_KEY)
    assert botocore_sleeps == [], "botocore slept where no deadline reaches"
    assert fake_clock.now <= deadline.at
    assert wire.requests == len(fake_clock.slept) + 1


# -- a shared budget bounds a throttle storm across per-thread clients --------------------------


def test_a_throttle_storm_on_per_thread_clients_costs_at_most_1_5_requests_per_call(
    botocore_sleeps: list[float],
) -> None:
    """8 threads, each with its own client, share one budget and call 60 times each while
    every request is throttled (a service taking 32 calls/s for a 15 s storm)."""
    budget = RetryBudget()
    threads, calls_per_thread = 8, 60
    wires: list[Wire] = []
    outcomes: list[type[BaseException]] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        clock = FakeClock(seed=seed)
        policy = clock.policy(RetryPolicy(max_attempts=8, budget=budget))
        client = dynamodb(policy)
        wire = Wire(client)
        with lock:
            wires.append(wire)
        for _ in range(calls_per_thread):
            try:
                policy.call(client.get_item, TableName="t", Key=_KEY)
            except RetryError as gave_up:
                with lock:
                    outcomes.append(type(gave_up))
            clock.advance(0.25)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    calls = threads * calls_per_thread
    requests = sum(w.requests for w in wires)
    assert len(outcomes) == calls
    assert requests / calls <= 1.5, f"{requests} requests for {calls} calls"
    # the budget's 500 tokens at 5 per throttle retry: 100 retries in all, then none
    assert requests == calls + 100
    assert RetryBudgetExhaustedError in outcomes
    assert botocore_sleeps == []


# -- everything botocore's standard mode retries, the core retries ------------------------------


def test_everything_botocore_standard_mode_retries_the_core_retries(
    fake_clock: FakeClock,
) -> None:
    # botocore retries nothing on the clients the core configures: what it would have retried
    # (botocore.retries.standard and .special, read from botocore itself) must be the core's.
    cases: dict[str, Exception] = {
        **{code: _error(code) for code in ThrottledRetryableChecker._THROTTLED_ERROR_CODES},
        **{code: _error(code) for code in TransientRetryableChecker._TRANSIENT_ERROR_CODES},
        **{
            f"HTTP {status}": _error("SomethingNew", status)
            for status in [*TransientRetryableChecker._TRANSIENT_STATUS_CODES, 429]
        },
        "sts IDPCommunicationError": _error("IDPCommunicationError"),
        "DynamoDB crc32": ChecksumError(
            checksum_type="crc32", expected_checksum=1, actual_checksum=2
        ),
        "SSLError": SSLError(endpoint_url=_URL, error="handshake"),
        "EndpointConnectionError": EndpointConnectionError(endpoint_url=_URL),
        "ConnectTimeoutError": ConnectTimeoutError(endpoint_url=_URL),
        "ReadTimeoutError": ReadTimeoutError(endpoint_url=_URL),
    }
    not_retried = [name for name, error in cases.items() if not classify(error).retryable]
    assert not_retried == []
    not_throttles = [
        code
        for code in ThrottledRetryableChecker._THROTTLED_ERROR_CODES
        if not classify(cases[code]).is_throttle
    ]
    assert not_throttles == []
    policy = fake_clock.policy(max_attempts=2)
    for name, error in cases.items():
        flaky = Flaky(error)
        assert policy.call(flaky) == "ok", name
        assert flaky.calls == 2, name


def test_errors_a_service_models_as_retryable_are_retried_on_its_clients(
    fake_clock: FakeClock,
) -> None:
    # bedrock-agentcore models RetryableConflictException (409) as retryable: botocore's
    # ModeledRetryableChecker would retry it, so the core must, now that botocore does not.
    client = boto3.client("bedrock-agentcore", region_name="us-east-1")
    model = client.meta.service_model
    conflict = _error("RetryableConflictException", 409, operation="GetAgentCard")
    assert not classify(conflict).retryable  # without the model: an ordinary 409
    assert classify(conflict, service_model=model).retryable
    invalid = _error("ValidationException", operation="GetAgentCard")
    assert not classify(invalid, service_model=model).retryable

    policy = fake_clock.policy(max_attempts=3)
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_agent_card", service_error_code="RetryableConflictException", http_status_code=409
        )
        stub.add_response(
            "get_agent_card", {"runtimeSessionId": "s", "agentCard": {}, "statusCode": 200}
        )
        policy.call(client.get_agent_card, agentRuntimeArn="arn")
        stub.assert_no_pending_responses()
    assert len(fake_clock.slept) == 1


def test_a_modeled_throttle_is_a_throttle() -> None:
    model = boto3.client("lakeformation", region_name="us-east-1").meta.service_model
    throttled = _error("ThrottledException", 429, operation="GetQueryStatistics")
    assert classify(throttled, service_model=model).is_throttle


def test_policy_variants_keep_the_throttle_base() -> None:
    policy = RetryPolicy(throttle_base_delay=0.5)
    assert dataclasses.replace(policy, max_attempts=3).throttle_base_delay == 0.5
    assert policy.with_deadline(1.0).throttle_base_delay == 0.5


def test_the_service_model_is_found_for_client_and_resource_methods() -> None:
    from resilient_aws.retry._run import _service_model

    client = boto3.client("dynamodb", region_name="us-east-1")
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("t")
    assert _service_model(client.get_item) is client.meta.service_model
    assert _service_model(table.get_item).service_name == "dynamodb"
    assert _service_model(lambda: None) is None
