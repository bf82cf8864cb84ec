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
