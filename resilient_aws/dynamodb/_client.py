"""Bring your own client, or get one lazily from a session."""

from __future__ import annotations

from typing import Any


def dynamodb_client(client: Any = None, session: Any = None) -> Any:
    """``client`` if given, else a DynamoDB client from ``session`` (or boto3's default one)."""
    if client is not None:
        return client
    if session is not None:
        return session.client("dynamodb")
    import boto3

    return boto3.client("dynamodb")
