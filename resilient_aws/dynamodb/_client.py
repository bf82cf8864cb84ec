"""Bring your own client, or share the default one (per environment or session)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from resilient_aws._clients import default_client
from resilient_aws.errors import ConfigurationError, UnknownTableError


def dynamodb_client(client: Any = None, session: Any = None) -> Any:
    """``client`` if given, else the shared default DynamoDB client of ``session`` (or of the
    environment): made once, with botocore's retries off (see :mod:`resilient_aws._clients`),
    so its key-schema cache is shared by every writer and read."""
    if client is not None:
        return client
    return default_client("dynamodb", session)


def table_name(table: Any) -> str:
    """``table`` if it is a name; a typed error for anything else (a boto3 ``Table`` resource
    is the usual mistake: the library takes the name and a client)."""
    if isinstance(table, str) and table:
        return table
    if hasattr(table, "table_name") and hasattr(table, "meta"):
        raise ConfigurationError(
            "table",
            "got a boto3 Table resource: pass its name and its client"
            " (table=t.name, client=t.meta.client)",
        )
    raise ConfigurationError(
        "table", f"must be a table name (a non-empty str), got {type(table).__name__}"
    )


def missing_table(error: ClientError, table: str) -> BaseException:
    """The library's error for ``error`` if it says ``table`` does not exist, else ``error``."""
    if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
        missing = UnknownTableError(table)
        missing.__cause__ = error
        return missing
    return error
