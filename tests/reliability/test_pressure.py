"""Issue 12: 40 % of entries withheld and 5 % of requests throttled, 50 seeds per API.

The acceptance: with the DEFAULT :class:`RetryPolicy` (only its clock, sleep and jitter's random
numbers are faked), not one entry is given up in 50 seeded runs of ``batch_get`` (1,100 keys),
``KinesisPutter`` (500 records), ``SqsSender`` on a FIFO queue (200 messages in 10 groups) and
the redrive drain (200 messages from a dead-letter queue). An entry may be given up at the
policy's deadline, at ``max_elapsed``, or when the writer stops making progress; never because
the service, while completing most of what it is sent, happened to withhold it a few rounds in
a row.

The services are plain Python fakes that keep their own record of what they accepted, so the
count is made at the far end, independently of the library's own result: every entry arrives
exactly once, none is invented, each FIFO group (and each Kinesis partition key in ordered mode)
arrives in order.

"Never give up" is no way to pass: for each API, a service that refuses every entry forever
must end with every entry reported failed (``gave_up`` set), without hanging.

Faults are drawn from ``random.Random`` seeded with the run's seed and *what* is drawn for (the
entry, and how often it was sent before), not from one stream in call order: the same seed gives
the same faults whatever the interleaving of a writer's threads, so a failing seed replays.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError

from resilient_aws.batch import KinesisPutter, SqsSender
from resilient_aws.dynamodb import batch_get
from resilient_aws.redrive import RedriveReport, redrive_sqs
from resilient_aws.results import BatchResult
from resilient_aws.retry import RetryPolicy
from resilient_aws.testing import FakeClock
from tests.unit.helpers import client_error

SEEDS = range(50)
WITHHELD = 0.4
THROTTLED = 0.05

T = TypeVar("T")


# -- the weather: which entries are withheld and which requests throttled --------------------------


class RunawayError(Exception):
    """The writer kept sending long after any engine should have given up: it never gives up."""


class Weather:
    """Seeded faults: a whole request is throttled with probability ``throttled``; otherwise each
    of its entries is withheld with probability ``withheld``.

    Each draw is made by a ``random.Random`` seeded with the run's seed (and variant), the
    operation, the entry (for a throttle: the request's first entry) and how often it was sent
    before. ``operations`` limits the faults to some operations. More than ``max_requests``
    requests, or more than ``max_fake_s`` seconds on the fake clock, raise
    :class:`RunawayError`.
    """

    def __init__(
        self,
        seed: int | str,
        clock: FakeClock,
        *,
        withheld: float = WITHHELD,
        throttled: float = THROTTLED,
        operations: Collection[str] | None = None,
        max_requests: int = 20_000,
        max_fake_s: float = 24 * 3600.0,
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.withheld = withheld
        self.throttled = throttled
        self.operations = None if operations is None else frozenset(operations)
        self.max_requests = max_requests
        self.max_fake_s = max_fake_s
        self.started = clock.now
        self.lock = threading.Lock()
        self.sends: Counter[tuple[str, str]] = Counter()
        self.requests = 0
        self.throttles = 0
        self.entries_sent = 0
        self.entries_withheld = 0

    def _draw(self, *key: object) -> float:
        return random.Random(":".join(map(str, (self.seed, *key)))).random()

    def request(self, operation: str, names: Sequence[str], throttle_code: str) -> list[bool]:
        """A request of the entries ``names`` arrives: raise a throttle (a ``ClientError``, HTTP
        400) for the whole request, or say which of its entries are withheld."""
        with self.lock:
            self.requests += 1
            if self.requests > self.max_requests or self.clock.now - self.started > self.max_fake_s:
                raise RunawayError(
                    f"{self.requests} requests and {self.clock.now - self.started:.0f} s on the "
                    "fake clock, and the writer is still sending: it never gives up"
                )
            counts = []
            for name in names or ("",):
                self.sends[operation, name] += 1
                counts.append(self.sends[operation, name])
            if self.operations is not None and operation not in self.operations:
                return [False] * len(names)
            lead = names[0] if names else ""
            if self._draw("throttle", operation, lead, counts[0]) < self.throttled:
                self.throttles += 1
                raise client_error(throttle_code, 400, operation=operation)
            withheld = [
                self._draw("withhold", operation, name, count) < self.withheld
                for name, count in zip(names, counts, strict=False)
            ]
            self.entries_sent += len(names)
            self.entries_withheld += sum(withheld)
            return withheld

    def assert_pressure(self) -> None:
        """The run really was under pressure (so that a pass means something)."""
        assert self.entries_sent and self.entries_withheld / self.entries_sent > 0.3, (
            f"only {self.entries_withheld} of {self.entries_sent} entries withheld"
        )


def default_policy(clock: FakeClock, seed: int) -> RetryPolicy:
    """The default policy: attempts, delays and caps untouched; only time (and the random
    numbers of the jitter, for replay) faked."""
    return RetryPolicy(sleep=clock.sleep, clock=clock.monotonic, rng=random.Random(seed))


def finishes(run: Callable[[], T], seconds: float = 120.0) -> T:
    """``run()``, failing the test if it has not returned after ``seconds`` of real time."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="pressure-run", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:.0f} s of real time: it never gave up")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def _ok(**fields: Any) -> dict[str, Any]:
    return {**fields, "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 0}}


def given_up(result: BatchResult[Any], seed: int, what: str) -> str:
    """What the run gave up: by the retry core, and (in order) behind an entry it gave up."""
    behind = sum(f.code == "PrecedingEntryFailed" for f in result.failed)
    shown = ", ".join(f"{f.entry_id} ({f.code}, gave_up={f.gave_up})" for f in result.failed[:5])
    return (
        f"seed {seed}: {len(result.failed)} of {result.submitted} {what} given up "
        f"({len(result.failed) - behind} by the retry core, {behind} held behind them): {shown}"
    )


def assert_accounted(result: BatchResult[Any], total: int) -> None:
    assert result.submitted == total
    assert result.submitted == result.succeeded + len(result.failed) + result.deduplicated, result


# -- DynamoDB BatchGetItem ------------------------------------------------------------------------

TABLE = "orders"
KEYS = 1_100


class FakeDynamoDB:
    """``BatchGetItem`` on one table keyed by a string ``pk``; records every key it read."""

    def __init__(self, weather: Weather, items: Sequence[dict[str, Any]]) -> None:
        self.weather = weather
        self.items = {item["pk"]["S"]: item for item in items}
        self.read: Counter[str] = Counter()
        self.lock = threading.Lock()

    def batch_get_item(self, **params: Any) -> dict[str, Any]:
        request_items = params.pop("RequestItems")
        assert not params, params
        assert list(request_items) == [TABLE], request_items.keys()
        spec = request_items[TABLE]
        keys = spec["Keys"]
        names = [key["pk"]["S"] for key in keys]
        assert all(set(key) == {"pk"} for key in keys), keys
        assert 1 <= len(keys) <= 100, f"BatchGetItem takes 1 to 100 keys, got {len(keys)}"
        assert len(set(names)) == len(names), "DynamoDB refuses a request naming a key twice"
        withheld = self.weather.request(
            "BatchGetItem", names, "ProvisionedThroughputExceededException"
        )
        found: list[dict[str, Any]] = []
        unprocessed: list[dict[str, Any]] = []
        with self.lock:
            for key, name, held in zip(keys, names, withheld, strict=True):
                if held:
                    unprocessed.append(key)
                    continue
                self.read[name] += 1
                if name in self.items:
                    found.append(dict(self.items[name]))
        response = _ok(Responses={TABLE: found}, UnprocessedKeys={})
        if unprocessed:
            options_kept = {name: value for name, value in spec.items() if name != "Keys"}
            response["UnprocessedKeys"] = {TABLE: {**options_kept, "Keys": unprocessed}}
        return response


def _table(weather: Weather) -> tuple[FakeDynamoDB, list[str], set[str]]:
    keys = [f"k{i:04d}" for i in range(KEYS)]
    absent = set(keys[::20])  # 55 keys that are not in the table: missing, not failed
    items = [{"pk": {"S": k}, "n": {"N": str(i)}} for i, k in enumerate(keys) if k not in absent]
    return FakeDynamoDB(weather, items), keys, absent


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_get_gives_up_no_key(seed: int) -> None:
    clock = FakeClock(seed=seed)
    weather = Weather(seed, clock)
    table, keys, absent = _table(weather)

    result = batch_get(
        TABLE,
        [{"pk": k} for k in keys],
        client=table,
        policy=default_policy(clock, seed),
        key="pk",
        keep_order=True,
        raise_on_failure=False,
    )

    assert result.failed == [], given_up(result, seed, "keys")
    assert_accounted(result, KEYS)
    assert result.succeeded == KEYS
    assert result.items == [
        {"pk": k, "n": Decimal(i)} for i, k in enumerate(keys) if k not in absent
    ]
    assert sorted(m["pk"] for m in result.missing) == sorted(absent)
    # the table's own record: every key read exactly once, none it was not asked for
    assert table.read == Counter(keys)
    weather.assert_pressure()


def test_batch_get_against_a_table_that_never_answers_reports_every_key() -> None:
    clock = FakeClock(seed=1)
    weather = Weather(1, clock, withheld=1.0, throttled=0.0)
    table, keys, _ = _table(weather)

    result = finishes(
        lambda: batch_get(
            TABLE,
            [{"pk": k} for k in keys],
            client=table,
            policy=default_policy(clock, 1),
            key="pk",
            raise_on_failure=False,
        )
    )

    assert_accounted(result, KEYS)
    assert result.succeeded == 0
    assert sorted(f.entry_id for f in result.failed) == sorted(f"{TABLE}[pk={k}]" for k in keys)
    assert all(f.retryable and f.gave_up for f in result.failed), result.failed[:3]
    assert (result.items, result.missing) == ([], [])  # unread keys are not "missing"
    assert not table.read


# -- Kinesis PutRecords ---------------------------------------------------------------------------

STREAM = "events"
RECORDS = 500
PARTITION_KEYS = 40
SHARDS = 4


class FakeKinesis:
    """``PutRecords`` on one stream; keeps the records it stored, in the order it stored them."""

    def __init__(self, weather: Weather) -> None:
        self.weather = weather
        self.stored: list[tuple[str, bytes]] = []
        self.sequence = itertools.count(1)
        self.lock = threading.Lock()

    def put_records(self, **params: Any) -> dict[str, Any]:
        records: list[dict[str, Any]] = params.pop("Records")
        assert params == {"StreamName": STREAM}, params
        assert 1 <= len(records) <= 500, f"PutRecords takes 1 to 500 records, got {len(records)}"
        assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in records) <= 10 * 1024 * 1024
        withheld = self.weather.request(
            "PutRecords",
            [r["Data"].decode() for r in records],
            "ProvisionedThroughputExceededException",
        )
        answers: list[dict[str, Any]] = []
        with self.lock:
            for record, held in zip(records, withheld, strict=True):
                shard = _shard(record["PartitionKey"])
                if held:
                    answers.append(
                        {
                            "ErrorCode": "ProvisionedThroughputExceededException",
                            "ErrorMessage": f"Rate exceeded for shard {shard} in stream {STREAM}.",
                        }
                    )
                    continue
                self.stored.append((record["PartitionKey"], bytes(record["Data"])))
                answers.append({"SequenceNumber": f"{next(self.sequence):056d}", "ShardId": shard})
        return _ok(FailedRecordCount=sum(withheld), Records=answers)


def _shard(partition_key: str) -> str:
    """The shard of a key, as Kinesis picks it: the MD5 of the key in the shards' hash ranges."""
    hashed = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
    return f"shardId-{hashed * SHARDS >> 128:012d}"


def _put_records(kinesis: FakeKinesis, policy: RetryPolicy, ordered: bool) -> BatchResult[Any]:
    with KinesisPutter(
        STREAM,
        client=kinesis,
        policy=policy,
        ordered=ordered,
        raise_on_failure=False,
        keep_answers=True,
    ) as putter:
        for i in range(RECORDS):
            putter.put(f"r{i}", f"key-{i % PARTITION_KEYS}", id=f"r{i}")
    return putter.result


@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
@pytest.mark.parametrize("seed", SEEDS)
def test_kinesis_gives_up_no_record(seed: int, ordered: bool) -> None:
    clock = FakeClock(seed=seed)
    weather = Weather(f"{seed}-ordered" if ordered else seed, clock)
    kinesis = FakeKinesis(weather)

    result = _put_records(kinesis, default_policy(clock, seed), ordered)

    assert result.failed == [], given_up(result, seed, "records")
    assert_accounted(result, RECORDS)
    assert result.succeeded == RECORDS
    assert sorted(a.entry_id for a in result.answers) == sorted(f"r{i}" for i in range(RECORDS))
    sent = {f"r{i}".encode(): f"key-{i % PARTITION_KEYS}" for i in range(RECORDS)}
    stored = Counter(data for _, data in kinesis.stored)
    assert stored == Counter(list(sent)), "records lost, doubled or invented in the stream"
    assert all(sent[data] == key for key, data in kinesis.stored)
    if ordered:
        per_key: dict[str, list[int]] = defaultdict(list)
        for key, data in kinesis.stored:
            per_key[key].append(int(data[1:]))
        assert all(ns == sorted(ns) for ns in per_key.values()), "a partition key out of order"
    weather.assert_pressure()


@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
def test_kinesis_against_a_stream_that_never_takes_a_record_reports_every_record(
    ordered: bool,
) -> None:
    clock = FakeClock(seed=2)
    kinesis = FakeKinesis(Weather(2, clock, withheld=1.0, throttled=0.0))

    result = finishes(lambda: _put_records(kinesis, default_policy(clock, 2), ordered))

    assert_accounted(result, RECORDS)
    assert result.succeeded == 0
    assert sorted(f.entry_id for f in result.failed) == sorted(f"r{i}" for i in range(RECORDS))
    assert kinesis.stored == []
    sent = [f for f in result.failed if f.code != "PrecedingEntryFailed"]
    assert sent, "no record was ever tried"
    assert all(
        f.code == "ProvisionedThroughputExceededException" and f.retryable and f.gave_up
        for f in sent
    ), sent[:3]
    if not ordered:
        assert len(sent) == RECORDS
    else:
        # in order, the first record of each key fails; the later ones are never sent past it
        firsts = {f"r{i}" for i in range(PARTITION_KEYS)}
        assert firsts <= {f.entry_id for f in sent}


# -- SQS (SendMessageBatch to a FIFO queue; the queues of a redrive) ------------------------------

ACCOUNT = "123456789012"
ENDPOINT = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}"
MESSAGES = 200
GROUPS = 10
SQS_THROTTLE = "ThrottlingException"


@dataclass
class StoredMessage:
    message_id: str
    body: str
    attributes: dict[str, Any]
    group: str | None
    deduplication_id: str | None
    sequence: str
    system: dict[str, Any] = field(default_factory=dict)
    visible_at: float = 0.0
    receipt: str = ""
    receives: int = 0


@dataclass
class FakeQueue:
    url: str
    fifo: bool
    sources: list[str] = field(default_factory=list)
    messages: list[StoredMessage] = field(default_factory=list)
    accepted: list[StoredMessage] = field(default_factory=list)  # every message a send stored

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{self.url.rsplit('/', 1)[1]}"


class FakeSqs:
    """The SQS calls of ``SqsSender`` and of the redrive drain, on the fake clock.

    Receives make messages invisible for their visibility timeout; on a FIFO queue a receive
    returns no message of a group that has one in flight, and a group's messages in order.
    A send stores the entries it does not withhold in request order (as SQS does: an entry
    withheld ahead of a stored one of its group is overtaken).
    """

    def __init__(self, weather: Weather, clock: FakeClock) -> None:
        self.weather = weather
        self.clock = clock
        self.queues: dict[str, FakeQueue] = {}
        self.by_receipt: dict[str, tuple[str, str]] = {}  # receipt -> (queue url, message id)
        self.ids = itertools.count(1)
        self.lock = threading.RLock()

    def add_queue(self, name: str, *, dead_letters_to: str | None = None) -> str:
        url = f"{ENDPOINT}/{name}"
        self.queues[url] = FakeQueue(url, name.endswith(".fifo"))
        if dead_letters_to is not None:
            self.queues[dead_letters_to].sources.append(url)
        return url

    def _queue(self, url: str) -> FakeQueue:
        if url not in self.queues:
            raise client_error("AWS.SimpleQueueService.NonExistentQueue", 400)
        return self.queues[url]

    def store(self, url: str, body: str, **fields: Any) -> StoredMessage:
        n = next(self.ids)
        message = StoredMessage(f"id-{n}", body, sequence=f"{10**19 + n}", **fields)
        self.queues[url].messages.append(message)
        return message

    # -- queue metadata --

    def get_queue_attributes(self, **params: Any) -> dict[str, Any]:
        assert set(params) == {"QueueUrl", "AttributeNames"}, params
        self.weather.request("GetQueueAttributes", [], SQS_THROTTLE)
        with self.lock:
            queue = self._queue(params["QueueUrl"])
            attributes = {
                "QueueArn": queue.arn,
                "ApproximateNumberOfMessages": str(
                    sum(m.visible_at <= self.clock.now for m in queue.messages)
                ),
            }
            if queue.fifo:
                attributes["FifoQueue"] = "true"
            return _ok(Attributes=attributes)

    def list_dead_letter_source_queues(self, **params: Any) -> dict[str, Any]:
        assert "NextToken" not in params, params  # one page: we never return a token
        self.weather.request("ListDeadLetterSourceQueues", [], SQS_THROTTLE)
        with self.lock:
            return _ok(queueUrls=list(self._queue(params["QueueUrl"]).sources))

    # -- messages --

    def receive_message(self, **params: Any) -> dict[str, Any]:
        # WaitTimeSeconds and ReceiveRequestAttemptId change nothing here: answers are at once
        unknown = set(params) - {
            "QueueUrl",
            "MaxNumberOfMessages",
            "VisibilityTimeout",
            "WaitTimeSeconds",
            "AttributeNames",
            "MessageSystemAttributeNames",
            "MessageAttributeNames",
            "ReceiveRequestAttemptId",
        }
        assert not unknown, unknown
        most = params.get("MaxNumberOfMessages", 1)
        assert 1 <= most <= 10
        system_attributes = params.get("AttributeNames") or params.get(
            "MessageSystemAttributeNames"
        )
        self.weather.request("ReceiveMessage", [], SQS_THROTTLE)
        with self.lock:
            queue = self._queue(params["QueueUrl"])
            now = self.clock.now
            locked = (
                {m.group for m in queue.messages if m.visible_at > now} if queue.fifo else set()
            )
            taken: list[StoredMessage] = []
            for message in queue.messages:
                if len(taken) == most:
                    break
                if message.visible_at > now or (queue.fifo and message.group in locked):
                    continue
                taken.append(message)
            answers = []
            for message in taken:
                message.visible_at = now + params.get("VisibilityTimeout", 30)
                message.receives += 1
                message.receipt = f"{message.message_id}/{message.receives}"
                self.by_receipt[message.receipt] = (queue.url, message.message_id)
                raw: dict[str, Any] = {
                    "MessageId": message.message_id,
                    "ReceiptHandle": message.receipt,
                    "Body": message.body,
                    "MD5OfBody": hashlib.md5(message.body.encode()).hexdigest(),
                }
                if system_attributes:
                    system = {
                        "SentTimestamp": "1700000000000",
                        "ApproximateReceiveCount": str(message.receives),
                        **message.system,
                    }
                    if queue.fifo:
                        system["MessageGroupId"] = str(message.group)
                        system["MessageDeduplicationId"] = str(message.deduplication_id)
                        system["SequenceNumber"] = message.sequence
                    raw["Attributes"] = system
                if params.get("MessageAttributeNames") and message.attributes:
                    raw["MessageAttributes"] = message.attributes
                answers.append(raw)
            return _ok(Messages=answers) if answers else _ok()

    def send_message_batch(self, **params: Any) -> dict[str, Any]:
        url, entries = _batch(params)
        queue = self.queues[url]
        for entry in entries:
            if queue.fifo:
                assert entry.get("MessageGroupId"), entry
                assert entry.get("MessageDeduplicationId"), entry
                assert "DelaySeconds" not in entry, entry
        withheld = self.weather.request(
            "SendMessageBatch", [e["MessageBody"] for e in entries], SQS_THROTTLE
        )
        successful, failed = [], []
        with self.lock:
            for entry, held in zip(entries, withheld, strict=True):
                if held:
                    failed.append(_internal_error(entry["Id"]))
                    continue
                system = {
                    name: value["StringValue"]
                    for name, value in entry.get("MessageSystemAttributes", {}).items()
                }
                message = self.store(
                    url,
                    entry["MessageBody"],
                    attributes=dict(entry.get("MessageAttributes", {})),
                    group=entry.get("MessageGroupId"),
                    deduplication_id=entry.get("MessageDeduplicationId"),
                    system=system,
                )
                queue.accepted.append(message)
                answer = {
                    "Id": entry["Id"],
                    "MessageId": message.message_id,
                    "MD5OfMessageBody": hashlib.md5(message.body.encode()).hexdigest(),
                }
                if queue.fifo:
                    answer["SequenceNumber"] = message.sequence
                successful.append(answer)
        return _ok(Successful=successful, Failed=failed)

    def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        url, entries = _batch(params)
        withheld = self.weather.request(
            "DeleteMessageBatch", [e["ReceiptHandle"] for e in entries], SQS_THROTTLE
        )
        successful, failed = [], []
        with self.lock:
            queue = self.queues[url]
            for entry, held in zip(entries, withheld, strict=True):
                if held:
                    failed.append(_internal_error(entry["Id"]))
                    continue
                if entry["ReceiptHandle"] not in self.by_receipt:
                    failed.append(_invalid_receipt(entry["Id"]))
                    continue
                _, message_id = self.by_receipt[entry["ReceiptHandle"]]
                queue.messages = [m for m in queue.messages if m.message_id != message_id]
                successful.append({"Id": entry["Id"]})
        return _ok(Successful=successful, Failed=failed)

    def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        url, entries = _batch(params)
        withheld = self.weather.request(
            "ChangeMessageVisibilityBatch", [e["ReceiptHandle"] for e in entries], SQS_THROTTLE
        )
        successful, failed = [], []
        with self.lock:
            queue = self.queues[url]
            current = {m.receipt: m for m in queue.messages}
            for entry, held in zip(entries, withheld, strict=True):
                if held:
                    failed.append(_internal_error(entry["Id"]))
                elif entry["ReceiptHandle"] not in current:
                    failed.append(_invalid_receipt(entry["Id"]))
                else:
                    message = current[entry["ReceiptHandle"]]
                    message.visible_at = self.clock.now + entry["VisibilityTimeout"]
                    successful.append({"Id": entry["Id"]})
        return _ok(Successful=successful, Failed=failed)


def _batch(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The queue and entries of a ``...Batch`` request, checked as SQS checks them."""
    assert set(params) == {"QueueUrl", "Entries"}, params
    entries: list[dict[str, Any]] = params["Entries"]
    assert 1 <= len(entries) <= 10, f"a batch takes 1 to 10 entries, got {len(entries)}"
    ids = [e["Id"] for e in entries]
    assert len(set(ids)) == len(ids), "SQS refuses repeated Ids in one request"
    return params["QueueUrl"], entries


def _internal_error(entry_id: str) -> dict[str, Any]:
    return {"Id": entry_id, "SenderFault": False, "Code": "InternalError", "Message": "try again"}


def _invalid_receipt(entry_id: str) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": True,
        "Code": "ReceiptHandleIsInvalid",
        "Message": "The receipt handle is not valid for this queue.",
    }


def _body(n: int) -> str:
    return json.dumps({"n": n})


def _group(n: int) -> str:
    return f"g{n % GROUPS}"


def assert_fifo_order(arrived: Sequence[StoredMessage]) -> None:
    per_group: dict[str | None, list[int]] = defaultdict(list)
    for message in arrived:
        n = json.loads(message.body)["n"]
        assert message.group == _group(n), (message.group, n)
        per_group[message.group].append(n)
    for group, ns in per_group.items():
        assert ns == sorted(ns), f"group {group} arrived out of order: {ns}"


# -- SQS FIFO: SqsSender --------------------------------------------------------------------------


def _send_fifo(sqs: FakeSqs, url: str, policy: RetryPolicy) -> BatchResult[Any]:
    with SqsSender(
        url, client=sqs, policy=policy, raise_on_failure=False, keep_answers=True
    ) as sender:
        for n in range(MESSAGES):
            sender.send_message(_body(n), id=f"m{n}", group_id=_group(n), deduplication_id=f"d{n}")
    return sender.result


@pytest.mark.parametrize("seed", SEEDS)
def test_sqs_fifo_gives_up_no_message(seed: int) -> None:
    clock = FakeClock(seed=seed)
    weather = Weather(seed, clock)
    sqs = FakeSqs(weather, clock)
    url = sqs.add_queue("orders.fifo")

    result = _send_fifo(sqs, url, default_policy(clock, seed))

    assert result.failed == [], given_up(result, seed, "messages")
    assert_accounted(result, MESSAGES)
    assert result.succeeded == MESSAGES
    assert sorted(a.entry_id for a in result.answers) == sorted(f"m{n}" for n in range(MESSAGES))
    accepted = sqs.queues[url].accepted
    assert Counter(m.body for m in accepted) == Counter(_body(n) for n in range(MESSAGES)), (
        "messages lost, doubled or invented in the queue"
    )
    assert all(m.deduplication_id == f"d{json.loads(m.body)['n']}" for m in accepted)
    assert_fifo_order(accepted)
    weather.assert_pressure()


def test_sqs_fifo_against_a_queue_that_never_takes_a_message_reports_every_message() -> None:
    clock = FakeClock(seed=3)
    sqs = FakeSqs(Weather(3, clock, withheld=1.0, throttled=0.0), clock)
    url = sqs.add_queue("orders.fifo")

    result = finishes(lambda: _send_fifo(sqs, url, default_policy(clock, 3)))

    assert_accounted(result, MESSAGES)
    assert result.succeeded == 0
    assert sorted(f.entry_id for f in result.failed) == sorted(f"m{n}" for n in range(MESSAGES))
    assert sqs.queues[url].accepted == []
    tried = [f for f in result.failed if f.code != "PrecedingEntryFailed"]
    assert all(f.code == "InternalError" and f.retryable and f.gave_up for f in tried), tried[:3]
    # the first message of every group was tried and given up; the rest never overtook it
    assert {f"m{n}" for n in range(GROUPS)} <= {f.entry_id for f in tried}


# -- the redrive drain: SQS DLQ -> its source queue -----------------------------------------------


def _dlq(sqs: FakeSqs, fifo: bool) -> tuple[str, str]:
    suffix = ".fifo" if fifo else ""
    dlq = sqs.add_queue(f"ledger-dlq{suffix}")
    source = sqs.add_queue(f"ledger{suffix}", dead_letters_to=dlq)
    for n in range(MESSAGES):
        sqs.store(
            dlq,
            _body(n),
            attributes={
                "n": {"DataType": "Number", "StringValue": str(n)},
                "kind": {"DataType": "String", "StringValue": "even" if n % 2 == 0 else "odd"},
            },
            group=_group(n) if fifo else None,
            deduplication_id=f"d{n}" if fifo else None,
            system={"AWSTraceHeader": f"Root=1-00000000-{n:024d}"},
        )
    return dlq, source


def _redrive(sqs: FakeSqs, dlq: str, policy: RetryPolicy) -> RedriveReport:
    # One receive worker: the seed then decides everything, the interleaving nothing.
    return redrive_sqs(dlq, client=sqs, policy=policy, concurrency=1)


def assert_arrived_intact(arrived: Sequence[StoredMessage], fifo: bool) -> None:
    for message in arrived:
        n = json.loads(message.body)["n"]
        assert message.attributes == {
            "n": {"DataType": "Number", "StringValue": str(n)},
            "kind": {"DataType": "String", "StringValue": "even" if n % 2 == 0 else "odd"},
        }
        assert message.system == {"AWSTraceHeader": f"Root=1-00000000-{n:024d}"}
    if fifo:
        assert_fifo_order(arrived)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
@pytest.mark.parametrize("seed", SEEDS)
def test_redrive_drain_gives_up_no_message(
    seed: int, fifo: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(seed=seed)
    weather = Weather(f"{seed}-fifo" if fifo else seed, clock)
    sqs = FakeSqs(weather, clock)
    dlq, source = _dlq(sqs, fifo)

    with caplog.at_level(logging.WARNING, logger="resilient_aws.redrive"):
        report = _redrive(sqs, dlq, default_policy(clock, seed))

    problems = {**report.failed, **report.undeleted}
    shown = ", ".join(f"{k} ({v[:40]})" for k, v in list(problems.items())[:5])
    assert not problems, (
        f"seed {seed}: {len(report.failed)} failed and {len(report.undeleted)} undeleted of "
        f"{MESSAGES} messages ({report.received} received): {shown}"
    )
    assert report.received == report.moved == MESSAGES, report
    assert report.handled == report.received
    assert report.target == source
    assert sqs.queues[dlq].messages == [], "the DLQ is not empty"
    arrived = sqs.queues[source].accepted
    assert Counter(m.body for m in arrived) == Counter(_body(n) for n in range(MESSAGES)), (
        "messages lost, doubled or invented in the target"
    )
    assert_arrived_intact(arrived, fifo)
    # a visibility change given up is an entry given up too (logged, not reported)
    assert not [r.getMessage() for r in caplog.records if "could not" in r.getMessage()]
    weather.assert_pressure()


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_redrive_to_a_queue_that_never_takes_a_message_moves_and_deletes_nothing(
    fifo: bool,
) -> None:
    clock = FakeClock(seed=4)
    sqs = FakeSqs(
        Weather(4, clock, withheld=1.0, throttled=0.0, operations={"SendMessageBatch"}), clock
    )
    dlq, source = _dlq(sqs, fifo)

    report = finishes(lambda: _redrive(sqs, dlq, default_policy(clock, 4)))

    assert report.moved == 0
    assert report.received > 0
    assert len(report.failed) == report.received == report.handled, report
    codes = {reason.split(":", 1)[0] for reason in report.failed.values()}
    assert "InternalError" in codes
    assert codes <= {"InternalError", "PrecedingEntryFailed", "HeldBehindFailure"}, codes
    if not fifo:
        assert report.received == MESSAGES
    assert sqs.queues[source].accepted == []
    left = sqs.queues[dlq].messages
    assert len(left) == MESSAGES, "a message was deleted that was never delivered"
    assert all(m.visible_at <= clock.now for m in left), "failed messages were not released"


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_redrive_from_a_dlq_that_never_deletes_reports_every_message_undeleted(
    fifo: bool,
) -> None:
    clock = FakeClock(seed=5)
    sqs = FakeSqs(
        Weather(5, clock, withheld=1.0, throttled=0.0, operations={"DeleteMessageBatch"}), clock
    )
    dlq, source = _dlq(sqs, fifo)

    report = finishes(lambda: _redrive(sqs, dlq, default_policy(clock, 5)))

    assert report.moved == 0
    assert report.failed == {}
    assert report.received > 0
    assert len(report.undeleted) == report.received == report.handled, report
    arrived = sqs.queues[source].accepted
    assert Counter(m.body for m in arrived) == Counter(
        m.body for m in sqs.queues[dlq].messages if m.message_id in report.undeleted
    ), "the target holds exactly the messages delivered and not deleted, once each"
    assert_arrived_intact(arrived, fifo)
    assert len(sqs.queues[dlq].messages) == MESSAGES, "a message was deleted"


# -- the weather itself -------------------------------------------------------------------------


def test_the_weather_is_forty_percent_withheld_and_five_percent_throttled() -> None:
    clock = FakeClock()
    weather = Weather(7, clock, max_requests=10**6)
    throttles: list[str] = []
    withheld = sent = 0
    for request in range(4_000):
        names = [f"e{request}-{i}" for i in range(10)]
        try:
            flags = weather.request("Op", names, "ThrottlingException")
        except ClientError as error:
            throttles.append(error.response["Error"]["Code"])
            continue
        withheld += sum(flags)
        sent += len(flags)
    assert set(throttles) == {"ThrottlingException"}
    assert 0.04 < len(throttles) / 4_000 < 0.06
    assert 0.38 < withheld / sent < 0.42
    # replayable: the same seed, the same draws, whatever came before
    first = Weather(7, FakeClock(), throttled=0.0)
    second = Weather(7, FakeClock(), throttled=0.0)
    second.request("Other", ["x"], "X")
    assert first.request("Op", list("abcdefgh"), "X") == second.request("Op", list("abcdefgh"), "X")
