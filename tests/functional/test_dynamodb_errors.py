"""One error tree for every DynamoDB entry point: a missing table is an UnknownTableError
whether it is scanned, queried, read by key or written; a refused DescribeTable and a boto3
Table resource passed for a name are ConfigurationErrors that say what to do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from resilient_aws.dynamodb import BatchWriter, batch_get, parallel_scan, query, scan
from resilient_aws.errors import ConfigurationError, UnknownTableError
from tests.dynamo_tables import create_table

READS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("scan", lambda ddb, table: list(scan(table, client=ddb))),
    ("scan.count", lambda ddb, table: scan(table, client=ddb).count()),
    ("scan.first", lambda ddb, table: scan(table, client=ddb).first()),
    (
        "query",
        lambda ddb, table: list(
            query(
                table,
                client=ddb,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "a"}},
            )
        ),
    ),
    ("parallel_scan", lambda ddb, table: list(parallel_scan(table, client=ddb, segments=2))),
    ("batch_get", lambda ddb, table: batch_get(table, [{"pk": "a"}], client=ddb)),
    ("BatchWriter", lambda ddb, table: BatchWriter(table, client=ddb).put({"pk": "a"})),
]


@pytest.mark.parametrize(("name", "read"), READS, ids=[name for name, _ in READS])
def test_a_missing_table_is_an_unknown_table_error_everywhere(
    ddb: Any, name: str, read: Callable[[Any, Any], Any]
) -> None:
    with pytest.raises(UnknownTableError, match="'nowhere'"):
        read(ddb, "nowhere")


@pytest.mark.parametrize(("name", "read"), READS, ids=[name for name, _ in READS])
def test_a_table_resource_for_a_name_says_what_to_pass(
    ddb: Any, name: str, read: Callable[[Any, Any], Any]
) -> None:
    create_table(ddb, "orders")
    resource = boto3.resource("dynamodb", region_name="us-east-1").Table("orders")
    with pytest.raises(ConfigurationError, match="Table resource") as caught:
        read(ddb, resource)
    assert caught.value.field == "table"
    assert "t.meta.client" in str(caught.value)


def test_a_table_resource_given_to_put_is_refused_too(ddb: Any) -> None:
    create_table(ddb, "orders")
    resource = boto3.resource("dynamodb", region_name="us-east-1").Table("orders")
    writer = BatchWriter(client=ddb)
    with pytest.raises(ConfigurationError, match="Table resource"):
        writer.put({"pk": "a"}, table=resource)
    writer.close()


def test_a_refused_describe_table_says_how_to_do_without_it() -> None:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_table", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(ConfigurationError, match="dynamodb:DescribeTable") as caught:
            BatchWriter("orders", client=client).put({"pk": "a"})
    assert caught.value.field == "keys"
    assert "AccessDeniedException" in str(caught.value)
