"""The outbox's delivery speed and write cost against the plain "save, then publish", one run.

A moto server runs in its own process; with ``--delay-ms`` > 0 the DynamoDB and SQS clients go
through a latency proxy (``bench/_proxy.py``) that adds that delay to every request, as a
network would. The stream is read straight from the server (in Lambda, AWS's poller does it).

a. events delivered per second, ``--events`` events over ``--aggregates`` aggregates (one
   business item and one event per aggregate and round, as a single table holds them):
   - publish only (the floor): the same events through the same ``SqsTarget``, in the same
     waves of one event per aggregate, with no outbox bookkeeping;
   - stream relay: ``relay_handler`` over the table's real stream, Lambda batches of 100
     records (the business items' records included: the relay skips them);
   - sweeper: ``OutboxSweeper.run`` over the same number of events that the stream lost.
   Every event is counted at the queues, once each, in order per aggregate.
b. per business transaction: requests, items written and write capacity units (WCU) of
   ``Outbox.write`` against ``PutItem`` then ``SendMessage`` (not atomic), and what the relay
   adds per transaction (the delivered mark, its reads, the publish).
c. wall time per business transaction, through the proxy: ``Outbox.write`` against ``PutItem``
   then ``SendMessage``, interleaved rounds on fresh tables.

    python bench/outbox.py [--events 1000] [--aggregates 50] [--delay-ms 5] [--transactions 100]
                           [--rounds 3]

moto's performance shapes (a) and (c), not the outbox's alone: moto's SQS scans a queue for
every message it stores, so each publish goes to a fresh FIFO queue (``SpreadTarget``); its
``Query`` on an index scans the whole table; its ``TransactWriteItems`` deep-copies every table
a transaction touches, once per action, so (a) fills its tables with ``BatchWriteItem`` of the
very records ``Outbox.write`` writes (the stream sees the same ``INSERT`` records) and (c) keeps
its tables small. The moto CPU column says how much of each figure is the server's.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import moto
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proxy import LatencyProxy
from batch_send import moto_server

from resilient_aws.dynamodb import item_size, serialize_item
from resilient_aws.outbox import (
    Layout,
    Outbox,
    OutboxEvent,
    OutboxSweeper,
    SqsTarget,
    envelope,
    relay_handler,
)
from resilient_aws.retry import Deadline
from resilient_aws.testing import FakeLambdaContext
from resilient_aws.testing._moto import DUMMY_CREDENTIALS

KB = 1024
CITIES = ("Milan", "Lisbon", "Osaka", "Austin", "Nairobi", "Oslo", "Lima", "Perth")
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


# -- DynamoDB's capacity rules ---------------------------------------------------------------------
#
# moto's ConsumedCapacity cannot be used: it answers an empty list for TransactWriteItems and a
# flat 1.0 for any PutItem, whatever the item's size. The figures below follow DynamoDB's
# documented rules instead:
# - https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
#   (capacity unit consumption for write operations): a standard write of an item up to 1 KB
#   takes 1 WCU, a transactional write 2 WCUs, item sizes rounded up to the next 1 KB; PutItem
#   and UpdateItem are charged for the larger of the item before and after the write.
# - https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html (provisioned
#   throughput considerations, writes): a write that gives an item an index key attribute
#   costs one index write, a write that removes it one more (the index entry's delete), sized
#   by the projected item (here ALL attributes). The index is updated asynchronously, outside
#   the transaction, so it is counted at the standard rate: that part is our reading of the
#   docs, not a documented figure.
# - https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html: deletes by TTL
#   consume no write capacity, so a delivered record's clean-up is free.
# On-demand tables bill write request units by the same rule (1 per KB, 2 if transactional).


def units(size: int) -> int:
    return max(1, math.ceil(size / KB))


# -- clients, tables, queues -----------------------------------------------------------------------


def client(service: str, endpoint: str) -> Any:
    config = Config(max_pool_connections=32, retries={"mode": "standard"})
    options: dict[str, Any] = {**DUMMY_CREDENTIALS, "endpoint_url": endpoint, "config": config}
    return boto3.client(service, **options)  # type: ignore[call-overload]


def outbox_table(ddb: Any, name: str) -> str:
    """The table of docs/outbox.md: pk/sk, a stream, the sparse pending index."""
    layout = Layout()
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "outbox_pending_aggregate", "AttributeType": "S"},
            {"AttributeName": "outbox_sequence", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": layout.pending_index,
                "KeySchema": [
                    {"AttributeName": "outbox_pending_aggregate", "KeyType": "HASH"},
                    {"AttributeName": "outbox_sequence", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return name


def plain_table(ddb: Any, name: str) -> str:
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def fifo_queues(sqs: Any, count: int) -> list[str]:
    prefix = unique("events")
    names = [f"{prefix}-{i:05d}.fifo" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(
                lambda n: sqs.create_queue(QueueName=n, Attributes={"FifoQueue": "true"})[
                    "QueueUrl"
                ],
                names,
            )
        )


def scan_all(ddb: Any, table: str) -> list[dict[str, Any]]:
    pages = ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def order(aggregate: str, version: int) -> dict[str, Any]:
    """An order of ~400 bytes (DynamoDB's size): strings, numbers, a list and a map."""
    i = int(aggregate.rpartition("-")[2]) * 1000 + version
    return {
        "pk": aggregate,
        "sk": f"v{version:06d}",
        "customer": f"customer-{i % 9973:05d}",
        "city": CITIES[i % len(CITIES)],
        "status": ("new", "paid", "shipped")[i % 3],
        "total": Decimal(i % 100_000) / 100,
        "quantity": i % 17 + 1,
        "tags": ["priority" if i % 7 == 0 else "standard", CITIES[i % 5].lower()],
        "address": {"street": f"{i % 400} Long Street", "zip": f"{i % 99999:05d}"},
        "note": "gift wrap, leave at the door; " * 6,
    }


def order_event(aggregate: str, version: int, kind: str = "OrderPlaced") -> OutboxEvent:
    placed = order(aggregate, version)
    payload = {k: v for k, v in placed.items() if k not in ("pk", "sk")}
    return OutboxEvent(kind, aggregate, payload, sequence=version, id=f"{aggregate}#{version}")


# -- counting ----------------------------------------------------------------------------------


class Requests:
    """Requests per (service, operation) and items written, counted as the clients send them."""

    def __init__(self, *clients: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        for c in clients:
            prefix = c.meta.service_model.service_name
            c.meta.events.register(f"provide-client-params.{prefix}", self._count)

    def _count(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        self.calls[f"{service}.{model.name}"] += 1
        if model.name == "TransactWriteItems":
            for action in params["TransactItems"]:
                kind = next(iter(action))
                if kind != "ConditionCheck":
                    self.written[kind] += 1
        elif model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.written[model.name.removesuffix("Item")] += 1
        elif model.name == "BatchWriteItem":
            self.written["Put"] += sum(len(r) for r in params["RequestItems"].values())

    def take(self) -> tuple[Counter[str], Counter[str]]:
        calls, written = self.calls.copy(), self.written.copy()
        self.calls.clear()
        self.written.clear()
        return calls, written


def service_calls(calls: Counter[str], service: str, *, reads: bool | None = None) -> int:
    read_ops = ("GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable")
    return sum(
        n
        for op, n in calls.items()
        if op.startswith(service + ".")
        and (reads is None or (op.split(".")[1] in read_ops) == reads)
    )


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (Linux /proc; 0 elsewhere)."""
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class SpreadTarget:
    """An ``SqsTarget`` whose n-th publish goes to the n-th FIFO queue (see the docstring)."""

    def __init__(self, urls: list[str], sqs: Any) -> None:
        self.urls = urls
        self.targets = [SqsTarget(url, client=sqs) for url in urls]
        self.used = 0

    def publish(
        self, events: Sequence[OutboxEvent], *, deadline: Deadline | None = None
    ) -> dict[str, str]:
        if self.used == len(self.targets):
            raise RuntimeError("SpreadTarget ran out of queues: give it more")
        target = self.targets[self.used]
        self.used += 1
        return target.publish(events, deadline=deadline)


def collect(sqs: Any, urls: Sequence[str]) -> list[dict[str, Any]]:
    """Every message of the queues, queue after queue, in the order each queue hands them out."""

    def drain(url: str) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            bodies += [json.loads(m["Body"]) for m in batch]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        return bodies

    with ThreadPoolExecutor(8) as pool:
        return [body for bodies in pool.map(drain, urls) for body in bodies]


def check_delivery(name: str, received: list[dict[str, Any]], expected: set[str]) -> int:
    """Every expected event once, nothing else, in sequence order per aggregate."""
    counts = Counter(m["event_id"] for m in received)
    missing = expected - set(counts)
    invented = set(counts) - expected
    repeated = {k: n for k, n in counts.items() if n > 1}
    if missing or invented or repeated:
        raise SystemExit(
            f"{name}: {len(missing)} missing, {len(invented)} invented, {len(repeated)} repeated"
        )
    last: dict[str, int] = {}
    for message in received:
        aggregate, sequence = message["aggregate_id"], message["sequence"]
        if sequence <= last.get(aggregate, -1):
            raise SystemExit(f"{name}: {aggregate} out of order at #{sequence}")
        last[aggregate] = sequence
    return len(received)


# -- a. events per second ----------------------------------------------------------------------


def fill(ddb: Any, table: str, rounds: int, aggregates: int) -> list[OutboxEvent]:
    """The items ``Outbox.write`` would write (business item + outbox record per aggregate and
    round), written with ``BatchWriteItem`` in round order: see the module docstring."""
    layout = Layout()
    events: list[OutboxEvent] = []
    requests: list[dict[str, Any]] = []
    for version in range(1, rounds + 1):
        for a in range(aggregates):
            aggregate = f"order-{a:04d}"
            event = order_event(aggregate, version)
            events.append(event)
            requests.append({"PutRequest": {"Item": serialize_item(order(aggregate, version))}})
            requests.append({"PutRequest": {"Item": layout.record(event, written_at=time.time())}})
    for start in range(0, len(requests), 25):
        chunk = {table: requests[start : start + 25]}
        while chunk:
            chunk = ddb.batch_write_item(RequestItems=chunk).get("UnprocessedItems") or {}
    return events


def stream_batches(ddb: Any, streams: Any, table: str, size: int = 100) -> list[dict[str, Any]]:
    """The table's whole stream as Lambda events of ``size`` records."""
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while page := streams.get_records(ShardIterator=iterator, Limit=1000):
            if not page["Records"]:
                break
            records += page["Records"]
            iterator = page["NextShardIterator"]
    for record in records:
        record.update(eventSourceARN=arn, eventSource="aws:dynamodb")
    return [{"Records": records[i : i + size]} for i in range(0, len(records), size)]


def waves_in(batch: dict[str, Any]) -> int:
    """How many publishes the relay makes for ``batch``: one per wave, and a wave holds at most
    one event per aggregate, so the aggregate with the most events in the batch decides."""
    per_aggregate = Counter(
        image["outbox_aggregate_id"]["S"]
        for record in batch["Records"]
        if "outbox_event_id" in (image := record["dynamodb"].get("NewImage", {}))
    )
    return max(per_aggregate.values(), default=0)


@dataclass
class Row:
    name: str
    events: int
    wall: float
    client_cpu: float
    server_cpu: float
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.events / self.wall

    def line(self) -> str:
        ddb_reads = service_calls(self.calls, "dynamodb", reads=True) / self.events
        ddb_writes = service_calls(self.calls, "dynamodb", reads=False) / self.events
        sqs = service_calls(self.calls, "sqs") / self.events
        return (
            f"   {self.name:22} {self.events:7,} {self.wall:7.2f}s {self.rate:8,.0f}   "
            f"{ddb_reads:5.2f} {ddb_writes:5.2f} {sqs:5.2f}   "
            f"{self.client_cpu / self.events * 1e3:6.2f} {self.server_cpu / self.events * 1e3:6.2f}"
        )


class Stopwatch:
    """Wall time, this process's CPU and the moto server's CPU since it was made."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.wall, self.cpu, self.server = (
            time.perf_counter(),
            time.process_time(),
            cpu_seconds(pid),
        )

    def row(self, name: str, events: int, counter: Requests) -> Row:
        return Row(
            name,
            events,
            time.perf_counter() - self.wall,
            time.process_time() - self.cpu,
            cpu_seconds(self.pid) - self.server,
            counter.take()[0],
        )


def throughput(endpoint: str, direct: str, pid: int | None, events_n: int, aggregates: int) -> None:
    rounds = max(1, events_n // aggregates)
    n = rounds * aggregates
    ddb, sqs = client("dynamodb", endpoint), client("sqs", endpoint)
    ddb_direct, sqs_direct = client("dynamodb", direct), client("sqs", direct)
    streams = client("dynamodbstreams", direct)
    counter = Requests(ddb, sqs)
    lambda_batches = 100
    print(
        f"\na. events delivered per second: {n:,} events over {aggregates} aggregates "
        f"({rounds} each), one business item per event in the same table"
    )
    print(
        f"   {'':22} {'events':>7} {'wall':>8} {'events/s':>8}   requests per event   CPU ms/event"
    )
    print(f"   {'':22} {'':7} {'':8} {'':8}   DDB rd DDB wr   SQS  client   moto")

    relay_table = outbox_table(ddb_direct, unique("relay"))
    sweep_table = outbox_table(ddb_direct, unique("sweep"))
    relay_events = fill(ddb_direct, relay_table, rounds, aggregates)
    sweep_events = fill(ddb_direct, sweep_table, rounds, aggregates)
    batches = stream_batches(ddb_direct, streams, relay_table, lambda_batches)
    waves: dict[int, list[OutboxEvent]] = defaultdict(list)
    for event in relay_events:
        waves[event.sequence or 0].append(event)
    rows: list[Row] = []

    # publish only: the floor, same target and waves, no outbox
    floor_target = SpreadTarget(fifo_queues(sqs_direct, len(waves)), sqs)
    counter.take()
    clock = Stopwatch(pid)
    failed = {}
    for wave in waves.values():
        failed.update(floor_target.publish(wave))
    rows.append(clock.row("publish only (floor)", n, counter))
    if failed:
        raise SystemExit(f"publish only: {len(failed)} failed")
    check_delivery(
        "publish only", collect(sqs_direct, floor_target.urls), {e.id for e in relay_events}
    )

    # the stream relay, batch after batch as Lambda hands them out
    relay_outbox = Outbox(relay_table, client=ddb)
    relay_target = SpreadTarget(fifo_queues(sqs_direct, sum(map(waves_in, batches))), sqs)
    handler = relay_handler(relay_outbox, relay_target)
    context = FakeLambdaContext(timeout_s=900)
    counter.take()
    clock = Stopwatch(pid)
    for batch in batches:
        response = handler(batch, context)
        if response["batchItemFailures"]:
            raise SystemExit(f"relay: {len(response['batchItemFailures'])} records failed")
    rows.append(clock.row("stream relay", n, counter))
    used = relay_target.urls[: relay_target.used]
    check_delivery("stream relay", collect(sqs_direct, used), {e.id for e in relay_events})

    # the sweeper, over events the stream lost
    sweep_outbox = Outbox(sweep_table, client=ddb)
    sweep_target = SpreadTarget(fifo_queues(sqs_direct, rounds + 1), sqs)
    sweeper = OutboxSweeper(sweep_outbox, sweep_target, grace_s=0)
    counter.take()
    clock = Stopwatch(pid)
    report = sweeper.run()
    rows.append(clock.row("sweeper", n, counter))
    if len(report.delivered) != n:
        raise SystemExit(f"sweeper: {report.summary()}")
    used = sweep_target.urls[: sweep_target.used]
    check_delivery("sweeper", collect(sqs_direct, used), {e.id for e in sweep_events})

    for row in rows:
        print(row.line())
    probe = Outbox(relay_table, client=ddb_direct)
    started = time.perf_counter()
    for a in range(10):
        probe.undelivered(f"order-{a:04d}", before=rounds // 2)
    query_ms = (time.perf_counter() - started) / 10 * 1e3
    print(
        f"   the relay asks the pending index about every aggregate of a batch: one Query each, "
        f"which moto\n   answers in {query_ms:.0f} ms here (it scans all "
        f"{2 * n:,} items of the table), so its rate here falls as the table grows"
    )
    floor = rows[0].rate
    print(
        f"   relay / floor {rows[1].rate / floor:.2f}x, sweeper / floor {rows[2].rate / floor:.2f}x"
        f"; checked: {3 * n:,} messages, each event once, in order per aggregate"
    )


# -- b. write cost per business transaction ----------------------------------------------------


@dataclass
class Cost:
    ddb_reads: float
    ddb_writes: float
    sqs: float
    items: float
    wcu: float
    detail: str

    def line(self, name: str) -> str:
        return (
            f"   {name:30} {self.ddb_reads:5.2f} {self.ddb_writes:6.2f} {self.sqs:5.2f}  "
            f"{self.items:6.2f}  {self.wcu:6.2f}   {self.detail}"
        )


def write_cost(endpoint: str, direct: str, transactions: int, per_tx: int) -> None:
    ddb, sqs = client("dynamodb", endpoint), client("sqs", endpoint)
    ddb_direct, sqs_direct = client("dynamodb", direct), client("sqs", direct)
    streams = client("dynamodbstreams", direct)
    counter = Requests(ddb, sqs)
    kinds = ("OrderPlaced", "StockReserved", "PaymentRequested")[:per_tx]
    aggregates = [f"order-{a:04d}" for a in range(transactions)]

    def events_of(aggregate: str) -> list[OutboxEvent]:
        return [order_event(aggregate, i + 1, kind) for i, kind in enumerate(kinds)]

    # the plain way: save, then publish (not atomic)
    table = plain_table(ddb_direct, unique("plain"))
    (queue,) = fifo_queues(sqs_direct, 1)
    for aggregate in aggregates:
        ddb.put_item(TableName=table, Item=serialize_item(order(aggregate, 1)))
        entries = [
            {
                "Id": str(i),
                "MessageBody": envelope(e),
                "MessageGroupId": e.aggregate_id,
                "MessageDeduplicationId": e.id,
            }
            for i, e in enumerate(events_of(aggregate))
        ]
        if len(entries) == 1:
            entry = {k: v for k, v in entries[0].items() if k != "Id"}
            sqs.send_message(QueueUrl=queue, **entry)
        else:
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    calls, written = counter.take()
    plain_sizes = [item_size(i) for i in scan_all(ddb_direct, table)]
    expected = {e.id for a in aggregates for e in events_of(a)}
    check_delivery("plain", collect(sqs_direct, [queue]), expected)
    plain = Cost(
        service_calls(calls, "dynamodb", reads=True) / transactions,
        service_calls(calls, "dynamodb", reads=False) / transactions,
        service_calls(calls, "sqs") / transactions,
        sum(written.values()) / transactions,
        sum(units(s) for s in plain_sizes) / transactions,
        f"order {statistics.mean(plain_sizes):.0f} B: 1 WCU per KB",
    )

    # the outbox: one transaction, then the relay from the stream
    table = outbox_table(ddb_direct, unique("cost"))
    outbox = Outbox(table, client=ddb)
    outbox.write(puts=[{"pk": "warm-up", "sk": "x"}])  # reads the key schema once, not counted
    (queue,) = fifo_queues(sqs_direct, 1)
    counter.take()
    for aggregate in aggregates:
        outbox.write(puts=[order(aggregate, 1)], events=events_of(aggregate))
    calls, written = counter.take()
    before = {
        (i["pk"]["S"], i["sk"]["S"]): item_size(i)
        for i in scan_all(ddb_direct, table)
        if i["pk"]["S"] != "warm-up"
    }
    records = {k: s for k, s in before.items() if k[0].startswith("OUTBOX#")}
    business = [s for k, s in before.items() if k not in records]
    transactional = sum(2 * units(s) for s in before.values())
    index_puts = sum(units(s) for s in records.values())
    ours = Cost(
        service_calls(calls, "dynamodb", reads=True) / transactions,
        service_calls(calls, "dynamodb", reads=False) / transactions,
        service_calls(calls, "sqs") / transactions,
        sum(written.values()) / transactions,
        (transactional + index_puts) / transactions,
        f"2 WCU per KB of order and record(s) ({statistics.mean(records.values()):.0f} B)"
        " + 1 per KB of index entry",
    )

    handler = relay_handler(outbox, SqsTarget(queue, client=sqs))
    for batch in stream_batches(ddb_direct, streams, table):
        if handler(batch, FakeLambdaContext(timeout_s=900))["batchItemFailures"]:
            raise SystemExit("relay: records failed")
    calls, written = counter.take()
    after = {(i["pk"]["S"], i["sk"]["S"]): item_size(i) for i in scan_all(ddb_direct, table)}
    marks = sum(units(max(size, after[key])) for key, size in records.items())
    index_deletes = sum(units(size) for size in records.values())
    check_delivery("outbox", collect(sqs_direct, [queue]), expected)
    relay = Cost(
        service_calls(calls, "dynamodb", reads=True) / transactions,
        service_calls(calls, "dynamodb", reads=False) / transactions,
        service_calls(calls, "sqs") / transactions,
        sum(written.values()) / transactions,
        (marks + index_deletes) / transactions,
        "the DELIVERED mark: 1 WCU per KB + the index entry's delete",
    )
    total = Cost(
        ours.ddb_reads + relay.ddb_reads,
        ours.ddb_writes + relay.ddb_writes,
        ours.sqs + relay.sqs,
        ours.items + relay.items,
        ours.wcu + relay.wcu,
        "",
    )
    label = f"{per_tx} event{'s' if per_tx > 1 else ''}"
    print(
        f"\n   {label} per transaction, {transactions} transactions; order item "
        f"{statistics.mean(business):.0f} B"
    )
    print(f"   {'':30} {'DDB rd':>5} {'DDB wr':>6} {'SQS':>5}  {'items':>6}  {'WCU':>6}")
    print(plain.line("PutItem, then publish"))
    print(ours.line("Outbox.write"))
    print(relay.line("+ relay (per transaction)"))
    print(total.line("= outbox, delivered"))
    print(
        f"   ratios outbox / plain: WCU at write {ours.wcu / plain.wcu:.1f}x, delivered "
        f"{total.wcu / plain.wcu:.1f}x; items written {total.items / plain.items:.1f}x; "
        f"requests on the write path {(ours.ddb_writes + ours.sqs) / (plain.ddb_writes + plain.sqs):.1f}x"
    )


# -- c. wall time per business transaction -----------------------------------------------------


def write_latency(
    endpoint: str, direct: str, pid: int | None, transactions: int, rounds: int
) -> None:
    ddb, sqs = client("dynamodb", endpoint), client("sqs", endpoint)
    ddb_direct, sqs_direct = client("dynamodb", direct), client("sqs", direct)
    per_table = 10  # moto deep-copies a table for each action of a transaction: keep them small
    blocks = max(1, transactions // per_table)
    n = blocks * per_table
    timings: dict[str, list[tuple[float, float]]] = {"outbox": [], "plain": []}

    def run_outbox(version: int) -> tuple[float, float]:
        outboxes = [
            Outbox(outbox_table(ddb_direct, unique("lat-outbox")), client=ddb)
            for _ in range(blocks)
        ]
        for outbox in outboxes:
            outbox.write(puts=[{"pk": "warm-up", "sk": "x"}])  # the key schema, read once
        wall, server = time.perf_counter(), cpu_seconds(pid)
        for b, outbox in enumerate(outboxes):
            for a in range(b * per_table, (b + 1) * per_table):
                aggregate = f"order-{a:04d}"
                event = order_event(aggregate, version)
                outbox.write(puts=[order(aggregate, version)], events=[event])
        return (time.perf_counter() - wall) / n, (cpu_seconds(pid) - server) / n

    def run_plain(version: int) -> tuple[float, float]:
        tables = [plain_table(ddb_direct, unique("lat-plain")) for _ in range(blocks)]
        queues = fifo_queues(sqs_direct, blocks)
        wall, server = time.perf_counter(), cpu_seconds(pid)
        for b, (table, queue) in enumerate(zip(tables, queues, strict=True)):
            for a in range(b * per_table, (b + 1) * per_table):
                aggregate = f"order-{a:04d}"
                event = order_event(aggregate, version)
                ddb.put_item(TableName=table, Item=serialize_item(order(aggregate, version)))
                sqs.send_message(
                    QueueUrl=queue,
                    MessageBody=envelope(event),
                    MessageGroupId=aggregate,
                    MessageDeduplicationId=event.id,
                )
        return (time.perf_counter() - wall) / n, (cpu_seconds(pid) - server) / n

    runs: dict[str, Callable[[int], tuple[float, float]]] = {
        "outbox": run_outbox,
        "plain": run_plain,
    }
    for r in range(rounds):
        for name in ("outbox", "plain") if r % 2 == 0 else ("plain", "outbox"):
            timings[name].append(runs[name](r + 1))
    ours = [statistics.median(x[i] for x in timings["outbox"]) for i in (0, 1)]
    theirs = [statistics.median(x[i] for x in timings["plain"]) for i in (0, 1)]
    print(
        f"\nc. wall time per business transaction (1 event), median of {rounds} rounds of "
        f"{n}, {per_table} per fresh table"
    )
    print(f"   {'':40} {'wall':>8} {'moto CPU':>9}")
    for name, (wall, server) in (
        ("Outbox.write (1 request)", ours),
        ("PutItem, then SendMessage (2 requests)", theirs),
    ):
        print(f"   {name:40} {wall * 1e3:5.2f} ms {server * 1e3:6.2f} ms")
    print(f"   ratio outbox / plain                     {ours[0] / theirs[0]:5.2f}x")


@contextlib.contextmanager
def maybe_proxy(endpoint: str, delay_ms: float) -> Iterator[str]:
    if delay_ms <= 0:
        yield endpoint
        return
    with LatencyProxy(endpoint, delay=delay_ms / 1000) as proxy:
        yield proxy.endpoint_url


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--aggregates", type=int, default=50)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, moto {moto.__version__} server in its own process; "
        + (
            f"latency proxy +{args.delay_ms:g} ms per request"
            if args.delay_ms > 0
            else "no latency proxy"
        )
    )
    began = time.perf_counter()
    with (
        moto_server(in_process=False) as (direct, pid),
        maybe_proxy(direct, args.delay_ms) as endpoint,
    ):
        throughput(endpoint, direct, pid, args.events, args.aggregates)
        print("\nb. DynamoDB write cost per business transaction (WCU by DynamoDB's rules)")
        for per_tx in (1, 3):
            write_cost(endpoint, direct, args.transactions, per_tx)
        write_latency(endpoint, direct, pid, args.transactions, args.rounds)
    print(f"\nrun time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
