"""The async drain's own lines, on an in-memory async SQS: the steps both drivers share,
cancellation at each stage, a failing worker, routing, visibility and the lean import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Generator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws.errors import QueueNotFoundError
from resilient_aws.redrive import DlqMessage, RedriveReport, aredrive_sqs
from resilient_aws.redrive._drain import NOT_SENT, Outcome
from resilient_aws.redrive._queues import describe_queue_steps
from resilient_aws.redrive._routes import RoutedDelivery, SourceRouter
from resilient_aws.redrive._steps import Call, arun_steps, run_steps
from resilient_aws.testing import FakeClock

DLQ, TARGET = "https://q/dlq", "https://q/target"


class FakeSqs:
    """Two in-memory queues behind the async calls the redrive makes; ``hold`` makes the named
    operation wait (in flight) until ``release`` is set."""

    def __init__(self, count: int, *, hold: str | None = None, fail: str | None = None) -> None:
        self.queues: dict[str, dict[str, str]] = {
            DLQ: {f"id-{n}": f"body-{n}" for n in range(count)},
            TARGET: {},
        }
        self.invisible: set[str] = set()
        self.calls: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self.hold = hold
        self.fail = fail
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise RuntimeError(f"{name} broke")
        if name == self.hold:
            self.started.set()
            await self.release.wait()
        await asyncio.sleep(0)

    async def get_queue_attributes(self, QueueUrl: str, **_: Any) -> Any:  # noqa: N803
        await self._enter("get_queue_attributes")
        if QueueUrl not in self.queues:
            error = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}
            raise ClientError(error, "GetQueueAttributes")  # type: ignore[arg-type]
        return {
            "Attributes": {"QueueArn": f"arn:aws:sqs:r:1:{QueueUrl[-3:]}", "FifoQueue": "false"}
        }

    async def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> Any:  # noqa: N803
        await self._enter("receive_message")
        ready = [i for i in self.queues[QueueUrl] if i not in self.invisible]
        taken = ready[:MaxNumberOfMessages]
        self.invisible.update(taken)
        messages = [
            {"MessageId": i, "Body": self.queues[QueueUrl][i], "ReceiptHandle": f"rh-{i}"}
            for i in taken
        ]
        return {"Messages": messages}

    async def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        await self._enter("send_message_batch")
        for entry in Entries:
            self.queues[QueueUrl][f"copy-{len(self.queues[QueueUrl])}"] = entry["MessageBody"]
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries]}

    async def delete_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        await self._enter("delete_message_batch")
        for entry in Entries:
            del self.queues[QueueUrl][entry["ReceiptHandle"].removeprefix("rh-")]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    async def change_message_visibility_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        await self._enter("change_message_visibility_batch")
        for entry in Entries:
            message_id = entry["ReceiptHandle"].removeprefix("rh-")
            self.visibility.append((message_id, entry["VisibilityTimeout"]))
            if entry["VisibilityTimeout"] == 0:
                self.invisible.discard(message_id)
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def run(client: FakeSqs, **options: Any) -> Any:
    options.setdefault("wait_time_s", 0)
    options.setdefault("policy", FakeClock().policy())
    return aredrive_sqs(DLQ, target_queue_url=TARGET, client=client, **options)


async def test_a_run_moves_every_message_and_releases_the_skipped_ones() -> None:
    client = FakeSqs(25)
    report = await run(client, filter=lambda m: m.body != "body-3", concurrency=3)
    assert (report.received, report.moved, report.skipped) == (25, 24, 1)
    assert client.queues[DLQ] == {"id-3": "body-3"}
    assert sorted(client.queues[TARGET].values()) == sorted(
        f"body-{n}" for n in range(25) if n != 3
    )
    assert client.visibility == [("id-3", 0)]  # the skipped one is visible again


async def cancelled_while(
    operation: str, count: int = 10, **options: Any
) -> tuple[FakeSqs, RedriveReport]:
    client = FakeSqs(count, hold=operation)
    reports: list[RedriveReport] = []
    task = asyncio.get_running_loop().create_task(
        run(client, concurrency=1, progress=reports.append, **options)
    )
    await client.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return client, reports[-1]


async def test_cancelled_in_the_send_nothing_is_deleted_and_the_outcome_is_unknown() -> None:
    client, report = await cancelled_while("send_message_batch")
    assert client.calls[-1] == "send_message_batch"  # no delete after it
    assert len(client.queues[DLQ]) == 10
    assert report.moved == 0 and report.received == 10
    assert {reason.split(":")[0] for reason in report.failed.values()} == {"OutcomeUnknown"}
    assert sorted(report.failed) == sorted(f"id-{n}" for n in range(10))


async def test_cancelled_in_the_delete_the_confirmed_copies_are_undeleted() -> None:
    client, report = await cancelled_while("delete_message_batch")
    assert len(client.queues[TARGET]) == 10  # the copies were confirmed
    assert report.failed == {} and report.moved == 0
    assert sorted(report.undeleted) == sorted(f"id-{n}" for n in range(10))
    assert all("OutcomeUnknown" in reason for reason in report.undeleted.values())


async def test_cancelled_before_the_send_nothing_was_sent() -> None:
    # rate=5: the second batch waits for its turn (a backoff-like sleep) with messages in hand
    client = FakeSqs(10, hold="change_message_visibility_batch")
    reports: list[RedriveReport] = []
    first = asyncio.Event()

    def progress(report: RedriveReport) -> None:
        reports.append(report)
        first.set()

    async def slow_sleep(seconds: float) -> None:
        await asyncio.sleep(3600)  # cancelled in here

    policy = FakeClock().policy(async_sleep=slow_sleep)
    task = asyncio.get_running_loop().create_task(
        run(client, concurrency=1, rate=5, policy=policy, progress=progress)
    )
    await first.wait()
    await asyncio.sleep(0.01)  # the second batch is received and waits for its turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = reports[-1]
    assert report.moved == 5 and report.received == 10
    assert report.failed == dict.fromkeys((f"id-{n}" for n in range(5, 10)), NOT_SENT)
    assert sorted(client.queues[DLQ]) == [f"id-{n}" for n in range(5, 10)]
    assert client.calls.count("send_message_batch") == 1


async def test_a_failing_worker_stops_the_run_and_its_error_is_raised() -> None:
    client = FakeSqs(30, fail="send_message_batch")
    with pytest.raises(RuntimeError, match="send_message_batch broke"):
        await run(client, concurrency=3)
    assert len(client.queues[DLQ]) == 30  # nothing deleted
    assert "delete_message_batch" not in client.calls


async def test_visibility_is_extended_before_a_long_backoff() -> None:
    clock = FakeClock()
    client = FakeSqs(3)
    attempts = 0
    send = client.send_message_batch

    async def throttled(**params: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            error = {
                "Error": {"Code": "InternalError"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            }
            raise ClientError(error, "SendMessageBatch")  # type: ignore[arg-type]
        return await send(**params)

    client.send_message_batch = throttled  # type: ignore[method-assign]
    policy = clock.policy(base_delay=30.0, max_delay=30.0, jitter="none")
    report = await run(client, policy=policy, visibility_timeout=40)
    assert report.moved == 3
    assert set(client.visibility) == {("id-0", 40), ("id-1", 40), ("id-2", 40)}
    # extended before the 30 s backoff (more than half of 40 s), not after it
    assert client.calls.index("change_message_visibility_batch") < client.calls.index(
        "send_message_batch"
    )


def steps_that_catch() -> Generator[Call, Any, str]:
    try:
        yield Call("boom", {})
    except RuntimeError as error:
        first = f"caught {error}"
    second = yield Call("echo", {"value": 2})
    return f"{first}, then {second}"


class Echo:
    def boom(self) -> None:
        raise RuntimeError("boom")

    def echo(self, value: int) -> int:
        return value


class AsyncEcho:
    async def boom(self) -> None:
        raise RuntimeError("boom")

    async def echo(self, value: int) -> int:
        return value


async def test_steps_get_the_same_answers_and_errors_from_either_client() -> None:
    policy = FakeClock().policy(max_attempts=1)
    assert run_steps(Echo(), policy, steps_that_catch()) == "caught boom, then 2"
    assert await arun_steps(AsyncEcho(), policy, steps_that_catch()) == "caught boom, then 2"
    with pytest.raises(QueueNotFoundError, match="gone"):
        await arun_steps(FakeSqs(0), policy, describe_queue_steps("https://q/gone", "target"))


async def test_a_routed_delivery_cancelled_between_targets_reports_the_rest_not_sent() -> None:
    router = SourceRouter(None, None, [])  # type: ignore[arg-type]
    router.urls = {"arn-a": "a", "arn-b": "b"}

    class Target:
        def __init__(self, url: str) -> None:
            self.url = url

        async def adeliver(self, messages: Any, policy: Any, outcome: Outcome) -> None:
            await asyncio.sleep(3600 if self.url == "a" else 0)

    delivery = RoutedDelivery(router, Target)  # type: ignore[arg-type]
    messages = [
        DlqMessage(f"{arn}-{n}", "b", "rh", attributes={"DeadLetterQueueSourceArn": arn})
        for arn in ("arn-a", "arn-b", "arn-c")
        for n in range(2)
    ]
    outcome = Outcome()
    task = asyncio.get_running_loop().create_task(
        delivery.adeliver(messages, FakeClock().policy(), outcome)
    )
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome.failed == {
        "arn-c-0": "NotRouted: its source is not known",
        "arn-c-1": "NotRouted: its source is not known",
        "arn-b-0": NOT_SENT,
        "arn-b-1": NOT_SENT,
    }  # a's own delivery accounts for a's messages


def test_the_sync_entry_points_import_nothing_async() -> None:
    code = (
        "import sys; from resilient_aws.redrive import redrive_sqs; "
        "print(sorted(m for m in sys.modules if 'aiobotocore' in m or 'redrive._a' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class TwoSources(FakeSqs):
    """A DLQ fed by ``https://q/src-a`` and ``https://q/src-b``; each message is stamped with
    the ARN of its source, one with a queue that no longer exists."""

    def __init__(self) -> None:
        super().__init__(6)
        self.queues.update({"https://q/s-a": {}, "https://q/s-b": {}})
        self.stamp = {f"id-{n}": f"arn:aws:sqs:r:1:s-{'ab'[n % 2]}" for n in range(5)}
        self.stamp["id-5"] = "arn:aws:sqs:r:1:gone"

    async def list_dead_letter_source_queues(self, **_: Any) -> Any:
        await self._enter("list_dead_letter_source_queues")
        return {"queueUrls": ["https://q/s-a", "https://q/s-b"]}

    async def get_queue_url(self, QueueName: str, **_: Any) -> Any:  # noqa: N803
        await self._enter("get_queue_url")
        error = {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}
        raise ClientError(error, "GetQueueUrl")  # type: ignore[arg-type]

    async def receive_message(self, **params: Any) -> Any:
        answer = await super().receive_message(**params)
        assert params["MessageSystemAttributeNames"] == ["All"]
        for message in answer["Messages"]:
            message["Attributes"] = {"DeadLetterQueueSourceArn": self.stamp[message["MessageId"]]}
        return answer


async def test_each_message_goes_back_to_its_own_source() -> None:
    client = TwoSources()
    report = await aredrive_sqs(
        DLQ, client=client, wait_time_s=0, policy=FakeClock().policy(), concurrency=2
    )
    assert report.moved == 5 and report.target is None
    assert report.targets == {"https://q/s-a": 3, "https://q/s-b": 2}
    assert sorted(client.queues["https://q/s-a"].values()) == ["body-0", "body-2", "body-4"]
    assert sorted(client.queues["https://q/s-b"].values()) == ["body-1", "body-3"]
    assert report.failed == {"id-5": "SourceQueueNotFound: arn:aws:sqs:r:1:gone does not exist"}
    assert client.calls.count("get_queue_url") == 1  # a definitive refusal is remembered
    assert list(client.queues[DLQ]) == ["id-5"]
