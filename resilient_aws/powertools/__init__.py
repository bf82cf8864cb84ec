"""Powertools for AWS Lambda integration (``lambda`` extra): retry metrics and structured logs.

>>> from aws_lambda_powertools import Logger, Metrics  # doctest: +SKIP
>>> from resilient_aws.powertools import PowertoolsMetricsListener, attach_logger
>>> metrics = Metrics(namespace="Orders", service="orders")  # doctest: +SKIP
>>> retry_metrics = PowertoolsMetricsListener(metrics)  # doctest: +SKIP
>>> @retry_metrics.capture()  # doctest: +SKIP
... def handler(event, context): ...
>>> attach_logger(Logger(service="orders"))  # doctest: +SKIP

:class:`PowertoolsMetricsListener` turns the retry core's events (retries, give-ups, budget
refusals, per-entry partial failures) into CloudWatch metrics in the Embedded Metric Format,
one EMF blob per operation, through Powertools' own serializer. :func:`attach_logger` routes
the library's stdlib loggers through a Powertools ``Logger``, whose JSON output then carries
each retry event's fields under ``retry_event``.

Importing this subpackage imports ``aws_lambda_powertools``; ``import resilient_aws`` and the
retry core never do.
"""

try:
    from resilient_aws.powertools._logger import attach_logger
    from resilient_aws.powertools._metrics import (
        DIMENSIONS,
        METRICS,
        Dimension,
        PowertoolsMetricsListener,
    )
except ModuleNotFoundError as missing:  # the extra is not installed: say how to install it
    if not (missing.name or "").startswith("aws_lambda_powertools"):
        raise
    raise ModuleNotFoundError(
        "resilient_aws.powertools needs aws-lambda-powertools: pip install 'resilient-aws[lambda]'",
        name=missing.name,
    ) from missing

__all__ = ["DIMENSIONS", "METRICS", "Dimension", "PowertoolsMetricsListener", "attach_logger"]
