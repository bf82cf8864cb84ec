"""AsyncBatchWriter against the sync BatchWriter and against aioboto3's batch_writer loop, in one
run, at 5 ms of latency per request (dynalite behind ``bench/_proxy.py``).

a. ``BatchWriter(concurrency=8)`` (threads) vs ``AsyncBatchWriter(concurrency=8)`` (tasks on one
   event loop): throughput at equal concurrency.
b. ``AsyncBatchWriter(concurrency=1)`` vs the loop aioboto3's ``Table.batch_writer()`` runs (the
   algorithm of boto3's: items serialized by ``TypeSerializer``, a request per 25, what comes
   back in ``UnprocessedItems`` put back in the buffer, one request at a time) on the same
   aiobotocore client: client CPU per item. aioboto3 itself pins aiobotocore 2.25, which
   conflicts with the aiobotocore 3.x this project is tested on, so its loop is written out.

Every run writes to a fresh table and is counted afterwards. Wall time is the least of the
interleaved rounds; CPU is ``time.process_time`` (this process, every thread). Run:
``python bench/async_write.py [--items 3000] [--rounds 3] [--delay-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).parent))

from _proxy import LatencyProxy
from dynamodb_write import CREDENTIALS, client, count, make_items, new_table

from resilient_aws.dynamodb import AsyncBatchWriter, BatchWriter
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing.emulators import dynalite

CONCURRENCY = 8


def aio_config() -> Config:
    return RetryPolicy().botocore_config().merge(Config(max_pool_connections=CONCURRENCY * 2))


def sync_writer(endpoint: str, items: list[Any], concurrency: int) -> Callable[[str], None]:
    config = aio_config()
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=endpoint, config=config, **CREDENTIALS)

    def run(table: str) -> None:
        with BatchWriter(table, client=ddb, keys="pk", concurrency=concurrency) as writer:
            for item in items:
                writer.put(item)

    return run


async def async_writer(aio: Any, table: str, items: list[Any], concurrency: int) -> None:
    async with AsyncBatchWriter(table, client=aio, keys="pk", concurrency=concurrency) as writer:
        for item in items:
            await writer.put(item)


async def aioboto3_loop(aio: Any, table: str, items: list[Any]) -> None:
    """What aioboto3's ``batch_writer()`` does, request by request."""
    serializer = TypeSerializer()
    buffer: list[dict[str, Any]] = []

    async def flush() -> None:
        nonlocal buffer
        chunk, buffer = buffer[:25], buffer[25:]
        response = await aio.batch_write_item(RequestItems={table: chunk})
        buffer.extend(response.get("UnprocessedItems", {}).get(table, []))

    for item in items:
        wire = {name: serializer.serialize(value) for name, value in item.items()}
        buffer.append({"PutRequest": {"Item": wire}})
        if len(buffer) >= 25:
            await flush()
    while buffer:
        await flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    args = parser.parse_args()
    items = make_items(args.items)

    with (
        dynalite() as emulator,
        LatencyProxy(emulator.endpoint_url, delay=args.delay_ms / 1000) as proxy,
    ):
        direct = client(emulator.endpoint_url)
        loop = asyncio.new_event_loop()
        context = get_session().create_client(
            "dynamodb", endpoint_url=proxy.endpoint_url, config=aio_config(), **CREDENTIALS
        )
        aio = loop.run_until_complete(context.__aenter__())

        def on_loop(make: Callable[[str], Any]) -> Callable[[str], None]:
            return lambda table: loop.run_until_complete(make(table))

        runs: dict[str, Callable[[str], None]] = {
            f"BatchWriter(concurrency={CONCURRENCY})": sync_writer(
                proxy.endpoint_url, items, CONCURRENCY
            ),
            f"AsyncBatchWriter(concurrency={CONCURRENCY})": on_loop(
                lambda t: async_writer(aio, t, items, CONCURRENCY)
            ),
            "AsyncBatchWriter(concurrency=1)": on_loop(lambda t: async_writer(aio, t, items, 1)),
            "aioboto3 batch_writer loop": on_loop(lambda t: aioboto3_loop(aio, t, items)),
        }
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                table = new_table(direct)
                wall, cpu = time.perf_counter(), time.process_time()
                run(table)
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
                written = count(direct, table)
                if written != len(items):
                    raise SystemExit(f"{name}: {written} of {len(items)} items written")
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()

    print(f"DynamoDB (dynalite) + {args.delay_ms:g} ms per request, {len(items):,} items")
    rate = {name: len(items) / min(values) for name, values in walls.items()}
    cpu = {name: min(values) / len(items) * 1e6 for name, values in cpus.items()}
    for name in runs:
        print(f"  {name:40s} {rate[name]:8.0f} items/s  {cpu[name]:7.1f} us CPU/item")
    sync, fast = (
        f"BatchWriter(concurrency={CONCURRENCY})",
        f"AsyncBatchWriter(concurrency={CONCURRENCY})",
    )
    print(f"throughput, async / sync at concurrency {CONCURRENCY}: {rate[fast] / rate[sync]:.2f}x")
    one, loop_name = "AsyncBatchWriter(concurrency=1)", "aioboto3 batch_writer loop"
    print(
        f"CPU per item, AsyncBatchWriter(1) / aioboto3 loop: {cpu[one] / cpu[loop_name]:.2f}x;"
        f" AsyncBatchWriter({CONCURRENCY}) / aioboto3 loop: {cpu[fast] / cpu[loop_name]:.2f}x"
    )
    print(f"throughput, AsyncBatchWriter(1) / aioboto3 loop: {rate[one] / rate[loop_name]:.2f}x")


if __name__ == "__main__":
    main()
