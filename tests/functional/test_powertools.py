"""A BatchWriter under chaos against moto, counted by PowertoolsMetricsListener: the EMF metrics
agree with what chaos injected and with the writer's own account of every entry."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics, Metrics

from resilient_aws.batch import SqsSender
from resilient_aws.dynamodb import BatchWriter
from resilient_aws.errors import BatchWriteError
from resilient_aws.powertools import PowertoolsMetricsListener
from resilient_aws.testing import FakeClock, FakeLambdaContext, chaos
from tests.dynamo_tables import all_items, create_table

ITEMS = 600


def metric_totals(out: str) -> dict[str, dict[str, float]]:
    """{operation: {metric: total}} over the EMF lines Powertools printed."""
    totals: dict[str, dict[str, float]] = {}
    for line in out.splitlines():
        blob = json.loads(line)
        directive = blob["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "Orders"
        assert sorted(directive["Dimensions"][0]) == ["operation", "service"]
        assert blob["service"] == "orders"
        values = totals.setdefault(blob["operation"], {})
        for metric in directive["Metrics"]:
            values[metric["Name"]] = values.get(metric["Name"], 0.0) + sum(blob[metric["Name"]])
    return totals


@pytest.fixture(autouse=True)
def _metrics_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_handler_writing_under_chaos_reports_every_retry_and_every_withheld_entry(
    ddb: Any, seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every run is checked; seeds are tried until one draws a throttle too (chaos decides on a
    request's body, so which seed does depends on how the writer cut its requests)."""
    for attempt in range(8):
        if _handler_under_chaos(ddb, seed + 10 * attempt, capsys):
            return
    pytest.fail("no seed drew a throttle")


def _handler_under_chaos(ddb: Any, seed: int, capsys: pytest.CaptureFixture[str]) -> bool:
    table = create_table(ddb, f"orders-{seed}", range_key=("sk", "N"))
    metrics = Metrics(namespace="Orders", service="orders")
    retry_metrics = PowertoolsMetricsListener(metrics)
    policy = FakeClock(seed=seed).policy(max_attempts=30, max_delay=2.0)

    @retry_metrics.capture()
    def handler(event: dict[str, Any], context: FakeLambdaContext) -> int:
        with BatchWriter(
            table, client=ddb, policy=policy.for_lambda(context), concurrency=4
        ) as writer:
            for order in event["orders"]:
                writer.put(order)
        return writer.result.succeeded

    orders = [{"pk": f"customer-{i % 40}", "sk": i, "total": i / 100} for i in range(ITEMS)]
    with chaos(ddb, seed=seed, partial=0.3, throttle=0.2) as injected:
        written = handler({"orders": orders}, FakeLambdaContext(timeout_s=900))

    assert written == ITEMS
    assert len(all_items(ddb, table)) == ITEMS
    totals = metric_totals(capsys.readouterr().out)
    writes = totals["BatchWriteItem"]
    stats = injected.stats
    assert stats.withheld_entries > 50
    # every entry DynamoDB left unprocessed was counted, once
    assert writes["PartialFailureEntries"] == stats.withheld_entries
    # every injected fault was followed by exactly one retry, and none was given up (a throttle
    # may land on the writer's DescribeTable too: its retry is counted under that operation)
    retries = sum(counted.get("RetryAttempt", 0) for counted in totals.values())
    assert retries == stats.partial_calls + stats.throttled
    assert writes["RetryRecovered"] >= 1
    assert writes["RetryDelay"] > 0
    assert "RetryGiveUp" not in writes
    assert "PermanentFailureEntries" not in writes
    return stats.throttled > 0


def test_entries_given_up_are_the_entries_the_writer_reports_failed(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    table = create_table(ddb, "orders", range_key=("sk", "N"))
    retry_metrics = PowertoolsMetricsListener(
        EphemeralMetrics(namespace="Orders", service="orders")
    )
    # max_stalled=0: give up after max_attempts requests that completed nothing, at once
    policy = FakeClock(seed=5).policy(max_attempts=2, max_stalled=0, listeners=(retry_metrics,))

    with (
        chaos(ddb, seed=5, partial=0.9) as injected,
        retry_metrics.capture(install=False),
        pytest.raises(BatchWriteError) as caught,
        BatchWriter(table, client=ddb, policy=policy) as writer,
    ):
        for i in range(200):
            writer.put({"pk": "p", "sk": i})

    result = caught.value.result
    assert result.failed
    assert all(f.gave_up == "attempts" and f.code == "Unprocessed" for f in result.failed)
    stored = len(all_items(ddb, table))
    assert stored + len(result.failed) == 200 == result.submitted
    totals = metric_totals(capsys.readouterr().out)
    writes = totals["BatchWriteItem"]
    assert writes["RetryGiveUpEntries"] == len(result.failed)
    assert writes["PartialFailureEntries"] == injected.stats.withheld_entries
    # every response that withheld entries sent them back (one RetryAttempt) or gave them up
    # (one RetryGiveUp per reason), or both when it did each to some of them
    assert writes["RetryAttempt"] <= injected.stats.partial_calls
    assert writes["RetryAttempt"] + writes["RetryGiveUp"] >= injected.stats.partial_calls
    assert writer.result is result


def test_sqs_sends_are_counted_under_their_own_operation(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    retry_metrics = PowertoolsMetricsListener(
        EphemeralMetrics(namespace="Orders", service="orders")
    )
    policy = FakeClock(seed=3).policy(max_attempts=30)
    with (
        chaos(sqs, seed=3, partial=0.4) as injected,
        retry_metrics.capture(),
        SqsSender(queue_url, client=sqs, policy=policy) as sender,
    ):
        for i in range(50):
            sender.send_message(json.dumps({"order": i}), id=f"order-{i}")
    assert sender.result.succeeded == 50
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "50"
    sends = metric_totals(capsys.readouterr().out)["SendMessageBatch"]
    assert sends["PartialFailureEntries"] == injected.stats.withheld_entries > 0
