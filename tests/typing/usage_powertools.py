"""Documented usage of resilient_aws.powertools; checked with ``mypy --strict``."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from resilient_aws.dynamodb import BatchWriter
from resilient_aws.powertools import (
    DIMENSIONS,
    METRICS,
    Dimension,
    PowertoolsMetricsListener,
    attach_logger,
)
from resilient_aws.results import BatchResult
from resilient_aws.retry import RetryListener, RetryPolicy, add_listener, remove_listener

logger = Logger(service="orders")
metrics = Metrics(namespace="Orders", service="orders")
retry_metrics = PowertoolsMetricsListener(metrics)
attach_logger(logger)
attach_logger(logger, level="DEBUG")

policy = RetryPolicy(max_attempts=10, base_delay=0.05, max_delay=5.0)
dynamodb = boto3.client("dynamodb")


@logger.inject_lambda_context
@metrics.log_metrics
@retry_metrics.capture()
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    with BatchWriter("orders", client=dynamodb, policy=policy.for_lambda(context)) as writer:
        for order in event["orders"]:
            writer.put(order)
    result: BatchResult[Any] = writer.result
    metrics.add_metric(name="OrdersWritten", unit=MetricUnit.Count, value=result.succeeded)
    return {"written": result.succeeded}


# one policy only, flushed by hand (a batch script)
by_code = PowertoolsMetricsListener(
    EphemeralMetrics(namespace="Batch"),
    namespace="BatchRetries",
    dimensions=("operation", "error_code"),
    buffered=True,
)
script_policy = RetryPolicy(listeners=(by_code,))
with by_code.capture(install=False) as same:
    assert same is by_code
by_code.flush()

# for good, on every policy
listener: RetryListener = PowertoolsMetricsListener(metrics, buffered=False)
add_listener(listener)
remove_listener(listener)

chosen: tuple[Dimension, ...] = ("operation", "reason")
names: list[str] = sorted(METRICS)
unit: MetricUnit = METRICS["RetryAttempt"][0]
every: tuple[Dimension, ...] = DIMENSIONS
namespace: str = retry_metrics.namespace
