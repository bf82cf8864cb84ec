"""export --native / load --native where moto is not AWS: DynamoDB through botocore's Stubber,
S3 in moto.

moto's export writes no manifest and its import never reports a CloudWatch log group; these
tests give the commands what AWS answers: an ``ExportManifest`` (manifest-summary.json ->
manifest-files.json -> data files), an import that finishes with ``ErrorCount`` > 0, tasks
that fail, and a Ctrl-C while a task runs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from resilient_aws.cli import _context, _native, main

BUCKET = "exports"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
EXPORT_ARN = f"{TABLE_ARN}/export/01700000000000-abcd1234"
IMPORT_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/copy/import/01700000000000-ef56"
LOG_GROUP = "arn:aws:logs:us-east-1:123456789012:log-group:/aws-dynamodb/imports:*"
FAST = ["--poll-interval", "0.01", "--no-progress"]


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def stub(s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    clients = {"dynamodb": ddb, "s3": s3}
    monkeypatch.setattr(_context.Context, "_client", lambda self, service: clients[service])
    with Stubber(ddb) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _export(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "ExportDescription": {
            "ExportArn": EXPORT_ARN,
            "ExportStatus": status,
            "TableArn": TABLE_ARN,
            "S3Bucket": BUCKET,
            "S3Prefix": "exp",
            **fields,
        }
    }


def _started(stub: Stubber) -> None:
    stub.add_response("describe_table", {"Table": {"TableArn": TABLE_ARN}}, {"TableName": "orders"})
    stub.add_response(
        "export_table_to_point_in_time",
        _export("IN_PROGRESS"),
        {
            "TableArn": TABLE_ARN,
            "S3Bucket": BUCKET,
            "S3Prefix": "exp",
            "ExportFormat": "DYNAMODB_JSON",
            "ClientToken": ANY,
        },
    )


def _item_line(pk: str, n: int) -> bytes:
    return json.dumps({"Item": {"pk": {"S": pk}, "n": {"N": str(n)}}}).encode() + b"\n"


def _put_export(s3: Any, counts: tuple[int, int, int] = (3, 2, 0)) -> None:
    """An export as AWS lays it out, keys written with and without the export prefix."""
    root = "AWSDynamoDB/01700000000000-abcd1234"
    files = [
        (f"exp/{root}/data/a.json.gz", [_item_line(f"a{i}", i) for i in range(3)], counts[0]),
        (f"{root}/data/b.json.gz", [_item_line(f"b{i}", i) for i in range(2)], counts[1]),
        (f"{root}/data/empty.json.gz", [], counts[2]),
    ]
    manifest = []
    for key, lines, count in files:
        stored = key if key.startswith("exp/") else f"exp/{key}"
        s3.put_object(Bucket=BUCKET, Key=stored, Body=gzip.compress(b"".join(lines)))
        manifest.append(json.dumps({"itemCount": count, "dataFileS3Key": key}))
    s3.put_object(
        Bucket=BUCKET, Key=f"exp/{root}/manifest-files.json", Body="\n".join(manifest) + "\n"
    )
    summary = {"manifestFilesS3Key": f"{root}/manifest-files.json", "itemCount": sum(counts)}
    s3.put_object(Bucket=BUCKET, Key=f"exp/{root}/manifest-summary.json", Body=json.dumps(summary))


def _completed(stub: Stubber, count: int = 5) -> None:
    manifest = "AWSDynamoDB/01700000000000-abcd1234/manifest-summary.json"
    stub.add_response(
        "describe_export",
        _export("COMPLETED", ExportManifest=manifest, ItemCount=count),
        {"ExportArn": EXPORT_ARN},
    )


def test_the_manifest_names_every_data_file(
    stub: Stubber, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _put_export(s3)
    _started(stub)
    stub.add_response("describe_export", _export("IN_PROGRESS"), {"ExportArn": EXPORT_ARN})
    _completed(stub)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "exp"]
    assert main([*argv, *FAST, "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert sorted(lines) == sorted(
        [f'{{"pk":"a{i}","n":{i}}}' for i in range(3)]
        + [f'{{"pk":"b{i}","n":{i}}}' for i in range(2)]
    )
    report = json.loads(captured.err)
    assert (report["files"], report["exported"], report["exit_code"]) == (3, 5, 0)


def test_fewer_items_than_the_manifest_says_exits_3(
    stub: Stubber, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _put_export(s3, counts=(3, 3, 0))
    _started(stub)
    _completed(stub, 6)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "exp"]
    assert main([*argv, *FAST]) == 3
    err = capsys.readouterr().err
    assert "error: read 5 items from the export's files, its manifest says 6" in err
    assert f"--export-arn {EXPORT_ARN} > FILE" in err


def test_a_failed_export_exits_3_with_its_failure_code(
    stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    _started(stub)
    failed = _export("FAILED", FailureCode="S3AccessDenied", FailureMessage="Access Denied")
    stub.add_response("describe_export", failed, {"ExportArn": EXPORT_ARN})
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "exp"]
    assert main([*argv, *FAST, "--json"]) == 3
    report = json.loads(capsys.readouterr().err)
    assert report["error"]["message"] == (
        "the DynamoDB export of table 'orders' ended FAILED: S3AccessDenied: Access Denied"
    )
    assert report["failure"] == {"code": "S3AccessDenied", "message": "Access Denied"}


def test_ctrl_c_while_the_export_runs_leaves_it_running_and_says_how_to_follow_it(
    stub: Stubber, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_native, "_pause", lambda stop, seconds: stop.request())
    _started(stub)
    stub.add_response("describe_export", _export("IN_PROGRESS"), {"ExportArn": EXPORT_ARN})
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "exp"]
    assert main([*argv, *FAST]) == 130
    err = capsys.readouterr().err
    assert f"it keeps running in DynamoDB ({EXPORT_ARN})" in err
    assert f"resilient-aws export orders --native --export-arn {EXPORT_ARN} > FILE" in err


def test_an_export_arn_of_another_table_is_bad_usage(
    stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.add_response("describe_export", _export("COMPLETED"), {"ExportArn": EXPORT_ARN})
    assert main(["export", "invoices", "--native", "--export-arn", EXPORT_ARN, *FAST]) == 2
    assert "that export is of another table than 'invoices'" in capsys.readouterr().err


# -- load --native ----------------------------------------------------------------------------------


def _import(status: str, **fields: Any) -> dict[str, Any]:
    return {"ImportTableDescription": {"ImportArn": IMPORT_ARN, "ImportStatus": status, **fields}}


def _import_started(stub: Stubber) -> None:
    stub.add_client_error(
        "describe_table", "ResourceNotFoundException", expected_params={"TableName": "copy"}
    )
    stub.add_response(
        "import_table",
        _import("IN_PROGRESS"),
        {
            "ClientToken": ANY,
            "S3BucketSource": {"S3Bucket": BUCKET, "S3KeyPrefix": ANY},
            "InputFormat": "DYNAMODB_JSON",
            "InputCompressionType": "GZIP",
            "TableCreationParameters": {
                "TableName": "copy",
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                ],
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
            },
        },
    )


def _source(tmp_path: Path) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"pk": f"p{i}", "sk": i}) + "\n" for i in range(10)))
    return str(path)


LOAD = ["load", "copy", "--native", "--s3-bucket", BUCKET, "--key", "pk:S,sk:N"]


def test_items_the_import_could_not_write_exit_1_pointing_at_its_logs(
    stub: Stubber, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_started(stub)
    running = _import("IN_PROGRESS", ProcessedItemCount=4, ErrorCount=0)
    stub.add_response("describe_import", running, {"ImportArn": IMPORT_ARN})
    done = _import(
        "COMPLETED",
        ProcessedItemCount=10,
        ImportedItemCount=8,
        ErrorCount=2,
        CloudWatchLogGroupArn=LOG_GROUP,
    )
    stub.add_response("describe_import", done, {"ImportArn": IMPORT_ARN})
    assert main([*LOAD[:2], _source(tmp_path), *LOAD[2:], *FAST]) == 1
    out = capsys.readouterr().out
    assert "imported 8 of 10 items from 10 lines into the new table copy" in out
    assert f"error: DynamoDB could not import 2 items: see CloudWatch Logs {LOG_GROUP}" in out
    (uploaded,) = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    body = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=uploaded["Key"])["Body"].read())
    assert body.splitlines()[0] == b'{"Item":{"pk":{"S":"p0"},"sk":{"N":"0"}}}'


def test_an_import_that_fails_exits_3(
    stub: Stubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_started(stub)
    failed = _import("FAILED", FailureCode="S3AccessDenied", FailureMessage="no access")
    stub.add_response("describe_import", failed, {"ImportArn": IMPORT_ARN})
    assert main([*LOAD[:2], _source(tmp_path), *LOAD[2:], *FAST, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["error"]["message"] == (
        "the DynamoDB import into 'copy' ended FAILED: S3AccessDenied: no access"
    )


def test_ctrl_c_while_the_import_runs_names_it(
    stub: Stubber,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(_native, "_pause", lambda stop, seconds: stop.request())
    _import_started(stub)
    stub.add_response("describe_import", _import("IN_PROGRESS"), {"ImportArn": IMPORT_ARN})
    assert main([*LOAD[:2], _source(tmp_path), *LOAD[2:], *FAST]) == 130
    out = capsys.readouterr().out
    assert f"aws dynamodb describe-import --import-arn {IMPORT_ARN}" in out


def test_a_table_created_meanwhile_is_bad_usage(
    stub: Stubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stub.add_client_error("describe_table", "ResourceNotFoundException")
    stub.add_client_error("import_table", "ResourceInUseException")
    assert main([*LOAD[:2], _source(tmp_path), *LOAD[2:], *FAST]) == 2
    assert "table 'copy' exists: ImportTable creates a new table" in capsys.readouterr().err


# -- review: holes found and closed ----------------------------------------------------------------


def test_a_manifest_that_lists_fewer_files_than_the_export_holds_exits_3(
    stub: Stubber, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # manifest-files.json lost the line of file b (2 items): the counts of the files it still
    # lists add up to what was read, but the export holds 5 items (DescribeExport, summary).
    _put_export(s3)
    root = "exp/AWSDynamoDB/01700000000000-abcd1234"
    listed = s3.get_object(Bucket=BUCKET, Key=f"{root}/manifest-files.json")["Body"].read()
    kept = [line for line in listed.decode().splitlines() if "b.json.gz" not in line]
    s3.put_object(Bucket=BUCKET, Key=f"{root}/manifest-files.json", Body="\n".join(kept) + "\n")
    _started(stub)
    _completed(stub)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "exp"]
    assert main([*argv, *FAST, "--json"]) == 3
    report = json.loads(capsys.readouterr().err)
    assert report["complete"] is False
    assert "the export holds 5" in report["error"]["message"]
    assert "manifest-files.json" in report["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ExportType": "INCREMENTAL_EXPORT"}, "an incremental export"),
        ({"ExportFormat": "ION"}, "exported as ION"),
    ],
)
def test_an_export_that_is_not_a_full_dynamodb_json_export_is_refused_before_reading(
    stub: Stubber, capsys: pytest.CaptureFixture[str], fields: dict[str, Any], message: str
) -> None:
    # An incremental export's lines are {"Metadata", "Keys", "NewImage", "OldImage"}: changes,
    # not items; an ION export is not JSON. Neither is what `export` writes.
    manifest = "AWSDynamoDB/01700000000000-abcd1234/manifest-summary.json"
    done = _export("COMPLETED", ExportManifest=manifest, ItemCount=5, **fields)
    stub.add_response("describe_export", done, {"ExportArn": EXPORT_ARN})
    assert main(["export", "orders", "--native", "--export-arn", EXPORT_ARN, *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and EXPORT_ARN in captured.err


def test_an_import_that_fails_with_item_errors_exits_3_with_its_failure(
    stub: Stubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_started(stub)
    failed = _import(
        "FAILED",
        ProcessedItemCount=4,
        ImportedItemCount=2,
        ErrorCount=2,
        FailureCode="ItemValidationError",
        FailureMessage="too many errors",
        CloudWatchLogGroupArn=LOG_GROUP,
    )
    stub.add_response("describe_import", failed, {"ImportArn": IMPORT_ARN})
    assert main([*LOAD[:2], _source(tmp_path), *LOAD[2:], *FAST, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["error"]["message"] == (
        "the DynamoDB import into 'copy' ended FAILED: ItemValidationError: too many errors"
    )
    assert report["import_errors"] == 2


def test_items_the_import_neither_imported_nor_counted_as_errors_exit_1(
    stub: Stubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DynamoDB may skip the rest of an object it cannot parse, and keeps one of the items that
    # share a key without counting the others as errors: 10 uploaded, 7 accounted for.
    _import_started(stub)
    done = _import("COMPLETED", ProcessedItemCount=7, ImportedItemCount=7, ErrorCount=0)
    stub.add_response("describe_import", done, {"ImportArn": IMPORT_ARN})
    assert main([*LOAD[:2], _source(tmp_path), *LOAD[2:], *FAST, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["loaded"], report["uploaded"], report["unaccounted"]) == (7, 10, 3)
    assert "3 of the 10 uploaded items" in report["error"]["message"]


def test_unicode_and_concatenated_gzip_members_are_read_whole(
    stub: Stubber, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # a data file of two gzip members (what a writer that flushes in pieces leaves), its lines
    # in raw UTF-8 as DynamoDB writes them: every item, every character
    root = "exp/AWSDynamoDB/01700000000000-abcd1234"
    first = '{"Item":{"pk":{"S":"café ☃ 😀"},"q":{"S":"\\"q\\" \\\\ \\n"}}}\n'.encode()
    second = b'{"Item":{"pk":{"S":"b"},"n":{"N":"-1234567890123456789012345678901234.5678"}}}\n'
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{root}/data/a.json.gz",
        Body=gzip.compress(first) + gzip.compress(second),
    )
    entry = {"itemCount": 2, "dataFileS3Key": f"{root}/data/a.json.gz"}
    s3.put_object(Bucket=BUCKET, Key=f"{root}/manifest-files.json", Body=json.dumps(entry))
    summary = {"manifestFilesS3Key": f"{root}/manifest-files.json", "itemCount": 2}
    s3.put_object(Bucket=BUCKET, Key=f"{root}/manifest-summary.json", Body=json.dumps(summary))
    _started(stub)
    _completed(stub, 2)
    argv = ["export", "orders", "--native", "--s3-bucket", BUCKET, "--s3-prefix", "exp"]
    assert main([*argv, *FAST]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line, parse_float=Decimal) for line in out] == [
        {"pk": "café ☃ 😀", "q": '"q" \\ \n'},
        {"pk": "b", "n": Decimal("-1234567890123456789012345678901234.5678")},
    ]
