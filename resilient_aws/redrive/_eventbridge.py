"""EventBridge target dead-letter queue -> the event bus again, with EventBridgePutter.

When EventBridge gives up delivering an event to a rule's target, it sends the event itself
(the JSON document the target would have received) to the target's DLQ, a standard SQS queue,
with the message attributes ``RULE_ARN``, ``TARGET_ARN``, ``ERROR_CODE``, ``ERROR_MESSAGE``,
``EXHAUSTED_RETRY_CONDITION`` and ``RETRY_ATTEMPTS``. Putting the event on its bus again runs
every rule that matches it, not only the failed target's: point ``bus_name`` at a bus with just
that rule when the other targets must not see the event twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from resilient_aws._json import dumps_verbatim, loads_verbatim
from resilient_aws.batch import EventBridgePutter
from resilient_aws.redrive._drain import (
    DEFAULT_REMEMBER_MOVED,
    SETTLER_OPTIONS,
    DrainOptions,
    Outcome,
    drain,
)
from resilient_aws.redrive._message import DlqMessage, Filter
from resilient_aws.redrive._queues import QueueInfo, describe_queue, sqs_client
from resilient_aws.redrive._report import RedriveReport, start_report
from resilient_aws.redrive._sqs import read_result
from resilient_aws.redrive._steps import Steps, run_steps
from resilient_aws.redrive._targets import (
    CLIENT_ERRORS,
    Clients,
    drain_options,
    exists_steps,
    unreachable,
)
from resilient_aws.retry import DEFAULT_POLICY, RetryPolicy

__all__ = ["bus_of_rule", "event_entry", "redrive_eventbridge"]


def bus_of_rule(rule_arn: str) -> str:
    """The event bus of a rule ARN: ``arn:aws:events:r:a:rule/BUS/RULE`` or ``rule/RULE`` (the
    default bus)."""
    resource = rule_arn.split(":", 5)[-1]
    parts = resource.split("/")
    if len(parts) < 2 or parts[0] != "rule":
        raise ValueError(f"NotARuleArn: RULE_ARN {rule_arn!r} is not a rule ARN")
    return parts[1] if len(parts) >= 3 else "default"


def event_entry(message: DlqMessage, bus_name: str | None = None) -> dict[str, Any]:
    """The ``PutEvents`` options for the event in ``message`` (``source``, ``detail_type``,
    ``detail``, ``resources``, ``time``, ``bus_name``, ``region``); ``ValueError`` if the body is
    not an EventBridge event or no bus is known."""
    try:
        event = loads_verbatim(message.body)  # numbers in the detail keep every digit
    except ValueError:
        raise ValueError("NotAnEvent: the body is not JSON") from None
    if not isinstance(event, dict) or not all(k in event for k in ("source", "detail-type")):
        raise ValueError(
            "NotAnEvent: no source and detail-type (an input transformer may have reshaped it)"
        )
    detail = event.get("detail", {})
    if not isinstance(detail, dict):
        raise ValueError("NotAnEvent: detail is not a JSON object")
    rule_arn = message.attribute("RULE_ARN")
    region = event.get("region")
    if bus_name is None:
        if not rule_arn:
            raise ValueError("NoBus: no RULE_ARN attribute to take the bus from; pass bus_name")
        bus_name = bus_of_rule(rule_arn)
    if rule_arn and rule_arn.startswith("arn:"):
        region = rule_arn.split(":")[3] or region
    resources = event.get("resources") or []
    return {
        "detail": dumps_verbatim(detail),
        "source": str(event["source"]),
        "detail_type": str(event["detail-type"]),
        "resources": [str(r) for r in resources] if isinstance(resources, list) else [],
        "time": _time(event.get("time")),
        "bus_name": bus_name,
        "region": str(region) if region else None,
    }


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class EventBridgeDelivery:
    """Puts the events back on their bus (or on ``bus_name``), keeping their original time.

    ``clients`` are :class:`~resilient_aws.redrive._targets.Clients` (or, for the async
    delivery, ``AsyncClients``): an events client per region of the rules."""

    def __init__(self, clients: Any, *, bus_name: str | None, keep_time: bool) -> None:
        self.clients = clients
        self.bus_name = bus_name
        self.keep_time = keep_time

    def by_region(
        self, messages: list[DlqMessage], outcome: Outcome
    ) -> dict[str | None, list[dict[str, Any]]]:
        """The ``put`` options (``id`` the message id) of each event, by the region of its
        rule; a message that is not an event, or has no bus, fails in ``outcome``."""
        by_region: dict[str | None, list[dict[str, Any]]] = {}
        for message in messages:
            try:
                entry = event_entry(message, self.bus_name)
            except ValueError as error:
                outcome.failed[message.message_id] = str(error)
                continue
            if not self.keep_time:
                entry["time"] = None
            by_region.setdefault(entry.pop("region"), []).append(
                {"id": message.message_id, **entry}
            )
        return by_region

    @staticmethod
    def unreachable(
        region: str, entries: list[dict[str, Any]], error: BaseException, outcome: Outcome
    ) -> None:
        """No events client can be made for the ``region`` a rule ARN names: its events fail."""
        for entry in entries:
            outcome.failed[entry["id"]] = unreachable("events", region, error)

    def deliver(self, messages: list[DlqMessage], policy: RetryPolicy) -> Outcome:
        outcome = Outcome()
        for region, entries in self.by_region(messages, outcome).items():
            try:
                client = self.clients.get("events", region)
            except CLIENT_ERRORS as error:
                if region is None:
                    raise  # the run's own configuration, not a message's
                self.unreachable(region, entries, error, outcome)
                continue
            putter = EventBridgePutter(client=client, policy=policy, **SETTLER_OPTIONS)
            for entry in entries:
                putter.put(**entry)
            read_result(putter.close(), outcome)
        return outcome


def bus_steps(bus_name: str) -> Steps[None]:
    """:class:`RedriveNotFoundError` if there is no event bus ``bus_name``, for either kind
    of client (:mod:`._steps`)."""
    return exists_steps("describe_event_bus", {"Name": bus_name}, bus_name, "target event bus")


def eventbridge_run(
    clients: Any, source: QueueInfo, delivery_type: type[EventBridgeDelivery], arguments: Any
) -> tuple[Any, RedriveReport, DrainOptions]:
    """The delivery, the empty report and the options of a drain of ``source`` onto the event
    buses, for a sync or an async driver; ``arguments`` are those :func:`redrive_eventbridge`
    was called with (its ``locals()``)."""
    bus_name = arguments["bus_name"]
    options = drain_options(source, arguments)
    report = start_report(
        source,
        kind="eventbridge",
        target=bus_name or "the bus of each rule",
        run_id=arguments["run_id"],
        dry_run=options.dry_run,
        max_messages=options.max_messages,
    )
    delivery = delivery_type(clients, bus_name=bus_name, keep_time=arguments["keep_time"])
    return delivery, report, options


def redrive_eventbridge(
    source_queue_url: str,
    *,
    bus_name: str | None = None,
    keep_time: bool = True,
    client: Any = None,
    events_client: Any = None,
    session: Any = None,
    policy: RetryPolicy | None = None,
    max_messages: int | None = None,
    rate: float | None = None,
    filter: Filter | None = None,
    dry_run: bool = False,
    visibility_timeout: int = 120,
    wait_time_s: int = 1,
    run_id: str | None = None,
    concurrency: int = 4,
    progress: Callable[[RedriveReport], None] | None = None,
    remember_moved: int = DEFAULT_REMEMBER_MOVED,
) -> RedriveReport:
    """Put the events of an EventBridge target DLQ back on their event bus.

    The bus is the one in each message's ``RULE_ARN`` attribute, or ``bus_name`` for all (a
    name or an ARN; checked to exist before anything moves). Each event keeps its ``source``,
    ``detail-type``, ``detail``, ``resources`` and, with ``keep_time``, its original ``time``;
    EventBridge gives it a new id. Entries go through
    :class:`~resilient_aws.batch.EventBridgePutter` (per-entry retries), and a message is deleted
    only once its event was accepted. Messages that are not EventBridge events fail and stay.
    The other options work as in :func:`redrive_sqs`.
    """
    policy = policy or DEFAULT_POLICY
    sqs = sqs_client(client, session)
    clients = Clients(session, sqs=sqs, events=events_client)
    source = describe_queue(sqs, source_queue_url, policy, "source queue")
    if bus_name is not None:
        run_steps(clients.get("events"), policy, bus_steps(bus_name))
    delivery, report, options = eventbridge_run(clients, source, EventBridgeDelivery, locals())
    return drain(sqs, source.url, delivery, report, options, policy)
