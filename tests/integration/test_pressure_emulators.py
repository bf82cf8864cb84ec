"""Issue 12 over the wire: 40 % of entries withheld and 5 % of requests throttled by ``chaos``.

One run per API against a real emulator: ``batch_get`` on dynalite, ``KinesisPutter`` on
kinesalite, ``SqsSender`` to a FIFO queue and the redrive drain on a moto server. The policy is
the default one with only its clock and sleep faked (no real backoff). Not one entry may be
given up, and every entry must be at the far end, read back with the plain client: once each,
FIFO groups in order.

The seeded statistics (50 runs per API) are in ``tests/reliability/test_pressure.py``; these
runs show the same holds against services that validate requests as AWS does. Each one sends a
single request at a time (``batch_get`` and the putter's one chunk of 500 by default, the SQS
sender and the drain with ``concurrency=1``), so chaos draws its faults in the same order on
every run: the seed alone decides what is withheld, and a failure replays. Each seed was picked
among those where, against the engine that gave up after 8 rounds (the default
``max_attempts``), chaos throttled at least once and withheld some entry 8 times in a row, so
that engine lost entries; any seed must pass.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from resilient_aws.batch import KinesisPutter, SqsSender
from resilient_aws.dynamodb import batch_get
from resilient_aws.redrive import redrive_sqs
from resilient_aws.results import BatchResult
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import Chaos, FakeClock, MotoServer, chaos
from resilient_aws.testing._moto_sqs import speed_up_moto_sqs
from resilient_aws.testing.emulators import NodeEmulator
from tests.batch_targets import depth, dlq_with_source, make_queue, stream_records, take_all
from tests.dynamo_tables import create_table
from tests.redrive_support import make_moto_sqs_atomic

WITHHELD = 0.4  # chaos ``partial``: each entry of a batch request withheld
THROTTLED = 0.05  # chaos ``throttle``: a whole request throttled
KEYS = 1_100
RECORDS = 500
MESSAGES = 200
GROUPS = 10


def default_policy(seed: int) -> RetryPolicy:
    """The default policy; only time (and the jitter's random numbers) faked."""
    clock = FakeClock(seed=seed)
    return RetryPolicy(sleep=clock.sleep, clock=clock.monotonic, rng=random.Random(seed))


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def given_up(result: BatchResult[Any], what: str) -> str:
    behind = sum(f.code == "PrecedingEntryFailed" for f in result.failed)
    shown = ", ".join(f"{f.entry_id} ({f.code}, gave_up={f.gave_up})" for f in result.failed[:5])
    return (
        f"{len(result.failed)} of {result.submitted} {what} given up "
        f"({len(result.failed) - behind} by the retry core, {behind} held behind them): {shown}"
    )


def assert_pressure(injected: Chaos, entries: int) -> None:
    """Chaos really withheld entries. Throttles are not required: at 5 % a run of a few dozen
    requests (an engine that fills its requests well makes few) may draw none; the seeded runs
    in ``tests/reliability/test_pressure.py`` throttle thousands of requests."""
    assert injected.stats.withheld_entries > 0.3 * entries, injected.stats


def _body(n: int) -> str:
    return json.dumps({"n": n})


def _group(n: int) -> str:
    return f"g{n % GROUPS}"


def _attributes(n: int) -> dict[str, Any]:
    return {"n": {"DataType": "Number", "StringValue": str(n)}}


def assert_fifo_queue_holds_every_message_once_in_order(sqs: Any, url: str) -> None:
    taken = take_all(sqs, url)
    numbers = [json.loads(m["Body"])["n"] for m in taken]
    assert Counter(numbers) == Counter(range(MESSAGES)), "messages lost, doubled or invented"
    per_group: dict[str, list[int]] = defaultdict(list)
    for message, n in zip(taken, numbers, strict=True):
        assert message["Attributes"]["MessageGroupId"] == _group(n)
        assert message["MessageAttributes"]["n"]["StringValue"] == str(n)
        per_group[message["Attributes"]["MessageGroupId"]].append(n)
    for group, ns in per_group.items():
        assert ns == sorted(ns), f"group {group} out of order: {ns}"


# -- batch_get on dynalite ------------------------------------------------------------------------


@pytest.mark.emulator
def test_batch_get_on_dynalite_gives_up_no_key(dynalite_server: NodeEmulator) -> None:
    seed = 4
    ddb = dynalite_server.client("dynamodb")
    table = create_table(ddb, _name("pressure"))
    keys = [f"k{i:04d}" for i in range(KEYS)]
    for start in range(0, KEYS, 25):  # written without faults, with the plain client
        requests: list[Any] = [
            {"PutRequest": {"Item": {"pk": {"S": k}, "n": {"N": str(start + i)}}}}
            for i, k in enumerate(keys[start : start + 25])
        ]
        while requests:
            answer = ddb.batch_write_item(RequestItems={table: requests})
            requests = answer.get("UnprocessedItems", {}).get(table, [])

    with chaos(ddb, partial=WITHHELD, throttle=THROTTLED, seed=seed) as injected:
        result = batch_get(
            table,
            [{"pk": k} for k in keys],
            client=ddb,
            policy=default_policy(seed),
            keep_order=True,
            raise_on_failure=False,
        )

    assert result.failed == [], given_up(result, "keys")
    assert result.submitted == result.succeeded + len(result.failed) + result.deduplicated == KEYS
    assert result.items == [{"pk": k, "n": Decimal(i)} for i, k in enumerate(keys)]
    assert result.missing == []
    assert_pressure(injected, KEYS)


# -- KinesisPutter on kinesalite ------------------------------------------------------------------


@pytest.mark.emulator
def test_kinesis_on_kinesalite_gives_up_no_record(kinesalite_server: NodeEmulator) -> None:
    seed = 36
    kinesis = kinesalite_server.client("kinesis")
    stream = _name("pressure")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    sent = {f"r{i}".encode(): f"key-{i % 40}" for i in range(RECORDS)}

    with (
        chaos(kinesis, partial=WITHHELD, throttle=THROTTLED, seed=seed) as injected,
        KinesisPutter(
            stream, client=kinesis, policy=default_policy(seed), raise_on_failure=False
        ) as putter,
    ):
        for data, key in sent.items():
            putter.put(data, key, id=data.decode())

    result = putter.result
    assert result.failed == [], given_up(result, "records")
    assert result.submitted == result.succeeded + len(result.failed) == RECORDS
    stored = stream_records(kinesis, stream)
    assert Counter(data for _, data in stored) == Counter(list(sent)), (
        "records lost, doubled or invented in the stream"
    )
    assert all(sent[data] == key for key, data in stored)
    assert_pressure(injected, RECORDS)


# -- SQS FIFO and the redrive drain on a moto server ----------------------------------------------


@pytest.fixture
def sqs(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    make_moto_sqs_atomic(monkeypatch)  # the server runs in this process: SQS calls are atomic
    # moto's FIFO SendMessageBatch costs ~0.1 s (per-message scans): same behaviour, less cost
    undo = speed_up_moto_sqs()
    try:
        yield moto_server.client("sqs")
    finally:
        undo()


def test_sqs_fifo_on_a_moto_server_gives_up_no_message(sqs: Any) -> None:
    seed = 17
    url, _ = make_queue(sqs, _name("pressure") + ".fifo", FifoQueue="true")

    with (
        chaos(sqs, partial=WITHHELD, throttle=THROTTLED, seed=seed) as injected,
        SqsSender(
            url, client=sqs, policy=default_policy(seed), concurrency=1, raise_on_failure=False
        ) as sender,
    ):
        for n in range(MESSAGES):
            sender.send_message(
                _body(n),
                id=f"m{n}",
                attributes=_attributes(n),
                group_id=_group(n),
                deduplication_id=f"d{n}",
            )

    result = sender.result
    assert result.failed == [], given_up(result, "messages")
    assert result.submitted == result.succeeded + len(result.failed) == MESSAGES
    assert_fifo_queue_holds_every_message_once_in_order(sqs, url)
    assert_pressure(injected, MESSAGES)


def test_redrive_drain_on_a_moto_server_gives_up_no_message(sqs: Any) -> None:
    seed = 17
    dlq, source = dlq_with_source(sqs, _name("pressure"), fifo=True)
    for start in range(0, MESSAGES, 10):  # dead letters, put without faults
        sqs.send_message_batch(
            QueueUrl=dlq,
            Entries=[
                {
                    "Id": str(n - start),
                    "MessageBody": _body(n),
                    "MessageGroupId": _group(n),
                    "MessageDeduplicationId": f"d{n}",
                    "MessageAttributes": _attributes(n),
                }
                for n in range(start, start + 10)
            ],
        )

    with chaos(sqs, partial=WITHHELD, throttle=THROTTLED, seed=seed) as injected:
        report = redrive_sqs(
            dlq, client=sqs, policy=default_policy(seed), wait_time_s=0, concurrency=1
        )

    problems = {**report.failed, **report.undeleted}
    shown = ", ".join(f"{k} ({v[:40]})" for k, v in list(problems.items())[:5])
    assert not problems, (
        f"{len(report.failed)} failed and {len(report.undeleted)} undeleted of {MESSAGES} "
        f"messages ({report.received} received): {shown}"
    )
    assert report.received == report.moved == MESSAGES, report
    assert report.target == source
    assert depth(sqs, dlq) == 0, "the DLQ is not empty"
    assert_fifo_queue_holds_every_message_once_in_order(sqs, source)
    assert_pressure(injected, MESSAGES)
