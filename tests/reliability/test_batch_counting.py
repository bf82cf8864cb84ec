"""5,000 entries per service under chaos, counted at the far end: nothing lost, nothing invented.

SQS, SNS (to an SQS subscription) and EventBridge (to an SQS rule target) are counted through
moto's in-process SQS backend, and the queue is emptied every few hundred entries: moto scans
the whole queue on every SendMessage and ReceiveMessage, so a queue of 5,000 messages makes
each call take seconds. Kinesis is read shard by shard, Firehose from the S3 objects it wrote.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs.models import sqs_backends

from resilient_aws.batch import (
    EventBridgePutter,
    FirehosePutter,
    KinesisPutter,
    SnsPublisher,
    SqsSender,
)
from resilient_aws.limits import FIREHOSE_PUT_RECORD_BATCH, KINESIS_PUT_RECORDS
from resilient_aws.testing import Chaos, FakeClock, chaos
from tests.batch_targets import (
    bucket_lines,
    eventbridge_to_queue,
    firehose_to_bucket,
    make_queue,
    sns_to_queue,
    stream_records,
)

REGION = "us-east-1"
N = 5_000
FAULTS = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01, "lost_response": 0.003}


HARVEST_EVERY = 50
# Kinesis and Firehose take 500 records a request: 5,000 records would make about 70 requests,
# too few for a 5% throttle rate to be sure to show up. 50 a request makes several hundred.
SMALL_REQUESTS = 50


def _harvest(url: str) -> list[str]:
    """Take every message out of moto's queue (what a consumer would receive), keeping it small."""
    queue = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues[url.rsplit("/", 1)[1]]
    with queue._messages_lock:
        bodies = [m.body for m in queue._messages]
        queue._messages.clear()
    return bodies


def _send_and_harvest(add: Any, sender: Any, url: str, count: int) -> list[str]:
    arrived: list[str] = []
    for i in range(count):
        add(i)
        if i % HARVEST_EVERY == HARVEST_EVERY - 1:
            sender.flush()
            arrived += _harvest(url)
    sender.flush()
    return arrived + _harvest(url)


def _check(arrived: list[Any], sent: list[Any], injected: Chaos, batch_size: int) -> None:
    """Every entry arrived; duplicates only from responses lost after the service applied them."""
    assert set(arrived) == set(sent), "lost or invented entries"
    duplicates = sum(n - 1 for n in Counter(arrived).values())
    assert duplicates <= injected.stats.lost_responses * batch_size
    assert injected.stats.withheld_entries > N * 0.2
    assert injected.stats.throttled > 0, injected.stats


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.mark.parametrize("seed", [1, 2])
def test_sqs(sqs: Any, seed: int) -> None:
    url, _ = make_queue(sqs, "q")
    sent = [f"m{i}" for i in range(N)]
    with (
        chaos(sqs, seed=seed, **FAULTS) as injected,
        SqsSender(
            url, client=sqs, policy=FakeClock(seed=seed).policy(max_attempts=30), concurrency=2
        ) as sender,
    ):
        arrived = _send_and_harvest(lambda i: sender.send_message(sent[i]), sender, url, N)
    assert sender.result.succeeded == N
    _check(arrived, sent, injected, 10)


@pytest.mark.parametrize("seed", [3, 4])
def test_sns_to_sqs(sqs: Any, seed: int) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic, url = sns_to_queue(sns, sqs, "t")
    sent = [f"n{i}" for i in range(N)]
    with (
        chaos(sns, seed=seed, **FAULTS) as injected,
        SnsPublisher(
            topic, client=sns, policy=FakeClock(seed=seed).policy(max_attempts=30), concurrency=2
        ) as publisher,
    ):
        arrived = _send_and_harvest(lambda i: publisher.publish(sent[i]), publisher, url, N)
    assert publisher.result.succeeded == N
    _check(arrived, sent, injected, 10)


@pytest.mark.parametrize("seed", [5, 6])
def test_eventbridge_to_sqs(sqs: Any, seed: int) -> None:
    events = boto3.client("events", region_name=REGION)
    url = eventbridge_to_queue(events, sqs, "r")
    with (
        chaos(events, seed=seed, **FAULTS) as injected,
        EventBridgePutter(
            client=events, policy=FakeClock(seed=seed).policy(max_attempts=30), concurrency=2
        ) as putter,
    ):
        bodies = _send_and_harvest(
            lambda i: putter.put({"i": i}, source="test", detail_type="T"), putter, url, N
        )
    assert putter.result.succeeded == N
    _check([json.loads(body)["detail"]["i"] for body in bodies], list(range(N)), injected, 10)


@pytest.mark.parametrize("seed", [7, 8])
def test_kinesis(aws: None, seed: int) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=4)
    sent = [f"r{i}".encode() for i in range(N)]
    # moto's Kinesis is not thread-safe: one request at a time (kinesalite tests concurrency)
    with (
        chaos(kinesis, seed=seed, **FAULTS) as injected,
        KinesisPutter(
            "s",
            client=kinesis,
            policy=FakeClock(seed=seed).policy(max_attempts=30),
            concurrency=1,
            limits=dataclasses.replace(KINESIS_PUT_RECORDS, max_entries=SMALL_REQUESTS),
        ) as putter,
    ):
        for i, data in enumerate(sent):
            putter.put(data, f"k{i % 40}")
    assert putter.result.succeeded == N
    _check([d for _, d in stream_records(kinesis, "s")], sent, injected, SMALL_REQUESTS)


@pytest.mark.parametrize("seed", [9, 10])
def test_firehose_to_s3(aws: None, seed: int) -> None:
    firehose = boto3.client("firehose", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    firehose_to_bucket(firehose, s3, "delivery")
    sent = [f"line-{i}".encode() for i in range(N)]
    with (
        chaos(firehose, seed=seed, **FAULTS) as injected,
        FirehosePutter(
            "delivery",
            client=firehose,
            policy=FakeClock(seed=seed).policy(max_attempts=30),
            concurrency=2,
            limits=dataclasses.replace(FIREHOSE_PUT_RECORD_BATCH, max_entries=SMALL_REQUESTS),
        ) as putter,
    ):
        for line in sent:
            putter.put(line + b"\n")
    assert putter.result.succeeded == N
    _check(bucket_lines(s3, "delivery"), sent, injected, SMALL_REQUESTS)
