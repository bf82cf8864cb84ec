"""The batch senders over HTTP: a moto server for SQS/SNS/EventBridge/Firehose, kinesalite for Kinesis."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import defaultdict
from typing import Any

import pytest

from resilient_aws.batch import (
    EventBridgePutter,
    FirehosePutter,
    KinesisPutter,
    SnsPublisher,
    SqsSender,
)
from resilient_aws.limits import KINESIS_PUT_RECORDS
from resilient_aws.testing import FakeClock, MotoServer, chaos
from resilient_aws.testing.emulators import NodeEmulator
from tests.batch_targets import (
    bucket_lines,
    drain,
    eventbridge_to_queue,
    firehose_to_bucket,
    make_queue,
    sns_to_queue,
    stream_records,
)

FAULTS = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01}
_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def test_all_five_over_a_moto_server(moto_server: MotoServer) -> None:
    sqs, sns, events = (moto_server.client(s) for s in ("sqs", "sns", "events"))
    firehose, s3 = moto_server.client("firehose"), moto_server.client("s3")
    policy = FakeClock(seed=1).policy(max_attempts=30)

    queue, _ = make_queue(sqs, _name("q"))
    with chaos(sqs, seed=1, **FAULTS), SqsSender(queue, client=sqs, policy=policy) as sender:
        sender.send_many(f"q{i}" for i in range(100))
    assert sorted(drain(sqs, queue)) == sorted(f"q{i}" for i in range(100))

    topic, subscribed = sns_to_queue(sns, sqs, _name("t"))
    with chaos(sns, seed=2, **FAULTS), SnsPublisher(topic, client=sns, policy=policy) as publisher:
        for i in range(100):
            publisher.publish(f"t{i}")
    assert sorted(drain(sqs, subscribed)) == sorted(f"t{i}" for i in range(100))

    routed = eventbridge_to_queue(events, sqs, _name("r"))
    with chaos(events, seed=3, **FAULTS), EventBridgePutter(client=events, policy=policy) as putter:
        for i in range(100):
            putter.put({"i": i}, source="test", detail_type="T")
    assert sorted(json.loads(b)["detail"]["i"] for b in drain(sqs, routed)) == list(range(100))

    bucket = _name("fh")
    firehose_to_bucket(firehose, s3, bucket)
    with (
        chaos(firehose, seed=4, **FAULTS),
        FirehosePutter(bucket, client=firehose, policy=policy) as records,
    ):
        for i in range(100):
            records.put(f"f{i}\n")
    assert sorted(bucket_lines(s3, bucket)) == sorted(f"f{i}".encode() for i in range(100))


@pytest.fixture
def kinesis(kinesalite_server: NodeEmulator) -> Any:
    return kinesalite_server.client("kinesis")


def _stream(kinesis: Any, shards: int = 2) -> str:
    name = _name("s")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    return name


# kinesalite caps a request at 5 MiB (Kinesis takes 10 MiB): tell the putter.
KINESALITE_LIMITS = KINESIS_PUT_RECORDS.__class__(
    max_entries=500, max_request_bytes=5 * 1024 * 1024, max_entry_bytes=1024 * 1024
)


@pytest.mark.emulator
def test_kinesis_concurrent_puts_against_kinesalite(kinesis: Any) -> None:
    stream = _stream(kinesis)
    with (
        chaos(kinesis, seed=5, **FAULTS),
        KinesisPutter(
            stream,
            client=kinesis,
            policy=FakeClock().policy(max_attempts=30),
            concurrency=4,
            limits=KINESALITE_LIMITS,
        ) as putter,
    ):
        for i in range(2000):
            putter.put(f"r{i}", f"k{i % 50}")
    assert putter.result.succeeded == 2000
    assert sorted(d for _, d in stream_records(kinesis, stream)) == sorted(
        f"r{i}".encode() for i in range(2000)
    )


@pytest.mark.emulator
def test_kinesis_ordered_mode_against_kinesalite(kinesis: Any) -> None:
    stream = _stream(kinesis, shards=3)
    with (
        chaos(kinesis, seed=6, **FAULTS),
        KinesisPutter(
            stream,
            client=kinesis,
            ordered=True,
            policy=FakeClock().policy(max_attempts=40),
            concurrency=4,
            limits=KINESALITE_LIMITS,
        ) as putter,
    ):
        for i in range(600):
            putter.put(str(i), f"key-{i % 12}")
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, data in stream_records(kinesis, stream):
        per_key[key].append(int(data))
    assert sum(map(len, per_key.values())) == 600
    assert all(numbers == sorted(numbers) for numbers in per_key.values())


@pytest.mark.emulator
def test_a_batch_kinesalite_rejects_whole_is_reported_entry_by_entry(kinesis: Any) -> None:
    # Told a stream takes 10 MiB records (MaxRecordSizeInKiB raised), the putter sends a 2 MiB
    # record that this stream (kinesalite: 1 MiB) refuses with the whole request.
    stream = _stream(kinesis)
    putter = KinesisPutter(
        stream,
        client=kinesis,
        raise_on_failure=False,
        policy=FakeClock().policy(max_attempts=2),
        limits=dataclasses.replace(KINESIS_PUT_RECORDS, max_entry_bytes=10 * 1024 * 1024),
    )
    putter.put(b"ok", "k")
    putter.put(b"x" * (2 * 1024 * 1024), "k", id="huge")
    result = putter.close()
    assert [f.entry_id for f in result.failed] == ["huge"]
    assert result.succeeded == 1
    assert [d for _, d in stream_records(kinesis, stream)] == [b"ok"]
