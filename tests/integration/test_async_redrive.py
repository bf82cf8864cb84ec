"""aredrive_sqs (aiobotocore) against a moto server, with chaos: every message of the DLQ arrives
once at the target and leaves the DLQ, counted; a cancellation at any request loses nothing and
deletes nothing whose copy was not confirmed; bad input is refused before anything moves."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from resilient_aws.errors import (
    AmbiguousTargetError,
    ConfigurationError,
    QueueNotFoundError,
    RedriveTargetError,
    TargetTypeMismatchError,
)
from resilient_aws.redrive import RedriveReport, aredrive_sqs, redrive_sqs
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, MotoServer
from resilient_aws.testing._moto import DUMMY_CREDENTIALS


@pytest.fixture
async def aio_sqs(moto_server: MotoServer) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "sqs",
        endpoint_url=moto_server.endpoint_url,
        config=RetryPolicy().botocore_config(),
        **DUMMY_CREDENTIALS,
    ) as client:
        yield client


def fast_policy() -> RetryPolicy:
    return FakeClock().policy(max_attempts=30)  # its async_sleep advances the clock


def new_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def fill(sqs: Any, url: str, count: int, prefix: str = "m") -> dict[str, str]:
    """``count`` messages with attributes: message id -> body."""
    ids: dict[str, str] = {}
    for start in range(0, count, 10):
        entries = [
            {
                "Id": str(n),
                "MessageBody": json.dumps({"n": n, "tag": prefix}),
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": str(n)}},
            }
            for n in range(start, min(start + 10, count))
        ]
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not answer.get("Failed")
        bodies = {e["Id"]: e["MessageBody"] for e in entries}
        ids.update({s["MessageId"]: bodies[s["Id"]] for s in answer["Successful"]})
    return ids


def take_all(sqs: Any, url: str) -> Counter[str]:
    """Every visible message of ``url`` (bodies, counted), deleted."""
    seen: Counter[str] = Counter()
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return seen
        for message in messages:
            assert message["MessageAttributes"]["n"]["StringValue"] == str(
                json.loads(message["Body"])["n"]
            )  # the attributes came along
        seen.update(m["Body"] for m in messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def dlq_with_source(sqs: Any, name: str) -> tuple[str, str]:
    """(dlq, source): the source's RedrivePolicy names the DLQ."""
    dlq, dlq_arn = new_queue(sqs, f"{name}-dlq")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    source, _ = new_queue(sqs, f"{name}-src", RedrivePolicy=policy)
    return dlq, source


@pytest.mark.parametrize(("seed", "concurrency"), [(1, 1), (2, 4), (3, 4), (4, 2)])
async def test_every_message_arrives_once_and_leaves_the_dlq_under_chaos(
    moto_server: MotoServer, aio_sqs: Any, seed: int, concurrency: int
) -> None:
    sqs = moto_server.client("sqs")
    dlq, source = dlq_with_source(sqs, f"achaos-{seed}")
    ids = fill(sqs, dlq, 150)
    seen: list[int] = []
    with Chaos(aio_sqs, partial=0.3, throttle=0.1, error5xx=0.05, reset=0.03, seed=seed) as hit:
        report = await aredrive_sqs(
            dlq,
            client=aio_sqs,
            policy=fast_policy(),
            wait_time_s=0,
            concurrency=concurrency,
            progress=lambda r: seen.append(r.handled),
        )
    by_operation = hit.stats.by_operation
    assert hit.stats.withheld_entries > 0 and hit.stats.throttled + hit.stats.errors_5xx > 0
    assert {"ReceiveMessage", "SendMessageBatch", "DeleteMessageBatch"} <= set(by_operation)
    assert (report.received, report.moved, report.failed, report.undeleted) == (150, 150, {}, {})
    assert report.ok and report.target == source and report.duplicates == 0
    assert report.resent > 0  # the withheld entries were sent again
    assert take_all(sqs, source) == Counter(ids.values())  # each exactly once
    assert depth(sqs, dlq) == 0
    assert seen == sorted(seen) and seen[-1] == 150


async def test_the_report_is_the_sync_runs_report(moto_server: MotoServer, aio_sqs: Any) -> None:
    """A filter, a limit and a dry run decide the same in both drivers."""
    sqs = moto_server.client("sqs")
    reports: list[RedriveReport] = []
    for run in ("sync", "async"):
        dlq, source = dlq_with_source(sqs, f"asame-{run}")
        fill(sqs, dlq, 30)
        options: dict[str, Any] = dict(
            filter="body.n < `20`", max_messages=25, wait_time_s=0, run_id="r", concurrency=1
        )
        if run == "sync":
            report = redrive_sqs(dlq, client=sqs, policy=fast_policy(), **options)
        else:
            report = await aredrive_sqs(dlq, client=aio_sqs, policy=fast_policy(), **options)
        reports.append(report)
        assert len(take_all(sqs, source)) == report.moved
        assert depth(sqs, dlq) == 30 - report.moved  # the skipped ones were released
    sync, aio = (r.to_dict() for r in reports)
    for report in (sync, aio):
        report.pop("source"), report.pop("target")
    assert aio == sync
    assert (sync["received"], sync["moved"] + sync["skipped"]) == (25, 25)


async def test_a_dry_run_moves_nothing_and_releases_everything(
    moto_server: MotoServer, aio_sqs: Any
) -> None:
    sqs = moto_server.client("sqs")
    dlq, source = dlq_with_source(sqs, "adry")
    ids = fill(sqs, dlq, 23)
    report = await aredrive_sqs(
        dlq, client=aio_sqs, policy=fast_policy(), dry_run=True, wait_time_s=0
    )
    assert sorted(report.would_move) == sorted(ids) and report.moved == 0
    assert depth(sqs, source) == 0
    assert take_all(sqs, dlq) == Counter(ids.values())  # visible again at once


class CancelAt:
    """An aiobotocore client that cancels ``task`` while its ``at``-th request is in flight."""

    def __init__(self, client: Any, at: int) -> None:
        self.client = client
        self.at = at
        self.calls: list[str] = []
        self.task: asyncio.Task[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(**params: Any) -> Any:
            self.calls.append(name)
            if len(self.calls) == self.at:
                assert self.task is not None
                self.task.cancel()  # delivered at the request's first await: in flight
            return await method(**params)

        return call


async def test_a_cancelled_run_loses_nothing_and_reports_what_it_held(
    moto_server: MotoServer, aio_sqs: Any
) -> None:
    cancelled_in: set[str] = set()
    for at in range(3, 15):
        cancelled_in.add(await cancel_at(moto_server, aio_sqs, at))
    # every kind of request of the run was cancelled in flight at least once
    assert {"ReceiveMessage", "SendMessageBatch", "DeleteMessageBatch"} <= cancelled_in


async def cancel_at(moto_server: MotoServer, aio_sqs: Any, at: int) -> str:
    sqs = moto_server.client("sqs")
    dlq, source = dlq_with_source(sqs, f"acancel-{at}")
    ids = fill(sqs, dlq, 40)
    client = CancelAt(aio_sqs, at)
    last: list[RedriveReport] = []
    client.task = asyncio.get_running_loop().create_task(
        aredrive_sqs(
            dlq,
            target_queue_url=source,
            client=client,
            policy=fast_policy(),
            wait_time_s=0,
            visibility_timeout=1,
            concurrency=2,
            progress=last.append,
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await client.task
    await asyncio.sleep(1.1)  # what the run held becomes visible again
    arrived = take_all(sqs, source)
    left = take_all(sqs, dlq)
    assert set(arrived) | set(left) == set(ids.values())  # nothing lost...
    assert max(arrived.values(), default=1) == 1 and max(left.values(), default=1) == 1
    assert len(client.calls) <= at + 2  # ...and the run stopped at once
    operation = "".join(word.title() for word in client.calls[at - 1].split("_"))
    if not last:
        assert not arrived and len(left) == 40  # cancelled before the first batch settled
        return operation
    report = last[-1]
    assert report.received == report.handled  # every message in hand is in one bucket
    for message_id, reason in report.failed.items():
        assert reason.split(":")[0] in ("Cancelled", "NotSent", "OutcomeUnknown"), reason
        assert ids[message_id] in left  # never deleted without a confirmed copy
        if not reason.startswith("OutcomeUnknown"):
            assert ids[message_id] not in arrived
    for message_id, reason in report.undeleted.items():
        assert ids[message_id] in arrived  # the copy was confirmed
        if "OutcomeUnknown" not in reason:  # a delete cancelled in flight may have happened
            assert ids[message_id] in left, reason
    unknown = sum("OutcomeUnknown" in reason for reason in report.undeleted.values())
    assert report.moved <= len(set(arrived) - set(left)) <= report.moved + unknown
    return operation


async def test_bad_input_is_refused_before_anything_moves(
    moto_server: MotoServer, aio_sqs: Any
) -> None:
    sqs = moto_server.client("sqs")
    dlq, source = dlq_with_source(sqs, "abad")
    fifo, _ = new_queue(sqs, "abad-other.fifo", FifoQueue="true")
    lonely, _ = new_queue(sqs, "abad-lonely")
    fill(sqs, dlq, 12)
    fill(sqs, lonely, 3)
    policy = fast_policy()
    refused: list[tuple[dict[str, Any], type[Exception], str]] = [
        (dict(visibility_timeout=0), ConfigurationError, "visibility_timeout"),
        (dict(filter="body.[["), ConfigurationError, "filter"),
        (dict(concurrency=0), ConfigurationError, "concurrency"),
        (dict(native=True), ConfigurationError, "native"),
        (dict(target_queue_url=dlq), RedriveTargetError, "source queue itself"),
        (dict(target_queue_url=fifo), TargetTypeMismatchError, "same type"),
        (dict(target_queue_url=source + "-gone"), QueueNotFoundError, "abad-src-gone"),
    ]
    for options, error, text in refused:
        with pytest.raises(error, match=text):
            await aredrive_sqs(dlq, client=aio_sqs, policy=policy, **options)
    with pytest.raises(QueueNotFoundError, match="abad-dlq-nope"):
        await aredrive_sqs(dlq + "-nope", client=aio_sqs, policy=policy)
    with pytest.raises(AmbiguousTargetError, match="no source queue"):
        await aredrive_sqs(lonely, client=aio_sqs, policy=policy)
    assert depth(sqs, source) == 0
    assert len(take_all(sqs, dlq)) == 12  # none received (they would be invisible)
    assert len(take_all(sqs, lonely)) == 3


async def test_the_run_opens_and_closes_its_own_client(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = moto_server.client("sqs")
    dlq, source = dlq_with_source(sqs, "aown")
    ids = fill(sqs, dlq, 12)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name.upper() if name != "region_name" else "AWS_DEFAULT_REGION", value)
    report = await aredrive_sqs(dlq, wait_time_s=0)
    assert report.moved == 12
    assert take_all(sqs, source) == Counter(ids.values())


def test_the_docs_example_runs(capfd: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).parents[2] / "docs" / "redrive.md").read_text()
    section = page[page.index("## On asyncio") :]
    start = section.index("```python\n") + 10
    code = section[start : section.index("\n```", start)]
    assert "aredrive_sqs(" in code
    exec(compile(code, "docs/redrive.md#on-asyncio", "exec"), {"__name__": "__main__"})
    assert "50 received, 50 moved, 0 skipped, 0 failed" in capfd.readouterr().out
