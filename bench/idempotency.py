"""@idempotent against Powertools' ``idempotent_function``, same moto server, side by side.

a. DynamoDB requests per call, counted on the client: first call, repeat, repeat with the local
   cache (resilient_aws: 2 / 1 / 0);
b. wall time per call (median of ``--rounds`` interleaved rounds of ``--calls`` calls): first
   calls (fresh keys) and repeats, resilient_aws vs Powertools, both through a moto server in
   its own process, both on a plain ``process(order)`` function keyed by JMESPath ``id``.

    python bench/idempotency.py [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_send import moto_server

from resilient_aws.idempotency import IdempotencyStore, idempotent
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

warnings.filterwarnings("ignore", message="Couldn't determine the remaining time")


def dynamodb(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard"}),
        **DUMMY_CREDENTIALS,
    )


def make_table(client: Any, name: str) -> str:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def process(order: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": order["id"], "status": "charged", "amount": order["amount"]}


def ours(client: Any, table: str, *, cache: bool = False) -> Callable[..., Any]:
    store = IdempotencyStore(table, client=client)
    return idempotent(store, payload="order", key="id", cache_size=1024 if cache else 0)(process)


def theirs(client: Any, table: str, *, cache: bool = False) -> Callable[..., Any]:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
    config = IdempotencyConfig(event_key_jmespath="id", use_local_cache=cache)
    return idempotent_function(  # type: ignore[no-any-return]
        data_keyword_argument="order", persistence_store=layer, config=config
    )(process)


class Requests:
    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> str:
        total = sum(self.counts.values())
        detail = " + ".join(f"{n} {op}" for op, n in sorted(self.counts.items())) or "none"
        self.counts.clear()
        return f"{total} ({detail})"


def count_requests(endpoint: str) -> None:
    print("a. DynamoDB requests per call")
    print(f"   {'':14} {'first call':28} {'repeat':18} {'cached repeat':14}")
    for name, make in (("resilient_aws", ours), ("Powertools", theirs)):
        client = dynamodb(endpoint)
        table = make_table(client, f"count-{name}")
        requests = Requests(client)
        fn = make(client, table, cache=True)
        fn(order={"id": "o-1", "amount": 3})
        first = requests.take()
        uncached = make(client, table, cache=False)
        uncached(order={"id": "o-1", "amount": 3})
        repeat = requests.take()
        fn(order={"id": "o-1", "amount": 3})
        cached = requests.take()
        print(f"   {name:14} {first:28} {repeat:18} {cached:14}")


def per_call(fn: Callable[..., Any], keys: list[str]) -> tuple[float, float]:
    """(wall, client CPU) microseconds per call."""
    started, cpu = time.perf_counter(), time.process_time()
    for key in keys:
        fn(order={"id": key, "amount": 3})
    wall = (time.perf_counter() - started) / len(keys) * 1e6
    return wall, (time.process_time() - cpu) / len(keys) * 1e6


def timing(endpoint: str, calls: int, rounds: int) -> None:
    client = dynamodb(endpoint)
    fns = {
        "resilient_aws": ours(client, make_table(client, "time-ours")),
        "Powertools": theirs(client, make_table(client, "time-theirs")),
    }
    first: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    repeat: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    per_call(fns["resilient_aws"], ["warm"] * 20)  # connections and caches, both
    per_call(fns["Powertools"], ["warm"] * 20)
    for r in range(rounds):
        keys = [f"r{r}-{i}" for i in range(calls)]
        order = list(fns.items()) if r % 2 == 0 else list(reversed(fns.items()))
        for name, fn in order:
            first[name].append(per_call(fn, keys))
        for name, fn in order:
            repeat[name].append(per_call(fn, keys))
    print(f"b. wall time per call, median of {rounds} rounds of {calls} calls")
    for label, data in (("first call", first), ("repeat", repeat)):
        for column, what in ((0, "wall"), (1, "client CPU")):
            ours_us = statistics.median(x[column] for x in data["resilient_aws"])
            theirs_us = statistics.median(x[column] for x in data["Powertools"])
            print(
                f"   {label:11} {what:10} resilient_aws {ours_us:7.0f} us   "
                f"Powertools {theirs_us:7.0f} us   ratio {ours_us / theirs_us:.3f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import aws_lambda_powertools

    print(
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"aws-lambda-powertools {getattr(aws_lambda_powertools, '__version__', '?')}; "
        "target: resilient_aws wall time per call <= 1.0x Powertools'"
    )
    with moto_server(in_process=False) as (endpoint, _pid):
        count_requests(endpoint)
        timing(endpoint, args.calls, args.rounds)


if __name__ == "__main__":
    main()
