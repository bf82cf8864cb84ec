"""resilient-aws: parsing, exit codes, the --json report, Ctrl-C; no AWS involved."""

from __future__ import annotations

import argparse
import io
import json
import signal
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, NoRegionError, ProfileNotFound

from resilient_aws.cli import main
from resilient_aws.cli._context import Context
from resilient_aws.cli._exit import (
    FAILED,
    INTERRUPTED,
    OK,
    STOPPED,
    USAGE,
    UsageError,
    classify_error,
)
from resilient_aws.cli._export import decode_resume, encode_resume
from resilient_aws.cli._interrupt import StopRequest, graceful_interrupt
from resilient_aws.cli._parser import build_parser
from resilient_aws.errors import (
    AttemptsExhaustedError,
    ConfigurationError,
    UnknownTableError,
    UnsupportedValueError,
)
from tests.unit.helpers import client_error


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# -- parsing --------------------------------------------------------------------------------------


def test_global_options_before_or_after_the_command() -> None:
    before = parse(
        "--region", "eu-west-1", "--endpoint-url", "http://x", "--json", "load", "t", "-"
    )
    after = parse("load", "t", "-", "--region", "eu-west-1", "--endpoint-url", "http://x", "--json")
    for args in (before, after):
        assert args.region == "eu-west-1"
        assert args.endpoint_url == "http://x"
        assert args.json is True
        assert args.profile is None
        assert args.max_attempts == 10
        assert args.handler == "resilient_aws.cli._load:run_load"
    assert parse("--region", "a", "export", "t", "--region", "b").region == "b"


def test_defaults_of_load_and_export() -> None:
    load = parse("load", "orders", "orders.jsonl")
    assert (load.table, load.file, load.concurrency, load.format, load.rejects) == (
        "orders",
        "orders.jsonl",
        4,
        "plain",
        None,
    )
    export = parse("export", "orders")
    assert (export.segments, export.workers, export.format, export.resume) == (
        4,
        None,
        "plain",
        None,
    )
    assert parse("export", "orders", "--segments", "16", "--workers", "2").workers == 2


def test_demo_keeps_its_options() -> None:
    args = parse("demo", "--items", "10", "--messages", "2", "--seed", "7", "--endpoint-url", "u")
    assert (args.items, args.messages, args.seed, args.endpoint_url) == (10, 2, 7, "u")
    assert parse("--endpoint-url", "v", "demo").endpoint_url == "v"
    assert parse("demo").endpoint_url is None
    assert parse("demo", "-v").verbose and parse("-v", "demo").verbose
    assert not parse("demo").verbose


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["load", "t"],
        ["load", "t", "f", "--concurrency", "0"],
        ["export", "t", "--segments", "-1"],
        ["export", "t", "--format", "csv"],
        ["--max-attempts", "many", "export", "t"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == USAGE
    assert "usage: resilient-aws" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == OK
    assert capsys.readouterr().out.startswith("resilient-aws ")
    assert main(["load", "--help"]) == OK
    help_text = capsys.readouterr().out
    assert "--concurrency N" in help_text
    assert "--endpoint-url URL" in help_text
    assert main(["--help"]) == OK
    assert "130 interrupted" in capsys.readouterr().out


# -- exit codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("cannot read x"), USAGE),
        (ConfigurationError("segments", "must be >= 1"), USAGE),
        (UnsupportedValueError("t[pk=a]", "NaN"), USAGE),
        (UnknownTableError("orders"), USAGE),
        (ProfileNotFound(profile="nope"), USAGE),
        (NoRegionError(), USAGE),
        (client_error("ResourceNotFoundException"), USAGE),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), USAGE),
        (client_error("AccessDeniedException", 403), STOPPED),
        (AttemptsExhaustedError("Scan", 10, client_error("ThrottlingException")), STOPPED),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), STOPPED),
        (RuntimeError("bug"), STOPPED),
    ],
)
def test_errors_map_to_exit_codes(error: BaseException, code: int) -> None:
    got, message = classify_error(error)
    assert got == code
    assert message
    assert "\n" not in message


def test_client_error_message_names_operation_and_code() -> None:
    _, message = classify_error(client_error("AccessDeniedException", 403, operation="Scan"))
    assert message == "Scan: AccessDeniedException: AccessDeniedException happened"


def test_unknown_profile_is_a_usage_error_with_a_json_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--json", "--profile", "no-such-profile", "export", "orders"]) == USAGE
    captured = capsys.readouterr()
    assert captured.out == ""  # export's stdout is its data: its reports go to stderr
    report = json.loads(captured.err.splitlines()[-1])
    assert report == {
        "command": "export",
        "ok": False,
        "exit_code": USAGE,
        "error": {
            "type": "ProfileNotFound",
            "message": "The config profile (no-such-profile) could not be found",
        },
    }
    assert "resilient-aws export: error" not in captured.err  # with --json, only the JSON


def test_unreadable_file_is_a_usage_error(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.jsonl")
    assert main(["--region", "us-east-1", "load", "orders", missing]) == USAGE
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err


def _context(**options: Any) -> tuple[Context, io.StringIO]:
    out = io.StringIO()
    args = argparse.Namespace(**options)
    return Context(args, stdout=out, stderr=io.StringIO(), stop=StopRequest()), out


def test_report_text_and_exit_codes() -> None:
    ctx, out = _context(json=False)
    assert ctx.report({"command": "x"}, ["all good"], ok=True) == OK
    assert ctx.report({"command": "x"}, ["1 failed"], ok=False) == FAILED
    assert ctx.report({"command": "x"}, ["stopped"], ok=False, exit_code=INTERRUPTED) == 130
    assert out.getvalue() == "all good\n1 failed\nstopped\n"


def test_json_report_adds_ok_and_exit_code_and_renders_decimals_as_numbers() -> None:
    from decimal import Decimal

    ctx, out = _context(json=True)
    assert ctx.report({"command": "x", "n": Decimal("2.5")}, ["ignored"], ok=False) == FAILED
    assert json.loads(out.getvalue()) == {"command": "x", "n": 2.5, "ok": False, "exit_code": 1}


def test_context_session_uses_profile_and_region_and_never_shows_credentials() -> None:
    ctx, _ = _context(region="eu-west-3", profile=None, endpoint_url="http://127.0.0.1:1")
    client = ctx.client("sqs")
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.endpoint_url == "http://127.0.0.1:1"
    assert ctx.client("sqs") is client  # one client per service and run
    assert "testing" not in repr(ctx.session)


# -- resume tokens --------------------------------------------------------------------------------


def test_resume_token_round_trip_and_checks() -> None:
    positions: dict[int, str | None] = {0: None, 2: "abc"}
    token = encode_resume("orders", 4, positions)
    assert decode_resume(token, "orders", 4) == positions
    with pytest.raises(UsageError, match="for table 'orders' with --segments 4"):
        decode_resume(token, "orders", 8)
    with pytest.raises(UsageError, match="for table 'orders'"):
        decode_resume(token, "users", 4)
    with pytest.raises(UsageError, match="not a token"):
        decode_resume("garbage!", "orders", 4)
    with pytest.raises(UsageError, match="not a token"):
        decode_resume(encode_resume("orders", 4, {9: None}), "orders", 4)


# -- Ctrl-C ---------------------------------------------------------------------------------------


def test_first_ctrl_c_asks_to_stop_the_second_aborts(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT)
    with graceful_interrupt() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    assert "stopping after what is in flight" in capsys.readouterr().err


def test_the_resume_hint_repeats_where_and_how_the_export_read() -> None:
    from resilient_aws.cli._export import _resume_command

    args = parse(
        "export", "orders", "--endpoint-url", "http://127.0.0.1:5000", "--region", "eu-west-1",
        "--page-size", "25", "--consistent-read", "--segments", "4",
    )  # fmt: skip
    context = Context(args, stdout=io.StringIO(), stderr=io.StringIO(), stop=StopRequest())
    command = _resume_command(context, "orders", 4, "json", "TOKEN")
    assert command == (
        "resilient-aws export orders --segments 4 --format json --endpoint-url "
        "http://127.0.0.1:5000 --region eu-west-1 --page-size 25 --consistent-read --resume TOKEN"
    )  # a pasted resume must not go to another endpoint, account or region
