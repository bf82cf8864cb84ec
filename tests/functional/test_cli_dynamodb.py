"""resilient-aws load and export against moto in process: every line accounted for."""

from __future__ import annotations

import io
import json
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from resilient_aws.cli import main
from tests.dynamo_tables import all_items, create_table

_plain = TypeDeserializer()


def _items(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    return {
        item["pk"]["S"]: {k: _plain.deserialize(v) for k, v in item.items()}
        for item in all_items(ddb, table)
    }


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


GOOD = [
    json.dumps({"pk": f"order-{i:04d}", "total": i / 10, "lines": [1, 2], "tags": ["a"]})
    for i in range(300)
]
BAD = {
    12: '{"pk": "order-broken", ',  # not JSON
    40: "[1, 2, 3]",  # not an object
    77: '{"total": 5}',  # no key
    150: '{"pk": "order-nan", "total": NaN}',  # NaN: not storable
    151: '{"pk": "", "total": 1}',  # empty key
}


def _with_bad_lines() -> list[str]:
    lines = list(GOOD)
    for number in sorted(BAD):
        lines.insert(number - 1, BAD[number])
    return lines


def test_load_reports_bad_lines_by_number_and_loads_the_rest(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    lines = _with_bad_lines()
    source = _write(tmp_path / "orders.jsonl", [*lines, ""])
    rejects = tmp_path / "rejects.jsonl"

    code = main(["load", "orders", source, "--json", "--rejects", str(rejects)])

    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1
    assert report["ok"] is False
    assert report["exit_code"] == 1
    assert report["lines"] == len(lines) + 1
    assert report["blank"] == 1
    assert report["items"] == len(lines)
    assert report["loaded"] == len(GOOD)
    assert report["failed"] == len(BAD)
    assert report["items"] == report["loaded"] + report["failed"] + report["replaced"]
    assert [f["line"] for f in report["failures"]] == sorted(BAD)
    assert [f["code"] for f in report["failures"]] == [
        "InvalidLine",
        "InvalidLine",
        "InvalidKeyError",
        "UnsupportedValueError",
        "InvalidKeyError",
    ]
    assert report["failures"][3]["id"] == "orders[pk=order-nan]"
    assert sorted(rejects.read_text().splitlines()) == sorted(BAD.values())
    stored = _items(ddb, "orders")
    assert set(stored) == {f"order-{i:04d}" for i in range(300)}
    assert stored["order-0003"]["total"] == Decimal("0.3")  # the text, not 0.30000000000000004
    assert "load orders: " in captured.err  # the summary line (stderr is not a terminal)


def test_load_text_report_lists_failures(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    source = _write(tmp_path / "orders.jsonl", [GOOD[0], BAD[12], GOOD[1], GOOD[1]])
    assert main(["load", "orders", source, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "loaded 2 of 4 items from 4 lines into orders; 1 failed; 1 replaced by a later line "
        "of the same key (1 requests, 0 items re-sent)",
        "line 2: InvalidLine: not JSON: Expecting property name enclosed in double quotes "
        "at column 24",
    ]
    assert captured.err == ""


def test_export_then_load_round_trips_exactly(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    create_table(ddb, "copy")
    precise = '{"pk": "precise", "n": 12345678901234567890.123456789012345678, "m": {"x": 1e-5}}'
    source = _write(tmp_path / "orders.jsonl", [*GOOD, precise])
    assert main(["load", "orders", source, "--no-progress"]) == 0
    capsys.readouterr()

    assert main(["export", "orders", "--segments", "3", "--workers", "2", "--page-size", "40"]) == 0
    captured = capsys.readouterr()
    exported = captured.out.splitlines()
    assert len(exported) == len(GOOD) + 1
    assert '"n":12345678901234567890.123456789012345678' in next(
        line for line in exported if '"precise"' in line
    )
    assert "exported 301 items from orders (3 segments" in captured.err
    assert "export orders: 301 items" in captured.err

    dump = _write(tmp_path / "out.jsonl", exported)
    assert main(["load", "copy", dump, "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["loaded"] == 301
    assert _items(ddb, "copy") == _items(ddb, "orders")


def test_dynamodb_format_keeps_sets_and_binary(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    create_table(ddb, "copy")
    ddb.put_item(
        TableName="orders",
        Item={
            "pk": {"S": "a"},
            "tags": {"SS": ["x", "y"]},
            "scores": {"NS": ["1", "2.5"]},
            "blob": {"B": b"\x00\xff"},
        },
    )
    assert main(["export", "orders", "--format", "dynamodb", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.err.splitlines()[-1])["exported"] == 1
    line = captured.out.strip()
    assert json.loads(line)["Item"]["blob"] == {"B": "AP8="}
    dump = _write(tmp_path / "out.jsonl", [line])
    assert main(["load", "copy", dump, "--format", "dynamodb", "--no-progress"]) == 0
    assert _items(ddb, "copy") == _items(ddb, "orders")


def test_load_from_stdin(
    ddb: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    stdin = io.TextIOWrapper(io.BytesIO("\n".join(GOOD[:30]).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["load", "orders", "-", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["file"], report["loaded"], report["failures"]) == ("-", 30, [])
    assert len(_items(ddb, "orders")) == 30


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


def test_ctrl_c_stops_load_after_sending_what_was_read(
    ddb: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    monkeypatch.setattr(sys, "stdin", _InterruptingStdin(GOOD, at=57))
    assert main(["load", "orders", "-", "--json"]) == 130
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["interrupted"] is True
    assert report["exit_code"] == 130
    assert report["lines"] == 57
    assert report["loaded"] == 57  # the 57 read were sent (a partly filled batch included)
    assert set(_items(ddb, "orders")) == {f"order-{i:04d}" for i in range(57)}
    assert "stopping after what is in flight" in captured.err


class _InterruptingStdout(io.StringIO):
    """stdout whose reader presses Ctrl-C after the first page has been written."""

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.tell() and not getattr(self, "pressed", False):
            self.pressed = True
            signal.raise_signal(signal.SIGINT)
        return written


def test_interrupted_export_resumes_where_it_stopped(
    ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    create_table(ddb, "orders")
    source = _write(tmp_path / "orders.jsonl", GOOD)
    assert main(["load", "orders", source, "--no-progress"]) == 0
    capsys.readouterr()

    first = _InterruptingStdout()
    monkeypatch.setattr(sys, "stdout", first)
    assert main(["export", "orders", "--segments", "4", "--page-size", "25", "--json"]) == 130
    report = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert report["complete"] is False
    assert report["resume"]
    assert 0 < report["exported"] < len(GOOD)
    assert report["exported"] == len(first.getvalue().splitlines())

    rest = io.StringIO()
    monkeypatch.setattr(sys, "stdout", rest)
    resume = ["export", "orders", "--segments", "4", "--page-size", "25", "--json"]
    assert main([*resume, "--resume", report["resume"]]) == 0
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert final["complete"] is True
    assert final["resume"] is None
    keys = [json.loads(line)["pk"] for line in (first.getvalue() + rest.getvalue()).splitlines()]
    assert sorted(keys) == [f"order-{i:04d}" for i in range(300)]  # none skipped, none twice


def test_resume_token_of_another_table_is_refused(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from resilient_aws.cli._export import encode_resume

    create_table(ddb, "orders")
    token = encode_resume("users", 4, {0: None})
    assert main(["export", "orders", "--resume", token]) == 2
    assert "the token is for table 'users'" in capsys.readouterr().err


def test_unknown_table_is_bad_input_and_nothing_is_read(
    ddb: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "orders.jsonl", GOOD[:3])
    assert main(["load", "missing", source]) == 2
    assert "table 'missing' does not exist" in capsys.readouterr().err
    assert main(["export", "missing", "--json"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""  # stdout is the export's data: the report stays out of the file
    assert json.loads(printed.err.splitlines()[-1])["error"]["type"] == "UnknownTableError"


def test_verbose_run_never_prints_credentials(
    ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0000")
    create_table(ddb, "orders")
    source = _write(tmp_path / "orders.jsonl", [*GOOD[:30], BAD[12]])
    assert main(["-v", "load", "orders", source, "--json"]) == 1
    assert main(["-v", "export", "orders"]) == 0
    captured = capsys.readouterr()
    for shown in (captured.out, captured.err):
        assert secret not in shown
        assert "AKIAEXAMPLEKEYID0000" not in shown


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_export_into_a_closed_pipe_exits_141(
    ddb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(ddb, "orders")
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}})
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["export", "orders", "--no-progress"]) == 141


def test_keyboard_interrupt_outside_a_safe_point_exits_130(
    ddb: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def pressed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    create_table(ddb, "orders")
    monkeypatch.setattr("resilient_aws.cli._load.describe_key_schema", pressed)
    assert main(["load", "orders", "-"]) == 130
    assert "resilient-aws load: interrupted" in capsys.readouterr().err
