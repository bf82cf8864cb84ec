"""BatchWriter and batch_get against moto in process."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from resilient_aws.dynamodb import BatchWriter, batch_get
from resilient_aws.errors import (
    BatchGetError,
    BatchWriteError,
    EntryTooLargeError,
    InvalidKeyError,
    UnknownTableError,
    UnsupportedValueError,
)
from resilient_aws.testing import FakeClock, chaos
from tests.dynamo_tables import all_items, create_table


@pytest.fixture
def table(ddb: Any) -> str:
    return create_table(ddb, "items", range_key=("sk", "N"))


def _stored(ddb: Any, table: str) -> dict[tuple[str, Decimal], dict[str, Any]]:
    return {(i["pk"]["S"], Decimal(i["sk"]["N"])): i for i in all_items(ddb, table)}


@dataclasses.dataclass
class Order:
    pk: str
    sk: int
    total: float


def test_puts_and_deletes_with_floats_and_dataclasses(ddb: Any, table: str) -> None:
    with BatchWriter(table, client=ddb) as writer:
        for i in range(60):
            writer.put({"pk": "a", "sk": i, "price": i * 0.1})
        writer.put(Order("b", 1, 19.99))
        writer.delete({"pk": "a", "sk": 0})
    stored = _stored(ddb, table)
    assert len(stored) == 60
    assert stored[("a", Decimal(3))]["price"] == {"N": "0.30000000000000004"}
    assert stored[("b", Decimal(1))]["total"] == {"N": "19.99"}
    assert writer.result.submitted == 62
    assert writer.result.succeeded == 62
    assert writer.result.requests == 3


def test_two_writes_of_one_key_in_a_batch_keep_the_last(ddb: Any, table: str) -> None:
    with BatchWriter(table, client=ddb) as writer:
        writer.put({"pk": "k", "sk": 1, "v": "first"})
        writer.put({"pk": "k", "sk": Decimal("1.0"), "v": "second"})  # the same key to DynamoDB
        writer.put({"pk": "k", "sk": 2, "v": "kept"})
        writer.delete({"pk": "k", "sk": 2})
    stored = _stored(ddb, table)
    assert stored[("k", Decimal(1))]["v"] == {"S": "second"}
    assert ("k", Decimal(2)) not in stored
    assert writer.result.deduplicated == 2
    assert writer.result.submitted == writer.result.succeeded + writer.result.deduplicated


def test_several_tables_in_one_writer(ddb: Any, table: str) -> None:
    create_table(ddb, "users", hash_key=("id", "S"))
    with BatchWriter(client=ddb) as writer:
        for i in range(30):
            writer.put({"pk": "p", "sk": i}, table=table)
            writer.put({"id": f"u{i}"}, table="users")
    assert len(all_items(ddb, table)) == 30
    assert len(all_items(ddb, "users")) == 30
    assert writer.result.requests == 3


def test_an_oversized_item_is_refused_before_sending_and_the_rest_is_written(
    ddb: Any, table: str
) -> None:
    with BatchWriter(table, client=ddb) as writer:
        writer.put({"pk": "ok", "sk": 1})
        with pytest.raises(EntryTooLargeError) as caught:
            writer.put({"pk": "big", "sk": 2, "blob": "x" * 410_000})
        writer.put({"pk": "ok", "sk": 3})
    assert caught.value.entry_id == "items[pk=big,sk=2]"
    assert "x" * 20 not in str(caught.value)
    assert set(_stored(ddb, table)) == {("ok", Decimal(1)), ("ok", Decimal(3))}


@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        ({"sk": 1}, InvalidKeyError, "'pk' is missing"),
        ({"pk": "", "sk": 1}, InvalidKeyError, "empty string"),
        ({"pk": 5, "sk": 1}, InvalidKeyError, "must be of type S"),
        ({"pk": "a", "sk": "1"}, InvalidKeyError, "must be of type N"),
        ({"pk": "a", "sk": 1, "v": float("nan")}, UnsupportedValueError, "v: nan"),
        ({"pk": "a", "sk": 1, "tags": set()}, UnsupportedValueError, "empty sets"),
        ({"pk": "a", "sk": 1, "note": "ok \ud800"}, UnsupportedValueError, "lone surrogate"),
        ({"pk": "a", "sk": 1, "notes": ["\udfff"]}, UnsupportedValueError, "items\\[pk=a"),
    ],
)
def test_bad_entries_raise_typed_errors_and_do_not_stop_the_others(
    ddb: Any, table: str, item: dict[str, Any], error: type[Exception], message: str
) -> None:
    with BatchWriter(table, client=ddb) as writer:
        writer.put({"pk": "good", "sk": 1})
        with pytest.raises(error, match=message):
            writer.put(item)
        writer.put({"pk": "good", "sk": 2})
    assert len(_stored(ddb, table)) == 2
    assert writer.result.submitted == 2


def test_on_invalid_report_collects_bad_entries_in_the_result(ddb: Any, table: str) -> None:
    writer = BatchWriter(table, client=ddb, on_invalid="report")
    writer.put({"pk": "good", "sk": 1})
    writer.put({"pk": "", "sk": 2})
    with pytest.raises(BatchWriteError) as caught:
        writer.close()
    result = caught.value.result
    assert (result.submitted, result.succeeded, len(result.failed)) == (2, 1, 1)
    assert result.failed[0].code == "InvalidKeyError"
    assert result.failed[0].entry == {"pk": "", "sk": 2}


class _ModelThatCannotDump:
    def __init__(self, sk: int) -> None:
        self.sk = sk

    def model_dump(self, mode: str) -> dict[str, Any]:
        raise ValueError("a validator of the caller's model failed")


def test_a_model_whose_dump_raises_is_a_typed_bad_entry(ddb: Any, table: str) -> None:
    writer = BatchWriter(table, client=ddb, on_invalid="report", raise_on_failure=False)
    with writer:
        writer.put({"pk": "good", "sk": 1})
        writer.put(_ModelThatCannotDump(2))  # reported, and the loop goes on
        writer.put({"pk": "good", "sk": 3})
    (failed,) = writer.result.failed
    assert (
        failed.code == "UnsupportedValueError"
        and "model_dump() raised ValueError" in failed.message
    )
    assert len(_stored(ddb, table)) == 2 and writer.result.submitted == 3


def test_unknown_table(ddb: Any) -> None:
    with pytest.raises(UnknownTableError, match="nope"):
        BatchWriter("nope", client=ddb).put({"pk": "a"})


def test_entries_that_finally_fail_are_raised_with_their_codes(ddb: Any, table: str) -> None:
    clock = FakeClock()
    with (
        chaos(ddb, partial=1.0, seed=1),
        pytest.raises(BatchWriteError) as caught,
        BatchWriter(
            table, client=ddb, policy=clock.policy(max_attempts=3, max_stalled=0)
        ) as writer,
    ):
        for i in range(30):
            writer.put({"pk": "p", "sk": i})
    result = caught.value.result
    assert len(result.failed) == 30
    assert {f.code for f in result.failed} == {"Unprocessed"}
    assert {f.gave_up for f in result.failed} == {"attempts"}
    # The first request's entries are sent max_attempts times; once the writer has gone that
    # many requests without completing anything, it has stopped making progress and the
    # entries behind them are given up at their first request that completes nothing.
    assert sorted(f.attempts for f in result.failed) == [1] * 5 + [3] * 25
    assert sorted(f.entry["sk"] for f in result.failed) == list(range(30))
    assert "items[pk=p,sk=0] (Unprocessed)" in str(caught.value)
    assert all_items(ddb, table) == []


def test_raise_on_failure_false_returns_the_result(ddb: Any, table: str) -> None:
    with chaos(ddb, partial=1.0, seed=1):
        writer = BatchWriter(
            table, client=ddb, policy=FakeClock().policy(max_attempts=2), raise_on_failure=False
        )
        writer.put({"pk": "p", "sk": 1})
        result = writer.close()
    assert not result.ok
    assert len(result.failed) == 1


def test_an_exception_in_the_block_still_writes_what_was_buffered(ddb: Any, table: str) -> None:
    with pytest.raises(RuntimeError), BatchWriter(table, client=ddb) as writer:
        writer.put({"pk": "a", "sk": 1})
        raise RuntimeError("caller bug")
    assert len(all_items(ddb, table)) == 1


def test_a_deadline_reports_what_it_left(ddb: Any, table: str) -> None:
    clock = FakeClock()
    policy = clock.policy(max_attempts=100, base_delay=0.5, max_delay=0.5, jitter="none")
    # Time passes only while the writer backs off, i.e. while the table completes nothing: at
    # 60% withheld it keeps completing, never sleeps and never meets the deadline.
    with chaos(ddb, partial=1.0, seed=2):
        writer = BatchWriter(
            table, client=ddb, policy=policy, deadline=clock.deadline(1.0), raise_on_failure=False
        )
        for i in range(50):
            writer.put({"pk": "p", "sk": i})
        result = writer.close()
    assert result.failed
    assert {f.gave_up for f in result.failed} == {"deadline"}
    assert result.succeeded + len(result.failed) == 50
    assert len(all_items(ddb, table)) == result.succeeded


def test_concurrent_writes_of_one_key_keep_the_last_value_under_retries(
    ddb: Any, table: str
) -> None:
    clock = FakeClock()
    with (
        chaos(ddb, partial=0.5, seed=9),
        BatchWriter(
            table, client=ddb, policy=clock.policy(max_attempts=40), concurrency=4
        ) as writer,
    ):
        for version in range(20):
            for sk in range(25):
                writer.put({"pk": "hot", "sk": sk, "version": version})
    stored = _stored(ddb, table)
    assert {item["version"]["N"] for item in stored.values()} == {"19"}
    assert writer.result.ok


def test_batch_get_chunks_dedupes_and_reports_missing(ddb: Any, table: str) -> None:
    with BatchWriter(table, client=ddb) as writer:
        for i in range(250):
            writer.put({"pk": "g", "sk": i, "v": i})
    keys = [{"pk": "g", "sk": i} for i in range(260)] + [{"pk": "g", "sk": 3}]
    result = batch_get(table, keys, client=ddb, keep_order=True, numbers="native")
    assert [item["sk"] for item in result.items] == list(range(250))
    assert [k["sk"] for k in result.missing] == list(range(250, 260))
    assert result.deduplicated == 1
    assert result.requests == 3
    assert result.submitted == 261


def test_batch_get_projection_keeps_the_keys(ddb: Any, table: str) -> None:
    with BatchWriter(table, client=ddb) as writer:
        writer.put({"pk": "g", "sk": 1, "v": 1, "hidden": "x", "size": 3})
    (item,) = batch_get(table, [{"pk": "g", "sk": 1}], client=ddb, projection=["v", "size"]).items
    assert item == {"pk": "g", "sk": 1, "v": 1, "size": 3}


def test_batch_get_retries_unprocessed_keys(ddb: Any, table: str) -> None:
    with BatchWriter(table, client=ddb) as writer:
        for i in range(300):
            writer.put({"pk": "g", "sk": i})
    clock = FakeClock()
    with chaos(ddb, partial=0.4, throttle=0.05, seed=4) as injected:
        result = batch_get(
            table,
            [{"pk": "g", "sk": i} for i in range(300)],
            client=ddb,
            policy=clock.policy(max_attempts=30),
            concurrency=3,
        )
    assert len(result.items) == 300
    assert injected.stats.withheld_entries > 0
    assert result.resent >= injected.stats.withheld_entries


def test_batch_get_gives_up_loudly(ddb: Any, table: str) -> None:
    with chaos(ddb, partial=1.0, seed=1), pytest.raises(BatchGetError) as caught:
        batch_get(
            table, [{"pk": "g", "sk": 1}], client=ddb, policy=FakeClock().policy(max_attempts=2)
        )
    assert caught.value.result.failed[0].entry == {"pk": "g", "sk": 1}


def test_requests_are_cut_by_bytes_too(ddb: Any, table: str) -> None:
    import dataclasses as dc

    from resilient_aws.limits import DYNAMODB_BATCH_WRITE

    small_requests = dc.replace(DYNAMODB_BATCH_WRITE, max_request_bytes=10_000)
    with BatchWriter(table, client=ddb, limits=small_requests) as writer:
        for i in range(10):
            writer.put({"pk": "b", "sk": i, "blob": "x" * 3_000})
    assert writer.result.requests == 4  # 3 + 3 + 3 + 1 items of ~3 KB under 10 KB
    assert len(all_items(ddb, table)) == 10
