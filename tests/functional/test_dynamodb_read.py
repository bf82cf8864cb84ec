"""scan, query, parallel_scan and cursors against moto in process."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from resilient_aws.dynamodb import BatchWriter, parallel_scan, query, scan, scan_segment
from resilient_aws.errors import ConfigurationError, InvalidCursorError, UnknownTableError
from resilient_aws.testing import FakeClock, chaos
from tests.dynamo_tables import create_table


@pytest.fixture
def orders(ddb: Any) -> str:
    create_table(ddb, "orders", range_key=("sk", "N"), indexes={"by_city": ("city", "S")})
    with BatchWriter("orders", client=ddb) as writer:
        for i in range(300):
            # Milan only at the end of the table order: page one has none of them.
            writer.put(
                {
                    "pk": f"c{i % 30:02d}",
                    "sk": i,
                    "city": "Milan" if i == 299 else "Ljubljana",
                    "n": i,
                }
            )
    return "orders"


def test_a_filtered_scan_follows_every_page(ddb: Any, orders: str) -> None:
    read = scan(
        orders,
        client=ddb,
        page_size=25,
        FilterExpression="city = :c",
        ExpressionAttributeValues={":c": {"S": "Milan"}},
    )
    found = list(read)
    assert [item["sk"] for item in found] == [299]
    assert read.summary.pages == 12
    assert read.summary.scanned == 300
    assert read.summary.returned == 1
    assert read.done
    assert read.cursor is None


def test_first_finds_a_match_beyond_page_one(ddb: Any, orders: str) -> None:
    first = scan(
        orders,
        client=ddb,
        page_size=10,
        FilterExpression="city = :c",
        ExpressionAttributeValues={":c": {"S": "Milan"}},
    ).first()
    assert first is not None
    assert first["sk"] == 299


def test_pages_carry_counts_and_cursors(ddb: Any, orders: str) -> None:
    pages = list(scan(orders, client=ddb, page_size=100).pages())
    assert [len(p.items) for p in pages] == [100, 100, 100]
    assert [p.count for p in pages] == [100, 100, 100]
    assert all(p.cursor for p in pages[:-1])
    # moto returns a LastEvaluatedKey on a full last page; the read ends with an empty page then
    assert sum(len(p.items) for p in pages) == 300


@pytest.mark.parametrize(("page_size", "max_items"), [(100, 150), (7, 150), (None, 1), (50, 100)])
def test_max_items_then_resume_gives_every_item_exactly_once(
    ddb: Any, orders: str, page_size: int | None, max_items: int
) -> None:
    first = scan(orders, client=ddb, page_size=page_size, max_items=max_items)
    head = list(first)
    assert len(head) == max_items
    assert first.cursor is not None
    rest = list(scan(orders, client=ddb, page_size=page_size, cursor=first.cursor))
    keys = [(i["pk"], i["sk"]) for i in head + rest]
    assert len(keys) == len(set(keys)) == 300


def test_resume_mid_page_on_an_index(ddb: Any, orders: str) -> None:
    first = scan(orders, client=ddb, IndexName="by_city", max_items=5, page_size=100)
    head = list(first)
    rest = list(scan(orders, client=ddb, IndexName="by_city", cursor=first.cursor))
    assert len({(i["pk"], i["sk"]) for i in head + rest}) == 300
    with pytest.raises(InvalidCursorError):
        scan(orders, client=ddb, cursor=first.cursor)  # a cursor of the index, not the table


def test_stopping_inside_a_page_never_skips_it_on_resume(ddb: Any, orders: str) -> None:
    read = scan(orders, client=ddb, page_size=100)
    seen = []
    for item in read:
        seen.append((item["pk"], item["sk"]))
        if len(seen) == 130:
            break
    rest = [(i["pk"], i["sk"]) for i in scan(orders, client=ddb, page_size=100, cursor=read.cursor)]
    assert set(seen) | set(rest) == {(i["pk"], i["sk"]) for i in scan(orders, client=ddb)}


def test_query_and_count(ddb: Any, orders: str) -> None:
    read = query(
        orders,
        client=ddb,
        page_size=3,
        numbers="native",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "c07"}},
    )
    items = list(read)
    assert [i["sk"] for i in items] == list(range(7, 300, 30))
    assert all(isinstance(i["n"], int) for i in items)
    assert read.count() == 10
    assert scan(orders, client=ddb, page_size=40).count() == 300
    with pytest.raises(ConfigurationError):
        query(orders, client=ddb)


def test_throttled_pages_are_retried_not_restarted(ddb: Any, orders: str) -> None:
    clock = FakeClock()
    with chaos(ddb, throttle=0.3, error5xx=0.1, seed=5) as injected:
        items = list(scan(orders, client=ddb, page_size=20, policy=clock.policy(max_attempts=20)))
    assert len(items) == 300
    assert len({(i["pk"], i["sk"]) for i in items}) == 300
    assert injected.stats.throttled > 0
    assert clock.slept


def test_a_filter_that_discards_most_of_a_large_read_is_logged(
    ddb: Any, orders: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="resilient_aws")
    list(
        scan(
            orders,
            client=ddb,
            filter_warning_min_scanned=100,
            FilterExpression="city = :c",
            ExpressionAttributeValues={":c": {"S": "Milan"}},
        )
    )
    assert any("read 300 items to return 1" in r.getMessage() for r in caplog.records)


def test_managed_parameters_are_refused(ddb: Any) -> None:
    with pytest.raises(ConfigurationError, match="ExclusiveStartKey"):
        scan("t", client=ddb, ExclusiveStartKey={})
    with pytest.raises(ConfigurationError, match="segment"):
        scan("t", client=ddb, segment=1)


def test_parallel_scan_reads_every_item_once(ddb: Any, orders: str) -> None:
    read = parallel_scan(orders, client=ddb, segments=4, workers=2, page_size=30)
    keys = [(i["pk"], i["sk"]) for i in read]
    assert len(keys) == len(set(keys)) == 300
    assert read.done
    assert sum(read.summary.by_segment.values()) == 300


def test_parallel_scan_resumes_each_segment(ddb: Any, orders: str) -> None:
    first = parallel_scan(orders, client=ddb, segments=3, workers=3, page_size=20)
    seen = set()
    for item in first:
        seen.add((item["pk"], item["sk"]))
        if len(seen) >= 100:
            break
    assert not first.done
    resumed = parallel_scan(orders, client=ddb, segments=3, page_size=20, cursors=first.cursors)
    seen |= {(i["pk"], i["sk"]) for i in resumed}
    assert len(seen) == 300


def test_parallel_scan_surfaces_errors(ddb: Any) -> None:
    with pytest.raises(UnknownTableError, match="'missing' does not exist"):
        list(parallel_scan("missing", client=ddb, segments=2))


def test_segments_union_is_the_table(ddb: Any, orders: str) -> None:
    keys: list[tuple[str, int]] = []
    for segment in range(5):
        keys += [(i["pk"], i["sk"]) for i in scan_segment(orders, segment, 5, client=ddb)]
    assert len(keys) == len(set(keys)) == 300
