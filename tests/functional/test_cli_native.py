"""resilient-aws export --native and load --native against moto in process.

moto implements ExportTableToPointInTime (one gzipped data file, no manifest) and ImportTable
(GZIP, DYNAMODB_JSON), each in a thread of its own: the commands really poll them.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer

from resilient_aws.cli import main
from tests.dynamo_tables import all_items, create_table

_plain = TypeDeserializer()
BUCKET = "exports"
FAST = ["--poll-interval", "0.01", "--no-progress"]


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def _orders(ddb: Any, name: str = "orders", count: int = 120, *, pitr: bool = True) -> None:
    create_table(ddb, name)
    for i in range(count):
        item: dict[str, Any] = {
            "pk": {"S": f"order-{i:04d}"},
            "total": {"N": str(Decimal(i) / 10 + Decimal("0.000000000000000000001"))},
            "lines": {"L": [{"N": "1"}, {"M": {"sku": {"S": "a"}}}]},
        }
        if i % 3 == 0:
            item["tags"] = {"SS": ["x", "y"]}
            item["blob"] = {"B": bytes([i % 256, 0, 255])}
            item["blobs"] = {"BS": [b"\x00", bytes([i % 256, 1])]}
            item["big"] = {"N": "-1234567890123456789012345678901234.5678"}
            item["gone"] = {"NULL": True}
        ddb.put_item(TableName=name, Item=item)
    if pitr:
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def _table(ddb: Any, name: str) -> dict[str, dict[str, Any]]:
    return {
        item["pk"]["S"]: {k: _plain.deserialize(v) for k, v in item.items()}
        for item in all_items(ddb, name)
    }


def test_native_export_writes_what_the_scan_export_writes(
    ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb)
    for fmt in ("plain", "dynamodb"):
        assert main(["export", "orders", "--format", fmt, "--no-progress"]) == 0
        scanned = capsys.readouterr().out.splitlines()
        argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--format", fmt, *FAST]
        assert main([*argv, "--s3-prefix", f"run-{fmt}"]) == 0
        captured = capsys.readouterr()
        native = captured.out.splitlines()
        assert len(native) == len(scanned) == 120
        assert sorted(native) == sorted(scanned)  # same items, same text, byte for byte
        assert "exported 120 items from orders through a DynamoDB export" in captured.err


def test_native_export_round_trips_through_load(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--format", "dynamodb"]
    assert main([*argv, *FAST, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.err)
    assert (report["exported"], report["item_count"], report["complete"]) == (120, 120, True)
    assert report["status"] == "COMPLETED" and report["s3_prefix"] == "orders"
    dump = tmp_path / "orders.jsonl"
    dump.write_text(captured.out)
    create_table(ddb, "copy")
    assert main(["load", "copy", str(dump), "--format", "dynamodb", "--no-progress"]) == 0
    assert _table(ddb, "copy") == _table(ddb, "orders")


def test_point_in_time_recovery_off_is_one_line_and_exit_3(
    ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb, count=3, pitr=False)
    assert main(["export", "orders", "--native", "--s3-bucket", BUCKET, *FAST]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert "point-in-time recovery is off for table 'orders'" in lines[0]
    assert "update-continuous-backups --table-name orders" in lines[0]


def test_an_unknown_table_exits_2(ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "nope", "--native", "--s3-bucket", BUCKET, *FAST]) == 2
    assert "table 'nope' does not exist" in capsys.readouterr().err


def test_an_export_that_fails_exits_3_with_its_failure_code(
    ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb, count=3)
    assert main(["export", "orders", "--native", "--s3-bucket", "no-such-bucket", *FAST]) == 3
    err = capsys.readouterr().err
    assert "the DynamoDB export of table 'orders' ended FAILED: S3NoSuchBucket" in err


def test_no_download_prints_the_location_and_the_count(
    ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb, count=7)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "p/q/"]
    assert main([*argv, "--no-download", *FAST]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "DynamoDB exported 7 items from orders to s3://exports/p/q" in captured.err
    assert "nothing downloaded (--no-download)" in captured.err


def test_export_arn_follows_an_export_started_before(
    ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb, count=9)
    arn = ddb.describe_table(TableName="orders")["Table"]["TableArn"]
    started = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, S3Prefix="x")
    export_arn = started["ExportDescription"]["ExportArn"]
    assert main(["export", "orders", "--native", "--export-arn", export_arn, *FAST]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 9


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--native needs --s3-bucket"),
        (["--s3-bucket", BUCKET, "--resume", "abc"], "--resume is for the scan-based export"),
        (["--s3-bucket", BUCKET, "--segments", "8"], "--segments is for the scan-based export"),
        (["--export-arn", "arn:x", "--s3-bucket", BUCKET], "--export-arn: the export already"),
    ],
)
def test_bad_native_export_usage_exits_2_before_sending(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "orders", "--native", *extra]) == 2
    assert message in capsys.readouterr().err


def test_native_options_without_native_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "orders", "--s3-bucket", BUCKET]) == 2
    assert "--s3-bucket goes with --native" in capsys.readouterr().err
    assert main(["load", "orders", "f.jsonl", "--key", "pk:S"]) == 2
    assert "--key goes with --native" in capsys.readouterr().err


# -- load --native ----------------------------------------------------------------------------------


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_native_load_creates_the_table_from_the_file(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb)
    assert main(["export", "orders", "--format", "dynamodb", "--no-progress"]) == 0
    dump = _write(tmp_path / "orders.jsonl", capsys.readouterr().out.splitlines())
    argv = ["load", "copy", dump, "--native", "--s3-bucket", BUCKET, "--key", "pk:S"]
    assert main([*argv, "--format", "dynamodb", "--json", *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["loaded"], report["items"], report["failed"]) == (120, 120, 0)
    assert (report["status"], report["import_errors"], report["exit_code"]) == ("COMPLETED", 0, 0)
    assert report["s3_key"].startswith("copy/copy-") and report["s3_key"].endswith(".json.gz")
    assert _table(ddb, "copy") == _table(ddb, "orders")
    schema = ddb.describe_table(TableName="copy")["Table"]
    assert schema["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert schema["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_native_load_reports_bad_lines_by_number_and_imports_the_rest(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps({"pk": "a", "sk": 1, "v": 0.5}), "{not json", json.dumps({"sk": 2})]
    lines += [json.dumps({"pk": "b", "sk": "x"}), "", '{"pk": "c", "sk": 3, "v": NaN}']
    lines += [json.dumps({"pk": "d", "sk": 4, "raw": "secret-value"})]
    source = _write(tmp_path / "in.jsonl", lines)
    rejects = tmp_path / "rejects.jsonl"
    argv = ["load", "two", source, "--native", "--s3-bucket", BUCKET, "--key", "pk:S,sk:N"]
    assert main([*argv, "--rejects", str(rejects), *FAST]) == 1
    out = capsys.readouterr().out
    assert "imported 2 of 6 items from 7 lines into the new table two" in out
    assert "line 2: InvalidLine: not JSON" in out
    assert "line 3: InvalidKeyError: key attribute 'pk' is missing" in out
    assert "line 4: InvalidKeyError: key attribute 'sk' is not of type N" in out
    assert "line 6: UnsupportedValueError" in out
    assert "secret-value" not in out
    assert rejects.read_text().splitlines() == [lines[1], lines[2], lines[3], lines[5]]
    items = {(i["pk"]["S"], i["sk"]["N"]) for i in all_items(ddb, "two")}
    assert items == {("a", "1"), ("d", "4")}


def test_native_load_refuses_an_existing_table(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    source = _write(tmp_path / "in.jsonl", ['{"pk": "a"}'])
    argv = ["load", "orders", source, "--native", "--s3-bucket", BUCKET, "--key", "pk:S"]
    assert main(argv) == 2
    assert "table 'orders' exists: ImportTable creates a new table" in capsys.readouterr().err
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # nothing uploaded


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--key", "pk:S"], "--native needs --s3-bucket"),
        (["--s3-bucket", BUCKET], "--native needs --key"),
        (["--s3-bucket", BUCKET, "--key", "pk:X"], "expected NAME:TYPE"),
        (["--s3-bucket", BUCKET, "--key", "a:S,b:N,c:S"], "at most one sort key"),
        (["--s3-bucket", BUCKET, "--key", "pk:S", "--concurrency", "8"], "--concurrency"),
    ],
)
def test_bad_native_load_usage_exits_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "in.jsonl", ['{"pk": "a"}'])
    assert main(["load", "t", source, "--native", *extra]) == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err


def test_native_binary_keys_need_the_dynamodb_format(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = base64.b64encode(b"\x00\x01").decode()
    lines = [json.dumps({"Item": {"id": {"B": key}, "n": {"N": "1"}}})]
    source = _write(tmp_path / "in.jsonl", lines)
    argv = ["load", "bin", source, "--native", "--s3-bucket", BUCKET, "--key", "id:B"]
    assert main([*argv, "--format", "dynamodb", *FAST]) == 0
    assert all_items(ddb, "bin") == [{"id": {"B": b"\x00\x01"}, "n": {"N": "1"}}]
    plain = _write(tmp_path / "plain.jsonl", [json.dumps({"id": key})])
    argv = ["load", "bin2", plain, "--native", "--s3-bucket", BUCKET, "--key", "id:B"]
    assert main([*argv, *FAST]) == 1  # plain JSON: a base64 string, not a binary
    assert "key attribute 'id' is not of type B" in capsys.readouterr().out


class _InterruptingStdout(io.StringIO):
    """stdout whose reader presses Ctrl-C after the first chunk of lines was written."""

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.tell() and not getattr(self, "pressed", False):
            self.pressed = True
            signal.raise_signal(signal.SIGINT)
        return written


def test_ctrl_c_while_reading_the_export_says_how_to_read_it_again(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb, count=1200)
    first = _InterruptingStdout()
    monkeypatch.setattr(sys, "stdout", first)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, *FAST, "--json"]
    assert main(argv) == 130
    report = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert report["complete"] is False
    assert 0 < report["exported"] == len(first.getvalue().splitlines()) < 1200

    again = io.StringIO()
    monkeypatch.setattr(sys, "stdout", again)
    argv = ["export", "orders", "--native", "--export-arn", report["export_arn"], *FAST]
    assert main(argv) == 0
    assert len(set(again.getvalue().splitlines())) == 1200


class _InterruptingStdin:
    """stdin whose reader presses Ctrl-C once line ``at`` has been read."""

    def __init__(self, lines: list[str], at: int) -> None:
        self.lines = lines
        self.at = at

    @property
    def buffer(self) -> _InterruptingStdin:
        return self

    def __iter__(self) -> Any:
        for number, line in enumerate(self.lines, 1):
            yield (line + "\n").encode()
            if number == self.at:
                signal.raise_signal(signal.SIGINT)


def test_ctrl_c_while_uploading_creates_no_table(
    ddb: Any, s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps({"pk": f"p{i}"}) for i in range(50)]
    monkeypatch.setattr(sys, "stdin", _InterruptingStdin(lines, at=20))
    argv = ["load", "copy", "-", "--native", "--s3-bucket", BUCKET, "--key", "pk:S"]
    assert main([*argv, *FAST, "--json"]) == 130
    report = json.loads(capsys.readouterr().out)
    assert (report["interrupted"], report["lines"], report["loaded"]) == (True, 20, 0)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert "copy" not in ddb.list_tables()["TableNames"]


def test_native_load_refuses_items_dynamodb_would_refuse_before_the_upload(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One item DynamoDB cannot store may make the import skip the rest of the object (AWS:
    # "Import format quotas and validation"): an item over 400 KB, a partition key over 2,048
    # bytes or a sort key over 1,024 bytes is a bad line here, reported by number, not uploaded.
    lines = [
        json.dumps({"pk": "a", "sk": "1"}),
        json.dumps({"pk": "big", "sk": "1", "blob": "x" * (400 * 1024)}),
        json.dumps({"pk": "p" * 2049, "sk": "1"}),
        json.dumps({"pk": "b", "sk": "s" * 1025}),
        json.dumps({"pk": "p" * 2048, "sk": "s" * 1024}),  # 2,048 bytes, 1,024 bytes: fit
    ]
    source = _write(tmp_path / "in.jsonl", lines)
    argv = ["load", "tbl", source, "--native", "--s3-bucket", BUCKET, "--key", "pk:S,sk:S"]
    assert main([*argv, *FAST, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(f["line"], f["code"]) for f in report["failures"]] == [
        (2, "EntryTooLargeError"),
        (3, "InvalidKeyError"),
        (4, "InvalidKeyError"),
    ]
    assert "over the partition key's 2,048" in report["failures"][1]["message"]
    assert (report["uploaded"], report["loaded"]) == (2, 2)
    assert "x" * 20 not in json.dumps(report)


@pytest.mark.parametrize("name", ["t", "a b", "x" * 256])
def test_native_load_refuses_a_table_name_importtable_would_refuse_before_the_upload(
    ddb: Any, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # ImportTable names a new table: 3 to 255 of a-z A-Z 0-9 _ - . (CreateTable's rule). The
    # name was first checked by ImportTable itself, after the whole file was uploaded: exit 3
    # and an object left in S3 for nothing.
    source = _write(tmp_path / "in.jsonl", ['{"pk": "a"}'])
    argv = ["load", name, source, "--native", "--s3-bucket", BUCKET, "--key", "pk:S"]
    assert main([*argv, *FAST]) == 2
    assert "table name" in capsys.readouterr().err
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_native_export_of_an_empty_table_writes_nothing_and_exits_0(
    ddb: Any, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _orders(ddb, count=0)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, *FAST, "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    report = json.loads(captured.err)
    assert (report["exported"], report["complete"]) == (0, True)
