"""The SQS event Lambda hands a function, built from messages received with boto3: shared by the
tests that run a consumer on what a sender really put in a queue."""

from __future__ import annotations

from typing import Any


def lambda_event(
    messages: list[dict[str, Any]], arn: str, region: str = "us-east-1"
) -> dict[str, Any]:
    """The SQS event Lambda would hand a function for these received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "dataType": value["DataType"],
                        "stringListValues": [],
                        "binaryListValues": [],
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }
