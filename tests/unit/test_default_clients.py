"""Every client the library makes itself is a shared default client (issue 16, item 1):
``IdempotencyStore``, ``Outbox``, the redrive functions; keyed by region and endpoint too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from resilient_aws._clients import (
    clear_default_clients,
    default_client,
    default_clients,
    on_default_client,
)
from resilient_aws.idempotency import IdempotencyStore
from resilient_aws.outbox import Outbox
from resilient_aws.redrive._queues import sqs_client
from resilient_aws.redrive._targets import Clients

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_default_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clear_default_clients()
    yield
    clear_default_clients()


def _retries(client: Any) -> dict[str, Any]:
    retries: dict[str, Any] = client.meta.config.retries
    return retries


# -- region and endpoint -------------------------------------------------------------------------


def test_a_region_asked_for_is_a_default_client_of_its_own() -> None:
    here = default_client("lambda")
    there = default_client("lambda", region="eu-west-1")
    assert there is not here
    assert there is default_client("lambda", region="eu-west-1")
    assert there.meta.region_name == "eu-west-1"
    assert here.meta.region_name == "us-east-1"
    assert default_client("lambda", region=None) is here
    assert default_client("lambda", region="") is here  # no region is the environment's
    assert _retries(there)["total_max_attempts"] == 1  # botocore retries nothing


def test_an_endpoint_asked_for_is_a_default_client_of_its_own() -> None:
    local = default_client("dynamodb", endpoint_url="http://localhost:8000")
    assert local is not default_client("dynamodb")
    assert local is default_client("dynamodb", endpoint_url="http://localhost:8000")
    assert local.meta.endpoint_url == "http://localhost:8000"


def test_a_session_keys_its_clients_by_region_too() -> None:
    session = boto3.session.Session(region_name="us-west-2")
    mine = default_client("sqs", session)
    theirs = default_client("sqs", session, region="ap-south-1")
    assert mine is not theirs
    assert mine.meta.region_name == "us-west-2"
    assert theirs.meta.region_name == "ap-south-1"
    assert default_client("sqs", session, region="ap-south-1") is theirs
    assert _retries(theirs)["total_max_attempts"] == 1


def test_default_clients_and_listeners_name_the_service_of_every_key() -> None:
    session = boto3.session.Session(region_name="us-west-2")
    heard: list[str] = []
    remove = on_default_client(lambda service, _client: heard.append(service))
    try:
        default_client("sqs", session, region="eu-west-1")
        default_client("lambda", region="eu-west-1")
    finally:
        remove()
    assert heard == ["sqs", "lambda"]
    assert sorted(service for service, _ in default_clients()) == ["lambda", "sqs"]


def test_the_environment_is_read_from_os_environ_whatever_its_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    # whatever an earlier test left there: the point is that the same value finds the same client
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    here = default_client("sqs")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated")
    assert default_client("sqs") is not here
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert default_client("sqs") is here
    # an os.environ replaced by a plain mapping (some test helpers do) is read through .get
    plain = dict(os.environ)
    monkeypatch.setattr(os, "environ", plain)
    mapped = default_client("sqs")
    assert default_client("sqs") is mapped
    plain["AWS_SECRET_ACCESS_KEY"] = "rotated again"
    assert default_client("sqs") is not mapped


# -- IdempotencyStore ----------------------------------------------------------------------------


def test_a_store_without_client_uses_the_default_dynamodb_client_and_follows_it() -> None:
    store = IdempotencyStore("idempotency")
    first = store.client
    assert first is default_client("dynamodb")
    assert _retries(first)["total_max_attempts"] == 1
    clear_default_clients()
    assert store.client is not first and store.client is default_client("dynamodb")


def test_a_store_given_a_client_keeps_it() -> None:
    client = boto3.client("dynamodb")
    store = IdempotencyStore("idempotency", client=client)
    assert store.client is client
    assert default_clients() == []


# -- Outbox ----------------------------------------------------------------------------------------


def test_an_outbox_without_client_uses_the_default_dynamodb_client_of_its_session() -> None:
    assert Outbox("orders").client is default_client("dynamodb")
    session = boto3.session.Session(region_name="eu-central-1")
    outbox = Outbox("orders", session=session)
    assert outbox.client is default_client("dynamodb", session)
    assert outbox.client.meta.region_name == "eu-central-1"
    assert outbox.session is session


def test_an_outbox_given_a_client_keeps_it_and_a_new_one_can_be_set() -> None:
    client = boto3.client("dynamodb")
    outbox = Outbox("orders", client=client, session=boto3.session.Session())
    assert outbox.client is client
    other = boto3.client("dynamodb")
    outbox.client = other
    assert outbox.client is other
    assert default_clients() == []


def test_an_outbox_made_at_import_is_not_pinned_to_a_cleared_client() -> None:
    outbox = Outbox("orders")
    first = outbox.client
    clear_default_clients()
    assert outbox.client is not first and outbox.client is default_client("dynamodb")


# -- redrive ------------------------------------------------------------------------------------------


def test_the_redrive_sqs_client_is_given_or_default() -> None:
    given = boto3.client("sqs")
    assert sqs_client(given, None) is given
    assert sqs_client(None, None) is default_client("sqs")
    session = boto3.session.Session(region_name="eu-west-1")
    assert sqs_client(None, session) is default_client("sqs", session)


def test_redrive_clients_are_given_or_default_per_service_and_region() -> None:
    given = boto3.client("events")
    clients = Clients(None, events=given, sqs=None)
    assert clients.get("events") is given
    assert clients.get("events", "eu-west-1") is given  # given wins, whatever the region
    assert clients.get("sqs") is default_client("sqs")
    assert clients.get("lambda", "eu-west-1") is default_client("lambda", region="eu-west-1")
    assert clients.get("lambda", "eu-west-1").meta.region_name == "eu-west-1"
    assert clients.get("kinesis", None) is default_client("kinesis")


def test_redrive_clients_of_a_session_are_its_default_clients() -> None:
    session = boto3.session.Session(region_name="us-west-2")
    clients = Clients(session)
    assert clients.get("dynamodbstreams") is default_client("dynamodbstreams", session)
    made = clients.get("lambda", "eu-west-1")
    assert made is default_client("lambda", session, region="eu-west-1")
    assert _retries(made)["total_max_attempts"] == 1


# -- no boto3.client( left, and nothing new at import ----------------------------------------------


def test_no_module_of_the_package_makes_a_client_of_its_own() -> None:
    # The CLI makes its clients from its --profile/--region session, the emulators and the
    # moto server helpers point test clients at their endpoints: everything else asks _clients.
    import ast

    allowed = {"_clients.py", "cli", "emulators.py", "_moto.py"}
    offenders = []
    for path in sorted((ROOT / "resilient_aws").rglob("*.py")):
        relative = path.relative_to(ROOT / "resilient_aws")
        if relative.parts[0] in allowed or relative.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("client", "resource")
            ):
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []


def test_importing_the_routed_subpackages_imports_no_boto3() -> None:
    code = (
        "import sys\n"
        "import resilient_aws.idempotency, resilient_aws.outbox, resilient_aws.redrive\n"
        "import resilient_aws._clients\n"
        "print('boto3' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False", done.stderr
