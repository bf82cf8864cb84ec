"""Traces on moto: a throttled write's attempts under chaos, and a message's trace id from its
producer through SQS (and SNS) to the consumer's span. The first test is the example of
docs/tracing.md."""

from __future__ import annotations

import json
from typing import Any

import boto3
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from resilient_aws import tracing
from resilient_aws.testing import FakeClock, chaos

REGION = "us-east-1"


def lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """What Lambda hands a function for a message ``ReceiveMessage`` returned."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {"stringValue": value["StringValue"], "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


def receive_event(sqs: Any, queue_url: str, count: int) -> dict[str, Any]:
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        messages += sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["AWSTraceHeader"],
        ).get("Messages", [])
    return {"Records": [lambda_record(m, arn) for m in messages]}


def test_the_docs_example(aws: None) -> None:
    # --8<-- [start:example]
    import boto3
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from resilient_aws import tracing
    from resilient_aws.consumer import BatchProcessor
    from resilient_aws.retry import RetryPolicy
    from resilient_aws.testing import chaos

    # In an application: opentelemetry.trace.set_tracer_provider(...), or the OTel Lambda layer.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_tracer_provider(provider)

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    policy = RetryPolicy(max_attempts=20, base_delay=0.01, throttle_base_delay=0.01)

    # producer: chaos throttles half the sends; the message carries the producer's trace
    with tracing.span("place order") as producer, chaos(sqs, throttle=0.5) as c:
        entry = tracing.inject_into({"QueueUrl": queue_url, "MessageBody": '{"id": 7}'}, "sqs")
        policy.call(sqs.send_message, **entry)
    for span in exporter.get_finished_spans():
        print(span.name, dict(span.attributes or {}).get("error.type", "ok"))
    # SQS.SendMessage attempt RequestThrottled   (one per throttled attempt, if any)
    # SQS.SendMessage attempt ok
    # SQS.SendMessage ok
    # place order ok

    # consumer (a Lambda handler): each record's span continues the producer's trace
    processor = BatchProcessor()
    seen = []

    @processor.handler
    def handler(record):
        from opentelemetry import trace

        seen.append(trace.get_current_span().get_span_context().trace_id)

    handler(receive_event(sqs, queue_url, 1), None)  # the SQS event Lambda would pass
    assert seen == [producer.get_span_context().trace_id]
    # --8<-- [end:example]
    tracing.set_tracer_provider(None)
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("SQS.SendMessage attempt") == (
        c.stats.throttled + 1 if c.stats.throttled else 0
    )
    assert names.count("SQS.SendMessage") == 1
    assert "consume:sqs record" in names


def test_throttled_writes_show_every_attempt_and_lose_nothing(
    ddb: Any, exporter: InMemorySpanExporter
) -> None:
    ddb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    policy = FakeClock().policy(max_attempts=20)
    with tracing.span("load"), chaos(ddb, throttle=0.4, seed=3, operations={"PutItem"}) as c:
        for i in range(30):
            policy.call(ddb.put_item, TableName="orders", Item={"pk": {"S": f"o-{i}"}})
    assert c.stats.throttled > 5
    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.name == "DynamoDB.PutItem"]
    attempts = [s for s in spans if s.name == "DynamoDB.PutItem attempt"]
    assert len(calls) == 30
    throttled = [s for s in attempts if dict(s.attributes or {}).get("error.type")]
    assert len(throttled) == c.stats.throttled
    assert {dict(s.attributes or {})["error.type"] for s in throttled} == {
        "ProvisionedThroughputExceededException"
    }
    for call in calls:
        children = [s for s in attempts if s.parent and s.parent.span_id == call.context.span_id]
        made = dict(call.attributes or {})["resilient_aws.attempts"]
        # a call that never failed is one span; one that did shows every attempt
        assert len(children) == (0 if made == 1 else made)
        assert [e.name for e in call.events] == (
            [] if made == 1 else ["retry"] * (made - 1) + ["recovered"]
        )
    assert sum(dict(c.attributes or {})["resilient_aws.attempts"] for c in calls) == (
        30 + len(throttled)
    )
    stored = ddb.scan(TableName="orders", Select="COUNT")["Count"]
    assert stored == 30  # nothing lost


def test_a_batch_sent_with_trace_context_arrives_in_the_consumers_spans(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    from resilient_aws.consumer import BatchProcessor

    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    producers: dict[str, int] = {}
    entries = []
    for i in range(5):
        with tracing.span(f"order {i}", kind="producer") as span:
            entries.append(
                tracing.inject_into({"Id": f"e{i}", "MessageBody": json.dumps({"id": i})}, "sqs")
            )
            producers[str(i)] = span.get_span_context().trace_id  # type: ignore[attr-defined]
    answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert len(answer["Successful"]) == 5
    event = receive_event(sqs, url, 5)

    arrived: dict[str, int] = {}

    def handle(record: Any) -> None:
        arrived[str(record.json_body["id"])] = trace.get_current_span().get_span_context().trace_id

    assert BatchProcessor().process(event, handle).failed == []
    assert arrived == producers

    # The X-Ray header alone carries the same trace (moto keeps it on SendMessage only)
    xray_url = sqs.create_queue(QueueName="orders-xray")["QueueUrl"]
    for entry in entries:
        sqs.send_message(
            QueueUrl=xray_url,
            MessageBody=entry["MessageBody"],
            MessageSystemAttributes=entry["MessageSystemAttributes"],
        )
    event = receive_event(sqs, xray_url, 5)
    assert all(r["messageAttributes"] == {} for r in event["Records"])
    assert all("AWSTraceHeader" in r["attributes"] for r in event["Records"])
    arrived.clear()
    assert BatchProcessor().process(event, handle).failed == []
    assert arrived == producers


def test_through_an_sns_topic_without_raw_delivery(
    aws: None, exporter: InMemorySpanExporter
) -> None:
    from opentelemetry import trace

    from resilient_aws.consumer import BatchProcessor

    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="orders")["TopicArn"]
    url = sqs.create_queue(QueueName="orders-copy")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    with tracing.span("publish", kind="producer") as span:
        sns.publish(**tracing.inject_into({"TopicArn": topic, "Message": "{}"}, "sns"))
        producer = span.get_span_context().trace_id  # type: ignore[attr-defined]
    event = receive_event(sqs, url, 1)
    assert json.loads(event["Records"][0]["body"])["Type"] == "Notification"
    seen: list[int] = []
    BatchProcessor().process(
        event, lambda r: seen.append(trace.get_current_span().get_span_context().trace_id)
    )
    assert seen == [producer]
