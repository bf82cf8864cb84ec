"""Retries you can see in CloudWatch: Powertools Metrics (EMF) and Logger for the retry core.

A Lambda handler writes orders with a ``BatchWriter``. ``PowertoolsMetricsListener`` counts
what the retry core did in the invocation (retries, backoff time, entries DynamoDB left
unprocessed, give-ups) and prints it as CloudWatch EMF when the invocation ends;
``attach_logger`` makes the library's warnings JSON lines of the handler's Powertools Logger.
Runs against moto in process (``pip install 'resilient-aws[test]'``)::

    python examples/powertools_metrics.py
"""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from moto import mock_aws

from resilient_aws.dynamodb import BatchWriter
from resilient_aws.powertools import PowertoolsMetricsListener, attach_logger
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeLambdaContext, chaos

# -- the function (module level: created once per execution environment) ----------------------

logger = Logger(service="orders")  # POWERTOOLS_SERVICE_NAME in a deployed function
metrics = Metrics(namespace="Orders", service="orders")  # POWERTOOLS_METRICS_NAMESPACE
retry_metrics = PowertoolsMetricsListener(metrics)
attach_logger(logger)  # give-ups and permanent failures become JSON lines with "retry_event"

policy = RetryPolicy(max_attempts=14, base_delay=0.01, max_delay=0.2)
dynamodb: Any = None  # boto3.client("dynamodb") in a deployed function


@logger.inject_lambda_context
@metrics.log_metrics
@retry_metrics.capture()  # counts this invocation's retry events, flushes them at its end
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with BatchWriter(
        "orders",
        client=dynamodb,
        policy=policy.for_lambda(context, margin_s=1.0),
        concurrency=4,
        raise_on_failure=False,
    ) as writer:
        for order in event["orders"]:
            writer.put(order)
    result = writer.result
    metrics.add_metric(name="OrdersWritten", unit=MetricUnit.Count, value=result.succeeded)
    # Nothing is lost silently: what could not be written goes back to the caller, by key.
    return {"written": result.succeeded, "failed": [f.entry_id for f in result.failed]}


# -- running it against moto ------------------------------------------------------------------


def invoke(event: dict[str, Any], context: FakeLambdaContext) -> dict[str, Any]:
    """Call the handler; show the EMF lines it printed and what they add up to."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # Powertools Metrics print() their EMF
        response = handler(event, context)
    totals: dict[str, float] = {}
    for line in printed.getvalue().splitlines():
        blob = json.loads(line)
        print("  EMF:", line[:160] + ("..." if len(line) > 160 else ""))
        for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            name = f"{blob.get('operation', 'handler')}/{metric['Name']}"
            totals[name] = totals.get(name, 0.0) + sum(blob[metric["Name"]])
    for name, value in sorted(totals.items()):
        print(f"  {name:<40} {value:g}")
    return response


orders = [{"pk": f"order-{i}", "total": i / 100} for i in range(500)]

with mock_aws():
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    print("1. DynamoDB under load (30 % of entries unprocessed, 5 % of requests throttled):")
    with chaos(dynamodb, partial=0.3, throttle=0.05, seed=7) as faults:
        response = invoke({"orders": orders}, FakeLambdaContext(timeout_s=60))
    print(f"  -> wrote {response['written']}, failed {len(response['failed'])}")
    print(f"  chaos withheld {faults.stats.withheld_entries} entries: each one counted above")
    assert response["written"] == len(orders)

    # 1 s left and a 1 s margin: no time for any retry. The core does not start a sleep that
    # would end past the deadline; it gives up at once, logs a warning, and reports the entries.
    print("\n2. The same load with no time left in the invocation for a retry:")
    some = orders[:100]
    with chaos(dynamodb, partial=0.3, seed=8):
        response = invoke({"orders": some}, FakeLambdaContext(timeout_s=1.0))
    failed = response["failed"]
    print(f"  -> wrote {response['written']}, failed {len(failed)} (e.g. {failed[:2]})")
    assert failed
    assert response["written"] + len(failed) == len(some)
