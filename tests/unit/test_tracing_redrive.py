"""The async drain keeps a message's trace too: it asks for the X-Ray ``AWSTraceHeader`` and the
copy carries it (and the W3C attributes), on an in-memory async SQS."""

from __future__ import annotations

from typing import Any

from resilient_aws.redrive import aredrive_sqs
from resilient_aws.testing import FakeClock
from tests.unit.test_async_redrive import DLQ, TARGET, FakeSqs

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = {
    "DataType": "String",
    "StringValue": "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
}


class TracedSqs(FakeSqs):
    """Message ``id-0`` carries a trace (X-Ray header and traceparent), the others none;
    every receive's parameters and every entry sent are kept."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.receives: list[dict[str, Any]] = []
        self.entries: list[dict[str, Any]] = []

    async def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **params: Any) -> Any:  # noqa: N803
        self.receives.append(params)
        answer = await super().receive_message(QueueUrl, MaxNumberOfMessages)
        for message in answer["Messages"]:
            if message["MessageId"] == "id-0":
                message["Attributes"] = {"AWSTraceHeader": XRAY}
                message["MessageAttributes"] = {"traceparent": TRACEPARENT}
        return answer

    async def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:  # noqa: N803
        self.entries.extend(Entries)
        return await super().send_message_batch(QueueUrl, Entries)


async def test_the_async_drain_keeps_the_trace_header() -> None:
    client = TracedSqs(3)
    report = await aredrive_sqs(
        DLQ, target_queue_url=TARGET, client=client, policy=FakeClock().policy(), wait_time_s=0
    )
    assert report.moved == 3 and client.queues[DLQ] == {}
    assert client.receives
    for params in client.receives:
        names = [*params.get("MessageSystemAttributeNames", []), *params.get("AttributeNames", [])]
        assert "All" in names or "AWSTraceHeader" in names
    traced = [e for e in client.entries if "MessageSystemAttributes" in e]
    assert len(traced) == 1 and len(client.entries) == 3
    assert traced[0]["MessageSystemAttributes"] == {
        "AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}
    }
    assert traced[0]["MessageAttributes"] == {"traceparent": TRACEPARENT}
    assert all("MessageAttributes" not in e for e in client.entries if e is not traced[0])
