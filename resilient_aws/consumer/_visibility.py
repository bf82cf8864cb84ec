"""Backing off SQS redeliveries: the visibility of a failed message grows with its receive count.

A failed record comes back when the queue's visibility timeout ends, the same fixed time on the
first receive as on the fifth. :class:`VisibilityBackoff` sets each failed message's visibility
to the retry core's backoff for its ``ApproximateReceiveCount`` (capped, jittered), through the
batch engine's :class:`~resilient_aws.batch.SqsVisibilityChanger`: one
``ChangeMessageVisibilityBatch`` per ten messages, failed entries retried by the core. Nothing
here sleeps or loops on its own.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resilient_aws.errors import ConfigurationError
from resilient_aws.retry import JITTERS, backoff_delay

if TYPE_CHECKING:
    from resilient_aws.retry import Deadline, Jitter, RetryPolicy

__all__ = ["MAX_VISIBILITY_S", "VisibilityBackoff"]

logger = logging.getLogger("resilient_aws.consumer")

MAX_VISIBILITY_S = 43_200  # SQS's ceiling: 12 hours
# SQS counts those 12 hours from the receive, not from the ChangeMessageVisibility call (a
# change to more than what is left is rejected, not shortened): Lambda's poller received the
# message up to a batching window (5 min at most) before the invocation, which runs up to
# 15 min. A timeout never asks for more than what is surely left.
_LAMBDA_IN_FLIGHT_S = 300 + 900
SAFE_MAX_VISIBILITY_S = MAX_VISIBILITY_S - _LAMBDA_IN_FLIGHT_S


@dataclass(frozen=True, kw_only=True)
class VisibilityBackoff:
    """How long a failed SQS message stays invisible before its next delivery.

    The timeout after the ``n``-th receive is the retry core's backoff for attempt ``n``
    (:func:`~resilient_aws.retry.backoff_delay`; ``jitter`` as in
    :class:`~resilient_aws.retry.RetryPolicy`; ``"equal"`` by default, so that a message never
    comes back at once): ``min(max_s, base_s * 2 ** (n - 1))`` jittered,
    rounded up to whole seconds, at most 11 hours 40 minutes (SQS allows 12 hours counted from
    the receive, and Lambda received the message up to 20 minutes earlier). With the defaults: about 15-30 s after the
    first receive, 30-60 s after the second, then 1-2, 2-4 ... up to 7.5-15 minutes.

    ``client`` is the SQS client (default: the library's default SQS client), ``policy`` the
    :class:`~resilient_aws.retry.RetryPolicy` of the ``ChangeMessageVisibilityBatch`` calls
    (bounded by the invocation's deadline), ``queue_url`` the queue's URL when it cannot be
    built from the record's ARN and the client's endpoint (a VPC endpoint, say). ``rng`` is a
    seam for tests.
    """

    base_s: float = 30.0
    max_s: float = 900.0
    jitter: Jitter = "equal"
    client: Any = field(default=None, repr=False, compare=False)
    policy: RetryPolicy | None = None
    queue_url: str | None = None
    rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("base_s", "max_s"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigurationError(name, f"must be a finite number >= 0, got {value!r}")
        if self.max_s < self.base_s:
            raise ConfigurationError("max_s", f"must be >= base_s ({self.base_s!r})")
        if self.max_s > MAX_VISIBILITY_S:
            raise ConfigurationError("max_s", f"SQS allows at most {MAX_VISIBILITY_S} s")
        if self.jitter not in JITTERS:
            raise ConfigurationError("jitter", f"must be one of {JITTERS}, got {self.jitter!r}")

    def timeout_for(self, receive_count: int) -> int:
        """The visibility timeout, in whole seconds, after the ``receive_count``-th receive."""
        delay = backoff_delay(
            max(1, receive_count),
            base=self.base_s,
            cap=self.max_s,
            jitter=self.jitter,
            rng=self._rng,
        )
        return min(SAFE_MAX_VISIBILITY_S, math.ceil(delay))

    @property
    def _rng(self) -> random.Random:
        # one generator per config, made on first use (the dataclass is frozen)
        rng = self.__dict__.get("_made_rng")
        if rng is None:
            rng = self.rng if self.rng is not None else random.Random()
            object.__setattr__(self, "_made_rng", rng)
        return rng

    def apply(
        self,
        failed: list[tuple[str, dict[str, Any]]],
        deadline: Deadline | None,
        *,
        follow: dict[str, str] | None = None,
    ) -> dict[str, int]:
        """Change the visibility of the failed messages ``(message id, record)``; the timeout
        set for each message id that SQS took. Messages it did not take are logged by id and
        come back after the queue's own timeout: they are reported failed either way.

        ``follow`` maps a message id to the failed message whose timeout it takes: a FIFO
        group is held while any of its messages is in flight, so the messages skipped behind
        a failure come back with it, not after the queue's own timeout."""
        if not failed:
            return {}
        from resilient_aws._clients import default_client
        from resilient_aws.batch import SqsVisibilityChanger

        client = self.client if self.client is not None else default_client("sqs")
        by_queue: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for message_id, record in failed:
            by_queue.setdefault(str(record.get("eventSourceARN", "")), []).append(
                (message_id, record)
            )
        wanted: dict[str, int] = {}
        refused: set[str] = set()
        for arn, messages in by_queue.items():
            url = self.queue_url or _queue_url(arn, client)
            if url is None:
                logger.warning(
                    "visibility backoff: no queue URL for %d message(s) (%s); pass queue_url=",
                    len(messages),
                    ", ".join(m for m, _ in messages[:10]),
                )
                continue
            options: dict[str, Any] = {"client": client, "raise_on_failure": False}
            if self.policy is not None:
                options["policy"] = self.policy
            if deadline is not None:
                options["deadline"] = deadline
            with SqsVisibilityChanger(url, **options) as changer:
                for message_id, record in messages:
                    handle = record.get("receiptHandle")
                    if not handle:
                        logger.warning("visibility backoff: %s has no receiptHandle", message_id)
                        continue
                    leader = (follow or {}).get(message_id)
                    if leader is not None and leader in wanted:
                        timeout = wanted[leader]
                    else:
                        attributes = record.get("attributes") or {}
                        count = _int(attributes.get("ApproximateReceiveCount"), 1)
                        timeout = self.timeout_for(count)
                    wanted[message_id] = timeout
                    changer.change(handle, timeout, id=message_id)
            for entry in changer.result.failed:
                refused.add(entry.entry_id)
            if changer.result.failed:
                logger.warning(
                    "visibility backoff: %d message(s) keep the queue's timeout: %s",
                    len(changer.result.failed),
                    ", ".join(f"{f.entry_id} ({f.code})" for f in changer.result.failed[:10]),
                )
        return {m: t for m, t in wanted.items() if m not in refused}


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _queue_url(arn: str, client: Any) -> str | None:
    """``arn:aws:sqs:<region>:<account>:<name>`` as a URL on the client's endpoint."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    _, _, _, region, account, name = parts
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not endpoint:
        endpoint = f"https://sqs.{region}.amazonaws.com"
    return f"{str(endpoint).rstrip('/')}/{account}/{name}"
