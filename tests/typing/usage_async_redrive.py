"""Documented usage of the async redrive (aiobotocore); checked with ``mypy --strict``."""

from __future__ import annotations

import asyncio
from typing import Any

from aiobotocore.session import get_session

from resilient_aws.redrive import (
    DlqMessage,
    RedriveReport,
    aredrive_eventbridge,
    aredrive_lambda,
    aredrive_sqs,
)
from resilient_aws.retry import RetryPolicy

policy = RetryPolicy(max_attempts=10)


def placed_only(message: DlqMessage) -> bool:
    return message.attribute("RULE_ARN") is not None


async def drain_all(dlq: str, events_dlq: str, failures: str) -> list[RedriveReport]:
    reports: list[RedriveReport] = []
    async with get_session().create_client("sqs", config=policy.botocore_config()) as sqs:
        reports.append(await aredrive_sqs(dlq, client=sqs, policy=policy, concurrency=8))
        reports.append(
            await aredrive_eventbridge(
                events_dlq,
                client=sqs,
                bus_name="orders",
                keep_time=False,
                filter=placed_only,
                progress=reports.append,
            )
        )
        # the Lambda client opened for the run from this session, and closed after it
        reports.append(
            await aredrive_lambda(
                failures,
                client=sqs,
                session=get_session(),
                function_name="arn:aws:lambda:eu-west-1:123456789012:function:orders",
                max_messages=100,
                rate=50.0,
                dry_run=True,
            )
        )
    return reports


async def to_queue(failures: str, retry_queue: str, events_client: Any) -> bool:
    task = asyncio.create_task(aredrive_lambda(failures, target_queue_url=retry_queue))
    report: RedriveReport = await task
    again = await aredrive_eventbridge(failures, events_client=events_client, run_id="r1")
    return report.ok and again.ok and not report.failed
