"""``resilient-aws demo`` (what ``make demo`` runs) works on a fresh machine and tells the truth."""

from __future__ import annotations

import pytest

from resilient_aws.cli import main
from resilient_aws.testing import MotoServer


def test_demo_runs_every_act_and_loses_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--items", "300", "--messages", "40", "--orders", "20", "--seed", "3"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "wrote 300/300 items" in out
    assert "sent 40/40 messages" in out
    assert "60 deliveries of 20 orders -> 20 charges, 0 doubled" in out
    assert "20 arrived, in order per customer: True" in out
    assert "40 of 40 jobs back in the work queue, 0 left in the DLQ" in out
    assert out.rstrip().endswith("nothing lost, nothing invented.")


def test_demo_runs_again_on_a_server_it_already_used(moto_server: MotoServer) -> None:
    # tables and queues of an earlier run are there: the demo starts from a clean slate
    for _ in range(2):
        code = main(
            [
                "demo",
                "--items",
                "50",
                "--messages",
                "20",
                "--orders",
                "10",
                "--endpoint-url",
                moto_server.endpoint_url,
            ]
        )
        assert code == 0


def _small_demo(endpoint_url: str) -> list[str]:
    return [
        "demo",
        "--items",
        "50",
        "--messages",
        "20",
        "--orders",
        "10",
        "--endpoint-url",
        endpoint_url,
    ]


def test_a_second_run_counts_only_its_own_messages(
    moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert main(_small_demo(moto_server.endpoint_url)) == 0
        out = capsys.readouterr().out
        assert "read back: 50 of 50 items, 20 of 20 messages" in out, out


def test_an_extra_message_makes_the_verdict_false(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import resilient_aws.cli._demo as demo
    from resilient_aws.cli._demo_more import DemoNames

    names = DemoNames.fresh()
    monkeypatch.setattr(demo.DemoNames, "fresh", classmethod(lambda cls: names))
    sqs = moto_server.client("sqs")
    planted = sqs.create_queue(QueueName=names.queue)["QueueUrl"]
    sqs.send_message(QueueUrl=planted, MessageBody='{"n": 3}')  # a message the run never sent

    assert main(_small_demo(moto_server.endpoint_url)) == 1
    out = capsys.readouterr().out
    assert "21 of 20 messages" in out
    assert "INVENTED or DOUBLED: 0 items and 1 messages" in out
    assert "nothing lost" not in out
