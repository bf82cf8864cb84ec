"""20,000 items through BatchWriter under every fault, read back with scan, parallel_scan and batch_get."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_aws.dynamodb import BatchWriter, batch_get, parallel_scan, scan
from resilient_aws.testing import FakeClock, chaos
from tests.dynamo_tables import all_items, create_table

FAULTS: dict[str, Any] = {"partial": 0.3, "throttle": 0.05, "error5xx": 0.02, "reset": 0.01}
ITEMS = 20_000


# One seed: it meets every fault it injects (resets ~10 times in its ~1,500 calls);
# a second seed ran the same paths under other draws, for 20 s more of the suite.
@pytest.mark.parametrize("seed", [11])
def test_twenty_thousand_items_nothing_lost_nothing_invented(ddb: Any, seed: int) -> None:
    table = create_table(ddb, "load", range_key=("sk", "N"))
    expected = {(f"user-{i % 500}", i) for i in range(ITEMS)}
    policy = FakeClock(seed=seed).policy(max_attempts=30, max_delay=2.0)
    with chaos(ddb, seed=seed, lost_response=0.005, **FAULTS) as injected:
        with BatchWriter(table, client=ddb, policy=policy, concurrency=4) as writer:
            for pk, sk in expected:
                writer.put({"pk": pk, "sk": sk, "amount": sk / 100})
        scanned = {(i["pk"], int(i["sk"])) for i in scan(table, client=ddb, policy=policy)}
        parallel = {
            (i["pk"], int(i["sk"]))
            for i in parallel_scan(table, client=ddb, policy=policy, segments=4)
        }
        got = batch_get(
            table,
            [{"pk": pk, "sk": sk} for pk, sk in expected],
            client=ddb,
            policy=policy,
            concurrency=4,
        )
    assert writer.result.ok
    assert writer.result.succeeded == ITEMS
    assert injected.stats.withheld_entries > 1000
    assert injected.stats.throttled and injected.stats.errors_5xx and injected.stats.resets
    assert scanned == expected
    assert parallel == expected
    assert {(i["pk"], int(i["sk"])) for i in got.items} == expected
    assert got.missing == []
    # and independently of the code under test:
    assert {(i["pk"]["S"], int(i["sk"]["N"])) for i in all_items(ddb, table)} == expected
