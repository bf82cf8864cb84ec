"""``@idempotent`` on ``async def``: the store's aiobotocore client vs ``asyncio.to_thread``.

Side by side in one run, against one moto server in its own process, the same store
configuration and the same function, the only difference being ``async_client=``:

a. one call at a time (median of ``--rounds`` interleaved rounds of ``--calls`` calls): wall
   time and this process's CPU per decorated call, first calls (fresh keys: PutItem +
   UpdateItem) and repeats (one PutItem, the result replayed);
b. ``--tasks`` calls at once on the event loop (distinct keys): calls per second and CPU per
   call. ``to_thread`` runs on the loop's default executor (min(32, cores + 4) threads).

``--delay-ms`` (default 5) puts ``bench/_proxy.py`` between the clients and moto, adding that
latency to every request, as a network to DynamoDB does (0: straight to moto).

    python bench/idempotency_async.py [--calls 100] [--rounds 3] [--tasks 64] [--delay-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from aiobotocore.session import get_session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proxy import LatencyProxy
from batch_send import moto_server

from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

POLICY = RetryPolicy()
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "bench")


async def process(order: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": order["id"], "status": "charged", "amount": order["amount"]}


def make_table(client: Any, name: str) -> str:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


async def sequential(fn: Any, keys: list[str]) -> tuple[float, float]:
    """(wall, CPU) microseconds per call, one call at a time."""
    started, cpu = time.perf_counter(), time.process_time()
    for key in keys:
        await fn({"id": key, "amount": 3})
    count = len(keys)
    return (time.perf_counter() - started) / count * 1e6, (time.process_time() - cpu) / count * 1e6


async def concurrent(fn: Any, keys: list[str]) -> tuple[float, float]:
    """(calls per second, CPU microseconds per call), every call at once."""
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(fn({"id": key, "amount": 3}) for key in keys))
    wall = time.perf_counter() - started
    return len(keys) / wall, (time.process_time() - cpu) / len(keys) * 1e6


async def run(endpoint: str, calls: int, rounds: int, tasks: int) -> None:
    sync = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        config=POLICY.botocore_config(max_pool_connections=tasks),
        **DUMMY_CREDENTIALS,
    )
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=endpoint,
        config=POLICY.botocore_config(max_pool_connections=tasks),
        **DUMMY_CREDENTIALS,
    ) as aio:
        fns = {
            "to_thread": idempotent(
                IdempotencyStore(make_table(sync, "threaded"), client=sync, policy=POLICY),
                payload="order",
                key="id",
            )(process),
            "async client": idempotent(
                IdempotencyStore(
                    make_table(sync, "native"), client=sync, async_client=aio, policy=POLICY
                ),
                payload="order",
                key="id",
            )(process),
        }
        for fn in fns.values():  # connections, caches
            await sequential(fn, [f"warm-{i}" for i in range(20)])
        first: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
        repeat: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
        burst: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
        for r in range(rounds):
            keys = [f"r{r}-{i}" for i in range(calls)]
            order = list(fns.items()) if r % 2 == 0 else list(reversed(fns.items()))
            for name, fn in order:
                first[name].append(await sequential(fn, keys))
            for name, fn in order:
                repeat[name].append(await sequential(fn, keys))
            for name, fn in order:
                burst[name].append(await concurrent(fn, [f"b{r}-{i}" for i in range(tasks)]))
    print(f"a. one call at a time, median of {rounds} rounds of {calls} calls")
    for label, data in (("first call", first), ("repeat", repeat)):
        for column, what in ((0, "wall"), (1, "CPU")):
            threaded = statistics.median(x[column] for x in data["to_thread"])
            native = statistics.median(x[column] for x in data["async client"])
            print(
                f"   {label:11} {what:5} to_thread {threaded:6.0f} us   async client "
                f"{native:6.0f} us   ratio {native / threaded:.2f}x"
            )
    print(f"b. {tasks} first calls at once, median of {rounds} rounds")
    for column, what, unit in ((0, "throughput", "calls/s"), (1, "CPU/call", "us")):
        threaded = statistics.median(x[column] for x in burst["to_thread"])
        native = statistics.median(x[column] for x in burst["async client"])
        print(
            f"   {what:10} to_thread {threaded:6.0f} {unit:7} async client {native:6.0f} "
            f"{unit:7} ratio {native / threaded:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    args = parser.parse_args()
    import aiobotocore

    print(
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"aiobotocore {aiobotocore.__version__}, {os.cpu_count()} cores; moto server in its "
        f"own process, {args.delay_ms:g} ms of latency per request"
    )
    with contextlib.ExitStack() as stack:
        endpoint, _pid = stack.enter_context(moto_server(in_process=False))
        if args.delay_ms > 0:
            endpoint = stack.enter_context(
                LatencyProxy(endpoint, delay=args.delay_ms / 1000)
            ).endpoint_url
        asyncio.run(run(endpoint, args.calls, args.rounds, args.tasks))


if __name__ == "__main__":
    main()
