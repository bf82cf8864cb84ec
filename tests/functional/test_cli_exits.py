"""resilient-aws exit codes as docs/cli.md states them, and the load/export reports' edges."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from resilient_aws.cli import main
from resilient_aws.cli._context import Context
from tests.dynamo_tables import all_items, create_table


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def _lines(count: int, start: int = 0) -> list[str]:
    return [json.dumps({"pk": f"order-{i:05d}", "n": i}) for i in range(start, start + count)]


def _deny(monkeypatch: pytest.MonkeyPatch, operation: str, code: str) -> list[int]:
    """Every client the command makes answers ``operation`` with ``code``; counts the calls."""
    calls: list[int] = []
    made = Context._client

    def denied(**_: Any) -> Any:
        calls.append(1)
        parsed = {
            "Error": {"Code": code, "Message": f"not allowed to {operation} (test)"},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
        }
        return AWSResponse("https://test", 400, HTTPHeaders(), None), parsed

    def client(self: Context, service: str) -> Any:
        made_client = made(self, service)
        made_client.meta.events.register(f"before-call.dynamodb.{operation}", denied)
        return made_client

    monkeypatch.setattr(Context, "_client", client)
    return calls


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "UnrecognizedClientException", "ResourceNotFoundException"]
)
def test_load_stops_at_the_first_permission_error_with_exit_3(
    ddb: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
) -> None:
    create_table(ddb, "orders")
    source = _write(tmp_path / "orders.jsonl", _lines(5000))
    calls = _deny(monkeypatch, "BatchWriteItem", code)

    assert main(["load", "orders", source, "--no-progress"]) == 3
    text = capsys.readouterr().out.splitlines()
    # a handful of requests (those in flight when the refusal came back), not 200
    assert 1 <= len(calls) <= 8
    assert len([line for line in text if code in line]) == 1, text
    assert not any(line.startswith("line ") for line in text)  # no per-line copies

    assert main(["load", "orders", source, "--no-progress", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == 3
    assert report["error"]["type"] == code
    assert report["failures"] == []
    assert report["lines"] < 1000


def test_load_refused_describe_table_exits_3(
    ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    source = _write(tmp_path / "orders.jsonl", _lines(3))
    _deny(monkeypatch, "DescribeTable", "AccessDeniedException")
    assert main(["load", "orders", source, "--no-progress"]) == 3
    assert "AccessDeniedException" in capsys.readouterr().err


def test_unknown_region_fails_fast_with_exit_2_and_names_the_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "orders.jsonl", _lines(3))
    started = time.monotonic()
    assert main(["load", "orders", source, "--region", "mars-1", "--no-progress"]) == 2
    assert time.monotonic() - started < 5  # no retries of a name that does not exist
    err = capsys.readouterr().err
    assert "mars-1" in err
    assert "https://dynamodb.mars-1.amazonaws.com" in err


def test_unreachable_endpoint_exits_3_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "orders.jsonl", _lines(3))
    url = "http://127.0.0.1:9"  # discard port: refused at once
    code = main(["load", "orders", source, "--endpoint-url", url, "--max-attempts", "2"])
    assert code == 3
    assert url in capsys.readouterr().err


def test_demo_without_moto_is_bad_usage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import resilient_aws.cli._demo as demo

    def no_moto() -> Any:
        raise ImportError("No module named 'moto'")

    monkeypatch.setattr(demo, "MotoServer", no_moto)
    assert main(["demo", "--items", "1"]) == 2
    assert "pip install 'resilient-aws[demo]'" in capsys.readouterr().err


def test_export_error_with_json_writes_only_json_on_stderr(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "missing", "--json"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    report = json.loads(printed.err)  # the whole of stderr is one JSON object
    assert report["error"]["type"] == "UnknownTableError"


def test_export_of_one_segment_says_segment(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}})
    assert main(["export", "orders", "--segments", "1", "--no-progress"]) == 0
    assert "(1 segment, 1 page)" in capsys.readouterr().err


def test_a_key_repeated_in_a_later_batch_counts_as_replaced(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    lines = _lines(100)
    lines.insert(80, json.dumps({"pk": "order-00001", "n": "again"}))  # 4th batch, key of the 1st
    source = _write(tmp_path / "orders.jsonl", lines)

    assert main(["load", "orders", source, "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    stored = all_items(ddb, "orders")
    assert len(stored) == 100
    assert report["loaded"] == len(stored)
    assert report["replaced"] == 1
    assert report["items"] == report["loaded"] + report["failed"] + report["replaced"]


def test_the_keys_load_remembers_are_bounded_by_track_keys(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    lines = _lines(100)
    lines.insert(80, json.dumps({"pk": "order-00001", "n": "again"}))  # remembered: replaced
    lines.insert(90, json.dumps({"pk": "order-00060", "n": "again"}))  # past the first 50 keys
    source = _write(tmp_path / "orders.jsonl", lines)

    assert main(["load", "orders", source, "--json", "--no-progress", "--track-keys", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(all_items(ddb, "orders")) == 100
    assert report["replaced"] == 1  # the repeat of a key it remembered
    assert report["keys_untracked"] == 51  # lines after the first 50 distinct keys
    assert report["loaded"] == 101  # the other repeat counts as loaded, as the report says
    assert report["items"] == report["loaded"] + report["failed"] + report["replaced"]

    assert main(["load", "orders", source, "--no-progress", "--track-keys", "50"]) == 0
    assert "a repeated key among them counts as loaded (raise --track-keys)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("attribute", "kind"),
    [
        ({"SS": ["a", "a"]}, "SS"),
        ({"NS": ["1", "1.0"]}, "NS"),
        ({"BS": ["AAE=", "AAE="]}, "BS"),
    ],
)
def test_a_set_with_a_value_twice_is_refused_with_its_line(
    ddb: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    attribute: dict[str, Any],
    kind: str,
) -> None:
    create_table(ddb, "orders")
    lines = [
        json.dumps({"pk": {"S": "a"}}),
        json.dumps({"pk": {"S": "b"}, "tags": attribute}),
        json.dumps({"pk": {"S": "c"}, "tags": {kind: attribute[kind][:1]}}),
    ]
    source = _write(tmp_path / "orders.jsonl", lines)

    code = main(["load", "orders", source, "--format", "dynamodb", "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(f["line"], f["code"]) for f in report["failures"]] == [(2, "InvalidLine")]
    assert "twice" in report["failures"][0]["message"]
    assert {item["pk"]["S"] for item in all_items(ddb, "orders")} == {"a", "c"}


def test_rejects_file_is_in_input_order(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    lines = _lines(60)
    lines[5] = '{"pk": "order-nan", "n": NaN}'  # refused by the writer (a value not storable)
    lines[30] = '{"pk": '  # refused by the parser
    lines[50] = '{"n": 1}'  # refused by the writer (no key)
    source = _write(tmp_path / "orders.jsonl", lines)
    rejects = tmp_path / "rejects.jsonl"

    assert main(["load", "orders", source, "--rejects", str(rejects), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["line"] for f in report["failures"]] == [6, 31, 51]
    # the n-th line of the rejects file is the n-th failure of the report
    assert rejects.read_text().splitlines() == [lines[5], lines[30], lines[50]]


def test_a_pydantic_model_with_a_datetime_is_written(ddb: Any) -> None:
    # (the writer's model dump, used by load's callers in Python: JSON mode for what DynamoDB
    # has no type for, DynamoDB's own types kept)
    import datetime
    from decimal import Decimal

    from pydantic import BaseModel

    from resilient_aws.dynamodb import BatchWriter

    class Order(BaseModel):
        pk: str
        placed: datetime.datetime
        total: Decimal
        tags: set[str]

    create_table(ddb, "orders")
    placed = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    with BatchWriter("orders", client=ddb) as writer:
        writer.put(Order(pk="a", placed=placed, total=Decimal("0.3"), tags={"x"}))
    (item,) = all_items(ddb, "orders")
    assert item["placed"] == {"S": "2024-05-01T12:30:00Z"}
    assert item["total"] == {"N": "0.3"}
    assert item["tags"] == {"SS": ["x"]}
