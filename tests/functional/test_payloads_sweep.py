"""sweep_payloads and ``resilient-aws payloads sweep`` on moto (S3): old objects deleted, new
ones kept, per-key DeleteObjects errors retried, every listed key accounted for."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import boto3
import pytest

from resilient_aws.cli import main
from resilient_aws.errors import ConfigurationError
from resilient_aws.payloads import (
    PayloadConfig,
    PayloadError,
    PayloadNotFoundError,
    PayloadStore,
    SweepResult,
    sweep_payloads,
)
from resilient_aws.testing import FakeClock

REGION = "us-east-1"
BUCKET = "payloads"
DAY = 86_400


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def put(s3: Any, keys: list[str], *, age_days: float = 0) -> None:
    """Objects last modified ``age_days`` ago (moto's clock, set on its own objects)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[BUCKET]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"secret payload")
        bucket.keys[key].last_modified -= datetime.timedelta(days=age_days)


def keys(s3: Any) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        found += [item["Key"] for item in page.get("Contents", [])]
    return sorted(found)


def accounted(result: SweepResult) -> bool:
    return result.listed == result.deleted + result.kept + result.failed + result.would_delete


class KeyErrors:
    """Make S3 fail to delete some keys of ``DeleteObjects`` (as it does under load): the keys
    ``fail(key, attempt)`` picks are taken out of the request and answered in ``Errors``."""

    def __init__(self, s3: Any, fail: Any, code: str = "InternalError") -> None:
        self.s3, self.fail, self.code = s3, fail, code
        self.attempts: dict[str, int] = {}
        self.held: list[str] = []
        self.injected = 0

    def __enter__(self) -> KeyErrors:
        events = self.s3.meta.events
        events.register("provide-client-params.s3.DeleteObjects", self._hold, "key-errors-hold")
        events.register("after-call.s3.DeleteObjects", self._answer, "key-errors-answer")
        return self

    def __exit__(self, *exc: object) -> None:
        events = self.s3.meta.events
        events.unregister("provide-client-params.s3.DeleteObjects", unique_id="key-errors-hold")
        events.unregister("after-call.s3.DeleteObjects", unique_id="key-errors-answer")

    def _hold(self, params: dict[str, Any], **_: Any) -> None:
        kept, self.held = [], []
        for item in params["Delete"]["Objects"]:
            attempt = self.attempts[item["Key"]] = self.attempts.get(item["Key"], 0) + 1
            (self.held if self.fail(item["Key"], attempt) else kept).append(item)
        if not kept:  # S3 refuses an empty list: keep one, answered as failed all the same
            kept = [{"Key": "never-there"}]
        params["Delete"] = {**params["Delete"], "Objects": kept}

    def _answer(self, parsed: dict[str, Any], **_: Any) -> None:
        parsed["Deleted"] = [d for d in parsed.get("Deleted", []) if d["Key"] != "never-there"]
        errors = parsed.setdefault("Errors", [])
        for item in self.held:
            errors.append({"Key": item["Key"], "Code": self.code, "Message": "injected"})
        self.injected += len(self.held)


def sweep(store: PayloadStore, **options: Any) -> SweepResult:
    return sweep_payloads(store, older_than_s=15 * DAY, **options)


def test_old_objects_are_deleted_and_new_ones_kept(s3: Any) -> None:
    put(s3, [f"orders/old-{n}" for n in range(25)], age_days=16)
    put(s3, [f"orders/new-{n}" for n in range(7)], age_days=14)
    put(s3, [f"other/old-{n}" for n in range(3)], age_days=30)  # not under the prefix
    store = PayloadStore(PayloadConfig(bucket=BUCKET, prefix="orders/"), client=s3)
    pages: list[int] = []
    result = sweep(store, page_size=10, progress=lambda r: pages.append(r.listed))
    assert (result.listed, result.deleted, result.kept, result.failed) == (32, 25, 7, 0)
    assert result.ok and accounted(result) and result.stopped is None
    assert result.pages == 4 and pages == [10, 20, 30, 32]
    assert result.requests == 4  # one DeleteObjects per page: each holds old keys
    assert keys(s3) == sorted(
        [f"orders/new-{n}" for n in range(7)] + [f"other/old-{n}" for n in range(3)]
    )
    assert "secret" not in json.dumps(result.to_dict()) + str(result)


def test_a_dry_run_deletes_nothing(s3: Any) -> None:
    put(s3, ["old-1", "old-2"], age_days=20)
    put(s3, ["new-1"])
    result = sweep(PayloadStore(BUCKET, client=s3), dry_run=True)
    assert (result.listed, result.would_delete, result.deleted, result.kept) == (3, 2, 0, 1)
    assert result.requests == 0 and len(keys(s3)) == 3
    assert str(result) == f"s3://{BUCKET}/: 3 listed, 2 would be deleted, 1 kept, 0 failed"


def test_keys_s3_fails_to_delete_are_retried_one_by_one(s3: Any) -> None:
    old = [f"k{n:03d}" for n in range(40)]
    put(s3, old, age_days=20)
    put(s3, ["fresh"])
    clock = FakeClock()
    store = PayloadStore(BUCKET, client=s3, policy=clock.policy(max_attempts=5))
    with KeyErrors(s3, lambda key, attempt: attempt <= 2 and int(key[1:]) % 3 == 0) as injected:
        result = sweep(store)
    assert injected.injected == 2 * 14  # 14 keys failed twice each, then deleted
    assert (result.listed, result.deleted, result.kept, result.failed) == (41, 40, 1, 0)
    assert result.resent == 28 and result.requests == 3 and accounted(result)
    assert keys(s3) == ["fresh"]
    assert clock.slept  # the re-sends went through the retry core's backoff


def test_keys_s3_refuses_are_counted_named_and_stop_the_sweep(s3: Any) -> None:
    put(s3, [f"a{n}" for n in range(5)], age_days=20)
    put(s3, [f"b{n}" for n in range(5)], age_days=20)
    store = PayloadStore(BUCKET, client=s3, policy=FakeClock().policy(max_attempts=3))
    with KeyErrors(s3, lambda key, attempt: True, code="AccessDenied"):
        result = sweep(store, page_size=5, max_failures=3)
    # the first page deleted nothing: the second would fare no better
    assert (result.listed, result.deleted, result.failed, result.pages) == (5, 0, 5, 1)
    assert result.stopped == "AccessDenied" and not result.ok and accounted(result)
    assert result.failures == {f"a{n}": "AccessDenied: injected" for n in range(3)}
    assert result.resent == 0  # refused, not retried
    assert len(keys(s3)) == 10


def test_a_missing_bucket_is_a_lookup_error_naming_it(s3: Any) -> None:
    store = PayloadStore(PayloadConfig(bucket="gone", prefix="p/"), client=s3)
    with pytest.raises(PayloadNotFoundError) as raised:
        sweep(store)
    assert "s3://gone/p/" in str(raised.value) and raised.value.code == "NoSuchBucket"
    assert isinstance(raised.value, LookupError)


def test_listing_errors_are_typed_after_the_retry_core(s3: Any) -> None:
    clock = FakeClock()
    store = PayloadStore(BUCKET, client=s3, policy=clock.policy(max_attempts=2))

    def refuse(**_: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
            "ListObjectsV2",
        )

    s3.meta.events.register("before-call.s3.ListObjectsV2", refuse)
    with pytest.raises(PayloadError) as raised:
        sweep(store)
    assert raised.value.code == "SlowDown" and not isinstance(raised.value, LookupError)
    assert len(clock.slept) == 1  # two attempts


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"older_than_s": 0}, "older_than_s"),
        ({"older_than_s": float("inf")}, "older_than_s"),
        ({"older_than_s": True}, "older_than_s"),
        ({"older_than_s": DAY, "page_size": 1001}, "page_size"),
        ({"older_than_s": DAY, "max_failures": -1}, "max_failures"),
    ],
)
def test_bad_options_are_refused_before_anything_is_listed(
    s3: Any, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field):
        sweep_payloads(PayloadStore(BUCKET, client=s3), **options)


def test_the_cutoff_comes_from_the_clock(s3: Any) -> None:
    put(s3, ["k"])  # now
    later = time.time() + 16 * DAY
    result = sweep(PayloadStore(BUCKET, client=s3), clock=lambda: later)
    assert result.deleted == 1 and result.cutoff == pytest.approx(later - 15 * DAY)


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def run(s3: Any, capsys: pytest.CaptureFixture[str]) -> Any:
    def run_cli(*argv: str) -> tuple[int, dict[str, Any]]:
        code = main(["payloads", "sweep", "--bucket", BUCKET, "--json", "--no-progress", *argv])
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else {}

    return run_cli


def test_the_command_sweeps_and_reports(s3: Any, run: Any) -> None:
    put(s3, ["p/old-1", "p/old-2"], age_days=16)
    put(s3, ["p/new-1", "q/old-1"], age_days=1)
    code, report = run("--prefix", "p/", "--older-than", "15d", "--dry-run")
    assert code == 0 and report["would_delete"] == 2 and report["deleted"] == 0
    code, report = run("--prefix", "p/", "--older-than", "15d")
    assert (code, report["ok"], report["exit_code"]) == (0, True, 0)
    assert report["command"] == "payloads sweep"
    assert (report["listed"], report["deleted"], report["kept"], report["failed"]) == (3, 2, 1, 0)
    assert report["older_than_s"] == 15 * DAY and report["cutoff"].endswith("Z")
    assert keys(s3) == ["p/new-1", "q/old-1"]


def test_the_command_exits_1_when_keys_fail_and_3_when_stopped(
    s3: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.cli._context import Context

    monkeypatch.setattr(Context, "_client", lambda self, service: s3)  # faults injected on it
    put(s3, ["a", "b", "c"], age_days=20)
    argv = ["payloads", "sweep", "--bucket", BUCKET, "--older-than", "36h", "--no-progress"]
    with KeyErrors(s3, lambda key, attempt: key == "b", code="AccessDenied"):
        assert main([*argv, "--max-attempts", "2"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"s3://{BUCKET}/: 3 listed, 2 deleted, 0 kept, 1 failed"
    assert out[2] == "b: failed: AccessDenied: injected"
    with KeyErrors(s3, lambda key, attempt: True, code="AccessDenied"):
        assert main(argv) == 3
    assert "stopped early (AccessDenied)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--older-than", "15"],
        ["--older-than", "-1d"],
        ["--older-than", "xd"],
        ["--older-than", "1d", "--page-size", "1001"],
        ["--older-than", "1d", "--prefix", "bad prefix"],
    ],
)
def test_the_command_refuses_bad_options_with_exit_2(s3: Any, argv: list[str]) -> None:
    put(s3, ["old"], age_days=20)
    assert main(["payloads", "sweep", "--bucket", BUCKET, "--no-progress", *argv]) == 2
    assert keys(s3) == ["old"]


def test_the_command_exits_2_for_a_missing_bucket(s3: Any, run: Any) -> None:
    code, report = run("--older-than", "15d", "--bucket", "gone")
    assert code == 2 and report["error"]["type"] == "SweepBucketNotFoundError"


def test_ctrl_c_stops_after_the_page_in_hand_with_every_key_counted(
    s3: Any, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from resilient_aws.payloads import _sweep

    put(s3, [f"k{n}" for n in range(9)], age_days=20)
    list_page = _sweep._list_page
    calls: list[int] = []

    def interrupted_on_the_second_page(*args: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop at a safe point
        return list_page(*args)

    monkeypatch.setattr(_sweep, "_list_page", interrupted_on_the_second_page)
    code, report = run("--older-than", "15d", "--page-size", "3")
    assert code == 130 and report["interrupted"] is True
    assert (report["pages"], report["listed"], report["deleted"]) == (2, 6, 6)
    assert len(keys(s3)) == 3


def test_keys_an_interrupt_kept_from_the_engine_are_counted_failed(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.payloads import _sweep

    put(s3, [f"k{n}" for n in range(6)], age_days=20)
    made: list[str] = []

    class CountedEntry(_sweep.Entry):  # type: ignore[type-arg]
        def __init__(self, key: str, *args: Any) -> None:
            made.append(key)
            if len(made) == 5:  # the second page's second key
                raise KeyboardInterrupt
            super().__init__(key, *args)

    monkeypatch.setattr(_sweep, "Entry", CountedEntry)
    seen: list[SweepResult] = []
    with pytest.raises(KeyboardInterrupt):
        sweep(PayloadStore(BUCKET, client=s3), page_size=3, progress=seen.append)
    (result,) = seen  # the first page's; the object goes on counting the second
    assert (result.listed, result.deleted, result.failed) == (6, 4, 2)
    assert accounted(result)
    assert len(keys(s3)) == 2


def test_the_command_reports_an_interrupt_before_the_first_page(
    s3: Any, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.payloads import _sweep

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_sweep, "_list_page", interrupted)
    code, report = run("--older-than", "15d", "--prefix", "p/")
    assert code == 130
    assert report == {
        "command": "payloads sweep",
        "bucket": BUCKET,
        "prefix": "p/",
        "interrupted": True,
        "ok": False,
        "exit_code": 130,
    }


def test_the_command_shows_the_first_failures_and_counts_all(
    s3: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from resilient_aws.cli._context import Context

    monkeypatch.setattr(Context, "_client", lambda self, service: s3)
    put(s3, [f"k{n:02d}" for n in range(30)], age_days=20)
    argv = ["payloads", "sweep", "--bucket", BUCKET, "--older-than", "15d", "--no-progress"]
    with KeyErrors(s3, lambda key, attempt: key != "k00", code="AccessDenied"):
        assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"s3://{BUCKET}/: 30 listed, 1 deleted, 0 kept, 29 failed"
    assert len(out) == 2 + 20 + 1
    assert out[-1] == "... 29 failed in all (--json lists the first 29)"
