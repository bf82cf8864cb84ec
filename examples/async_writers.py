"""Writers and reads on asyncio (aiobotocore): every item and message written once, under chaos.

Runs against a moto server started in process (``pip install 'resilient-aws[aio,test]'``)::

    python examples/async_writers.py
"""

from __future__ import annotations

import asyncio
import json

from aiobotocore.session import get_session

from resilient_aws.batch import AsyncSqsSender
from resilient_aws.dynamodb import AsyncBatchWriter, scan
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import MotoServer, chaos

policy = RetryPolicy(base_delay=0.01, max_delay=0.2)
moto_credentials = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


async def main(endpoint: str) -> None:
    session = get_session()
    options = {"endpoint_url": endpoint, "config": policy.botocore_config(), **moto_credentials}
    async with (
        session.create_client("dynamodb", **options) as dynamodb,
        session.create_client("sqs", **options) as sqs,
    ):
        await dynamodb.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        queue = (await sqs.create_queue(QueueName="orders"))["QueueUrl"]

        # AWS under load: 30 % of the entries of a batch come back unprocessed or failed.
        with chaos(dynamodb, partial=0.3, seed=1), chaos(sqs, partial=0.3, seed=2):
            async with AsyncBatchWriter(
                "orders", client=dynamodb, concurrency=8, policy=policy
            ) as writer:
                for n in range(500):
                    await writer.put({"pk": f"order-{n}", "total": n / 4})  # floats welcome
            async with AsyncSqsSender(queue, client=sqs, concurrency=4, policy=policy) as sender:
                for n in range(200):
                    await sender.send_message(json.dumps({"order": n}))

        print(f"writer: {writer.result}")
        print(f"sender: {sender.result}")
        read = [item async for item in scan("orders", client=dynamodb, page_size=100)]
        assert len(read) == writer.result.succeeded == 500, "nothing lost"
        print(f"read back {len(read)} items in {len(set(i['pk'] for i in read))} keys")


with MotoServer() as server:
    asyncio.run(main(server.endpoint_url))
