"""Review of the async read (``async for`` over scan/query): the same requests and cursor as
the sync read (fake clients, no network)."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_aws.dynamodb import scan

ITEMS = [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(3)]
TABLE = {
    "Table": {
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    }
}


class AsyncDynamo:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def scan(self, **request: Any) -> Any:
        self.calls.append("Scan")
        return {"Items": ITEMS, "Count": 3, "ScannedCount": 3}

    async def describe_table(self, **request: Any) -> Any:
        self.calls.append("DescribeTable")
        return TABLE


class SyncDynamo(AsyncDynamo):
    def scan(self, **request: Any) -> Any:  # type: ignore[override]
        self.calls.append("Scan")
        return {"Items": ITEMS, "Count": 3, "ScannedCount": 3}

    def describe_table(self, **request: Any) -> Any:  # type: ignore[override]
        self.calls.append("DescribeTable")
        return TABLE


async def test_a_cut_page_resumes_like_the_sync_read() -> None:
    sync_client, async_client = SyncDynamo(), AsyncDynamo()
    sync_read = scan("t", client=sync_client, max_items=2)
    async_read = scan("t", client=async_client, max_items=2)
    assert list(sync_read) == [item async for item in async_read]
    assert async_read.cursor == sync_read.cursor is not None
    # the position of the cut item comes from the key schema: asked once by each
    assert sorted(async_client.calls) == sorted(sync_client.calls) == ["DescribeTable", "Scan"]


@pytest.mark.parametrize("max_items", [0, 5])
async def test_max_items_that_cuts_no_page_makes_the_same_requests(max_items: int) -> None:
    sync_client, async_client = SyncDynamo(), AsyncDynamo()
    sync_items = list(scan("t", client=sync_client, max_items=max_items))
    async_items = [item async for item in scan("t", client=async_client, max_items=max_items)]
    assert async_items == sync_items
    assert async_client.calls == sync_client.calls  # no DescribeTable the read did not need


async def test_async_iteration_with_a_sync_client_is_a_clear_error() -> None:
    from resilient_aws.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="aiobotocore"):
        [item async for item in scan("t", client=SyncDynamo())]
