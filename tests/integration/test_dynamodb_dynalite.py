"""The DynamoDB layer against dynalite, which validates requests the way DynamoDB does (moto does not)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilient_aws.dynamodb import BatchWriter, batch_get, parallel_scan, scan
from resilient_aws.errors import BatchWriteError
from resilient_aws.testing import FakeClock, chaos
from resilient_aws.testing.emulators import NodeEmulator
from tests.dynamo_tables import all_items, create_table

pytestmark = pytest.mark.emulator
_names = itertools.count()


@pytest.fixture
def ddb(dynalite_server: NodeEmulator) -> Any:
    return dynalite_server.client("dynamodb")


@pytest.fixture
def table(ddb: Any) -> str:
    return create_table(ddb, f"items-{next(_names)}", range_key=("sk", "N"))


def test_dynalite_rejects_what_the_writer_never_sends(ddb: Any, table: str) -> None:
    too_many = [
        {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": str(i)}}}} for i in range(26)
    ]
    with pytest.raises(ClientError, match="ValidationException"):
        ddb.batch_write_item(RequestItems={table: too_many})
    twice = [{"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}}}] * 2
    with pytest.raises(ClientError, match="duplicates"):
        ddb.batch_write_item(RequestItems={table: twice})


def test_the_writer_chunks_and_dedupes_so_dynalite_accepts_everything(ddb: Any, table: str) -> None:
    with BatchWriter(table, client=ddb, concurrency=3) as writer:
        for i in range(500):
            writer.put({"pk": f"p{i % 7}", "sk": i % 200, "v": i, "ratio": i / 7})
    stored = {(i["pk"]["S"], int(i["sk"]["N"])): int(i["v"]["N"]) for i in all_items(ddb, table)}
    last_write = {(f"p{i % 7}", i % 200): i for i in range(500)}
    assert stored == last_write
    assert writer.result.submitted == 500
    assert writer.result.succeeded + writer.result.deduplicated == 500


def test_one_entry_dynalite_rejects_does_not_fail_the_other_24(ddb: Any, table: str) -> None:
    # The writer is told the wrong key schema: entries without "sk" pass its checks and are
    # rejected by DynamoDB, which refuses the whole batch; the writer splits it until the bad
    # entries stand alone and everything else is written.
    writer = BatchWriter(table, client=ddb, keys="pk", raise_on_failure=False)
    for i in range(25):
        writer.put({"pk": f"p{i}", "sk": i} if i not in (4, 17) else {"pk": f"p{i}"})
    result = writer.close()
    assert sorted(f.entry_id for f in result.failed) == [f"{table}[pk=p17]", f"{table}[pk=p4]"]
    assert {f.code for f in result.failed} == {"ValidationException"}
    assert result.succeeded == 23
    assert len(all_items(ddb, table)) == 23


def test_reads_and_batch_get_against_dynalite_under_chaos(ddb: Any, table: str) -> None:
    clock = FakeClock(seed=3)
    policy = clock.policy(max_attempts=30)
    with chaos(ddb, partial=0.3, throttle=0.05, error5xx=0.02, reset=0.01, seed=3):
        with BatchWriter(table, client=ddb, policy=policy, concurrency=2) as writer:
            for i in range(1000):
                writer.put({"pk": f"p{i % 13}", "sk": i})
        scanned = {
            (i["pk"], i["sk"]) for i in scan(table, client=ddb, policy=policy, page_size=150)
        }
        parallel = {
            (i["pk"], i["sk"]) for i in parallel_scan(table, client=ddb, policy=policy, segments=4)
        }
        got = batch_get(
            table, [{"pk": f"p{i % 13}", "sk": i} for i in range(1000)], client=ddb, policy=policy
        )
    expected = {(f"p{i % 13}", i) for i in range(1000)}
    assert scanned == parallel == expected
    assert {(i["pk"], i["sk"]) for i in got.items} == expected
    assert got.missing == []


def test_a_batch_error_names_entries_not_payloads(ddb: Any, table: str) -> None:
    with (
        chaos(ddb, partial=1.0, seed=1),
        pytest.raises(BatchWriteError) as caught,
        BatchWriter(table, client=ddb, policy=FakeClock().policy(max_attempts=2)) as writer,
    ):
        writer.put({"pk": "someone@example.com", "sk": 1, "card": "4111111111111111"})
    assert "someone@example.com" in str(caught.value)
    assert "4111" not in str(caught.value)
    assert "4111" not in repr(caught.value.result.failed)
