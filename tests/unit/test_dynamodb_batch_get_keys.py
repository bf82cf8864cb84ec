"""batch_get tells keys apart by value, not by name: binary keys all look alike in a name."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import Binary

from resilient_aws.dynamodb import batch_get
from resilient_aws.testing import FakeClock


class OneKeyAlwaysUnprocessed:
    """b"\\x01" is never processed, b"\\x02" does not exist, b"\\x03" exists."""

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        keys = RequestItems["t"]["Keys"]
        return {
            "Responses": {"t": [{"pk": {"B": b"\x03"}} for k in keys if k["pk"]["B"] == b"\x03"]},
            "UnprocessedKeys": {"t": {"Keys": [k for k in keys if k["pk"]["B"] == b"\x01"]}},
        }


def test_a_failed_binary_key_does_not_hide_a_missing_one() -> None:
    result = batch_get(
        "t",
        [{"pk": b"\x01"}, {"pk": b"\x02"}, {"pk": b"\x03"}],
        client=OneKeyAlwaysUnprocessed(),
        key="pk",
        policy=FakeClock().policy(max_attempts=2),
        raise_on_failure=False,
    )
    assert result.items == [{"pk": Binary(b"\x03")}]
    assert result.missing == [{"pk": Binary(b"\x02")}]
    (failed,) = result.failed
    assert failed.code == "Unprocessed" and failed.entry == {"pk": b"\x01"}
    # named without printing the value, yet apart from every other binary key
    assert failed.entry_id.startswith("t[pk=<binary ") and "\\x01" not in failed.entry_id
