"""The pieces of export/load --native: resumable S3 reads, multipart uploads, polling, options."""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import itertools
import json
import os
import sys
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary
from botocore.exceptions import ResponseStreamingError
from moto import mock_aws

from resilient_aws.cli._native import S3Reader, S3Upload
from resilient_aws.cli._native_load import key_problem
from resilient_aws.cli._parser import export_time, key_schema
from resilient_aws.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, sleep=lambda seconds: None)


class _Body:
    def __init__(self, data: bytes, fail_after: int | None) -> None:
        self.stream = io.BytesIO(data)
        self.fail_after = fail_after
        self.closed = False

    def read(self, size: int) -> bytes:
        if self.fail_after is not None and self.stream.tell() >= self.fail_after:
            raise ResponseStreamingError(error="connection reset")
        limit = size if self.fail_after is None else min(size, self.fail_after - self.stream.tell())
        return self.stream.read(max(1, limit))

    def close(self) -> None:
        self.closed = True


class _FlakyS3:
    """get_object whose first body breaks after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self.data = data
        self.fail_after: int | None = fail_after
        self.requests: list[dict[str, Any]] = []

    def get_object(self, **options: Any) -> dict[str, Any]:
        self.requests.append(options)
        start = int(options["Range"].split("=")[1].rstrip("-")) if "Range" in options else 0
        body = _Body(self.data[start:], self.fail_after)
        self.fail_after = None
        return {"Body": body, "ETag": '"v1"', "ContentLength": len(self.data) - start}


def test_a_broken_download_resumes_at_the_byte_it_reached() -> None:
    lines = b"".join(b'{"Item":{"pk":{"S":"%d"}}}\n' % i for i in range(2000))
    packed = gzip.compress(lines)
    s3 = _FlakyS3(packed, fail_after=len(packed) // 3)
    reader = S3Reader(s3, "b", "k", POLICY)
    with gzip.GzipFile(fileobj=reader, mode="rb") as unpacked:
        assert unpacked.read() == lines
    first, second = s3.requests
    assert first == {"Bucket": "b", "Key": "k"}
    assert second == {
        "Bucket": "b",
        "Key": "k",
        "Range": f"bytes={len(packed) // 3}-",
        "IfMatch": '"v1"',
    }


@mock_aws
def test_a_large_upload_goes_in_parts_and_a_small_one_in_one_put() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    data = os.urandom(11 * 1024 * 1024)  # incompressible: three parts of 5 MiB, 5 MiB, 1 MiB
    upload = S3Upload(s3, "bkt", "big", POLICY, part_size=5 * 1024 * 1024)
    for start in range(0, len(data), 1 << 20):
        upload.write(data[start : start + (1 << 20)])
    upload.close()
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == data
    assert s3.head_object(Bucket="bkt", Key="big", PartNumber=1)["PartsCount"] == 3

    small = S3Upload(s3, "bkt", "small", POLICY)
    small.write(b"abc")
    small.close()
    assert s3.get_object(Bucket="bkt", Key="small")["Body"].read() == b"abc"


@mock_aws
def test_an_aborted_upload_leaves_nothing_behind() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    upload = S3Upload(s3, "bkt", "big", POLICY, part_size=5 * 1024 * 1024)
    upload.write(os.urandom(6 * 1024 * 1024))  # one part sent
    upload.abort()
    assert s3.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket="bkt").get("KeyCount", 0) == 0


def test_polling_is_a_retry_of_the_core_on_not_done_yet() -> None:
    from resilient_aws.cli._interrupt import StopRequest
    from resilient_aws.cli._native import follow

    slept: list[float] = []
    answers = iter(["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"])

    class Ctx:
        policy = RetryPolicy(max_attempts=1)  # polls are not capped by max_attempts
        stop = StopRequest()

    import resilient_aws.cli._native as native

    original = native._pause
    native._pause = lambda stop, seconds: slept.append(seconds)  # type: ignore[assignment]
    try:
        seen: list[str] = []
        state = follow(
            Ctx(),  # type: ignore[arg-type]
            lambda: {"Status": next(answers)},
            finished=lambda s: s["Status"] != "IN_PROGRESS",
            interval=7.0,
            on_poll=lambda s: seen.append(s["Status"]),
        )
    finally:
        native._pause = original  # type: ignore[assignment]
    assert state == {"Status": "COMPLETED"}
    assert seen == ["IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
    assert slept == [7.0, 7.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pk:S", (("pk", "S"),)),
        ("pk:s, sk:N", (("pk", "S"), ("sk", "N"))),
        ("a:b:B", (("a:b", "B"),)),
    ],
)
def test_key_schema(text: str, expected: tuple[tuple[str, str], ...]) -> None:
    assert key_schema(text) == expected


@pytest.mark.parametrize("text", ["pk", "pk:X", ":S", "a:S,b:S,c:S", "a:S,a:N"])
def test_bad_key_schema(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        key_schema(text)


def test_export_time_is_utc_unless_it_says_otherwise() -> None:
    utc = datetime.timezone.utc
    assert export_time("2024-05-01T12:00:00Z") == datetime.datetime(2024, 5, 1, 12, tzinfo=utc)
    assert export_time("2024-05-01T12:00:00") == datetime.datetime(2024, 5, 1, 12, tzinfo=utc)
    assert export_time("2024-05-01T14:00:00+02:00").astimezone(utc).hour == 12
    with pytest.raises(argparse.ArgumentTypeError):
        export_time("yesterday")


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"pk": "a", "sk": 1}, None),
        ({"pk": "a", "sk": Decimal("1.5")}, None),
        ({"sk": 1}, "key attribute 'pk' is missing"),
        ({"pk": "", "sk": 1}, "key attribute 'pk' is empty"),
        ({"pk": "a", "sk": True}, "key attribute 'sk' is not of type N"),
        ({"pk": "a", "sk": "1"}, "key attribute 'sk' is not of type N"),
    ],
)
def test_key_problem(item: dict[str, Any], problem: str | None) -> None:
    assert key_problem(item, (("pk", "S"), ("sk", "N"))) == problem


def test_binary_key_problem() -> None:
    assert key_problem({"id": Binary(b"\x00")}, (("id", "B"),)) is None
    assert key_problem({"id": Binary(b"")}, (("id", "B"),)) == "key attribute 'id' is empty"


def test_the_native_paths_import_nothing_the_scan_paths_do_not() -> None:
    code = (
        "import sys, resilient_aws.cli._load, resilient_aws.cli._export;"
        "before = set(sys.modules);"
        "import resilient_aws.cli._native_export, resilient_aws.cli._native_load;"
        "print(sorted(set(sys.modules) - before))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(
        [
            "resilient_aws.cli._native",
            "resilient_aws.cli._native_export",
            "resilient_aws.cli._native_load",
        ]
    )


# -- review: holes found and closed ----------------------------------------------------------------


def test_a_body_cut_short_resumes_instead_of_failing() -> None:
    # botocore's StreamingBody raises IncompleteReadError when the connection ends cleanly
    # before Content-Length: the bytes read so far are good, the rest is to be asked for again.
    from botocore.response import StreamingBody

    data = os.urandom(50_000)
    requests: list[dict[str, Any]] = []

    class S3:
        def get_object(self, **options: Any) -> dict[str, Any]:
            requests.append(options)
            start = int(options["Range"].split("=")[1].rstrip("-")) if "Range" in options else 0
            sent = data[start:] if requests[1:] else data[start : start + 20_000]
            body = StreamingBody(io.BytesIO(sent), len(data) - start)
            return {"Body": body, "ETag": '"v1"', "ContentLength": len(data) - start}

    reader = S3Reader(S3(), "b", "k", POLICY)
    assert io.BufferedReader(reader).read() == data
    assert requests[1]["Range"] == "bytes=20000-"


class _WholeBody(_Body):
    """A body read whole or in pieces; broken after ``fail_after`` bytes, which are consumed."""

    def read(self, size: int | None = None) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            if self.fail_after is not None and self.stream.tell() < self.fail_after:
                self.stream.read(self.fail_after - self.stream.tell())
                raise ResponseStreamingError(error="connection reset")
            return self.stream.read()
        return super().read(size)


def test_a_manifest_read_that_breaks_resumes_where_it_stopped() -> None:
    # The manifest was read with one Body.read() retried as a whole: after a break, the retry
    # read what was left of the broken stream, and the files listed before the break were lost.
    from resilient_aws.cli._native_export import data_files

    summary = json.dumps({"manifestFilesS3Key": "p/AWSDynamoDB/x/manifest-files.json"}).encode()
    lines = [
        json.dumps({"itemCount": n, "dataFileS3Key": f"p/AWSDynamoDB/x/data/{n}.json.gz"})
        for n in (1, 2, 3)
    ]
    files = ("\n".join(lines) + "\n").encode()
    objects = {"p/AWSDynamoDB/x/manifest-summary.json": summary}
    objects["p/AWSDynamoDB/x/manifest-files.json"] = files

    class S3:
        broken = False

        def get_object(self, **options: Any) -> dict[str, Any]:
            data = objects[options["Key"]]
            start = int(options["Range"].split("=")[1].rstrip("-")) if "Range" in options else 0
            cut = None
            if options["Key"].endswith("files.json") and not self.broken:
                self.broken, cut = True, len(lines[0]) + 1  # breaks after the first line
            return {
                "Body": _WholeBody(data[start:], cut),
                "ETag": '"m"',
                "ContentLength": len(data) - start,
            }

    description = {
        "S3Bucket": "b",
        "S3Prefix": "p",
        "ExportArn": "arn",
        "ExportManifest": "p/AWSDynamoDB/x/manifest-summary.json",
    }
    listed = data_files(S3(), description, POLICY)
    assert [f.items for f in listed] == [1, 2, 3]


class _PartLimitedS3:
    """S3's multipart rules without the bytes: at most 10,000 parts, numbered 1 to 10,000."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def create_multipart_upload(self, **options: Any) -> dict[str, Any]:
        return {"UploadId": "u"}

    def upload_part(self, **options: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if not 1 <= options["PartNumber"] <= 10_000:
            error = {"Code": "InvalidArgument", "Message": "Part number must be an integer"}
            raise ClientError({"Error": error}, "UploadPart")
        self.sizes.append(len(options["Body"]))
        return {"ETag": f'"{options["PartNumber"]}"'}

    def complete_multipart_upload(self, **options: Any) -> dict[str, Any]:
        assert [p["PartNumber"] for p in options["MultipartUpload"]["Parts"]] == list(
            range(1, len(self.sizes) + 1)
        )
        return {}

    def abort_multipart_upload(self, **options: Any) -> dict[str, Any]:
        return {}


def test_an_upload_of_more_than_10000_parts_grows_its_parts() -> None:
    # At a fixed 8 MiB a part, an object stops at 10,000 parts (78 GiB): the part after that
    # was refused, after hours of upload. The parts grow instead, so that the object fits.
    s3 = _PartLimitedS3()
    upload = S3Upload(s3, "b", "k", POLICY, part_size=1)
    upload.write(b"x" * 25_000)
    upload.close()
    assert sum(s3.sizes) == 25_000
    assert len(s3.sizes) <= 10_000
    full = s3.sizes[:-1]  # the last part is what is left
    assert all(a <= b for a, b in itertools.pairwise(full))  # never shrink
    assert full[0] == 1 and full[-1] > 1
