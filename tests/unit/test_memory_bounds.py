"""Memory bounded by configuration, never by input size (issue 14).

Each path runs 1x and 10x the data against in-process fakes and compares the peak of what
Python allocated (``tracemalloc``): the difference must stay under a stated bound, where the
previous engine grew with the input (``parallel_scan`` queued pages by count, a sender kept
every message and answer, a redrive every message id and receipt handle it saw).
"""

from __future__ import annotations

import collections
import gc
import json
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from resilient_aws.batch import SqsSender
from resilient_aws.dynamodb import parallel_scan
from resilient_aws.redrive import redrive_sqs

MiB = 1024 * 1024


def peak_of(run: Callable[[], Any]) -> float:
    """Bytes allocated at the peak of ``run`` above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


# -- parallel_scan -------------------------------------------------------------------------------


class FakeDynamoDB:
    """``Scan`` by segment: ``pages`` pages of ``per_page`` items each, parsed afresh per call
    (as botocore parses every response)."""

    def __init__(self, pages: int, per_page: int = 400) -> None:
        item = {
            "pk": {"S": "order-000000"},
            "city": {"S": "Milan"},
            "total": {"N": "123.45"},
            "note": {"S": "y" * 200},
        }
        self.body = json.dumps([item] * per_page)
        self.pages = pages

    def scan(self, **request: Any) -> dict[str, Any]:
        start = request.get("ExclusiveStartKey")
        n = int(start["pk"]["S"]) if start else 0
        items = json.loads(self.body)
        response: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
        if n + 1 < self.pages:
            response["LastEvaluatedKey"] = {"pk": {"S": str(n + 1)}}
        return response


def scan_peak(pages_per_segment: int, **options: Any) -> float:
    client = FakeDynamoDB(pages_per_segment)

    def run() -> None:
        read = parallel_scan("t", segments=8, client=client, **options)
        items = 0
        for _, page in read.pages():
            items += len(page.items)
            time.sleep(0.002)  # a consumer slower than the readers: pages pile up if allowed
        assert items == 8 * pages_per_segment * 400
        assert read.done

    return peak_of(run)


def test_parallel_scan_holds_what_its_byte_budget_allows_however_large_the_table() -> None:
    # ~0.4 MB of items per page. The previous engine queued 16 pages and read 8 more whatever
    # their size: 8 pages at 1x, ~24 at 10x. Here, 3 MiB of pages read, queued and consumed.
    budget = 3 * MiB
    small = scan_peak(1, max_buffer_bytes=budget)
    large = scan_peak(10, max_buffer_bytes=budget)
    assert large - small < 1 * MiB, (small / MiB, large / MiB)
    assert large < 2 * budget, large / MiB  # the estimate's slack and one page being parsed


# -- batch senders -------------------------------------------------------------------------------


class FakeSqs:
    """``SendMessageBatch`` that takes everything and answers as SQS does."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - botocore's names
        return {
            "Successful": [
                {
                    "Id": e["Id"],
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": "d41d8cd98f00b204e9800998ecf8427e",
                }
                for e in Entries
            ]
        }


def sender_peak(messages: int, **options: Any) -> tuple[float, Any]:
    body = json.dumps({"order": "x" * 400})
    sender = SqsSender(
        "https://sqs.us-east-1.amazonaws.com/1/q", client=FakeSqs(), concurrency=1, **options
    )

    def run() -> None:
        for _ in range(messages):
            sender.send_message(body)
        sender.flush()  # a long-lived sender: flushed, never closed

    used = peak_of(run)
    sender.close()
    return used, sender.result


def test_a_long_lived_sqs_sender_keeps_compact_answers_up_to_max_answers() -> None:
    # The previous engine kept every message and its whole answer: ~0.8 KB per message here,
    # 15 MB more at 10x. Now the newest 10,000 compact answers at most (~3 MB).
    small, _ = sender_peak(2_000, keep_answers=True)
    large, result = sender_peak(20_000, keep_answers=True)
    assert large - small < 4 * MiB, (small / MiB, large / MiB)
    assert result.succeeded == 20_000
    assert (len(result.answers), result.answers_dropped) == (10_000, 10_000)
    assert result.answers[-1].entry_id == "#19999"
    assert all(a.entry is None and set(a.response) == {"MessageId"} for a in result.answers)


def test_a_sender_with_a_small_answer_window_stays_flat() -> None:
    small, _ = sender_peak(2_000, keep_answers=True, max_answers=100)
    large, result = sender_peak(20_000, keep_answers=True, max_answers=100)
    assert large - small < 0.5 * MiB, (small / MiB, large / MiB)
    assert (len(result.answers), result.answers_dropped) == (100, 19_900)


def test_full_answers_and_no_answers_on_request() -> None:
    _, full = sender_peak(30, keep_answers="full", max_answers=None)
    assert len(full.answers) == 30
    assert full.answers[0].entry["body"].startswith('{"order"')
    assert "MD5OfMessageBody" in full.answers[0].response
    assert "Id" not in full.answers[0].response  # the index in its request: not the caller's
    _, none = sender_peak(30, keep_answers=False)
    assert (none.succeeded, none.answers, none.answers_dropped) == (30, [], 0)


@pytest.mark.parametrize(
    ("option", "value"), [("keep_answers", "some"), ("max_answers", -1), ("max_answers", True)]
)
def test_answer_options_are_checked(option: str, value: Any) -> None:
    from resilient_aws.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=option):
        SqsSender("https://sqs.us-east-1.amazonaws.com/1/q", client=FakeSqs(), **{option: value})


# -- redrive -------------------------------------------------------------------------------------


class FakeQueues:
    """A DLQ of ``count`` messages and a target that counts what arrives: enough SQS for
    ``redrive_sqs``, without botocore (10,000 messages in a few seconds)."""

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.waiting = collections.deque(str(uuid.uuid4()) for _ in range(count))
        self.arrived = 0
        self.received = 0

    def get_queue_attributes(self, QueueUrl: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {
            "Attributes": {
                "QueueArn": f"arn:aws:sqs:us-east-1:1:{QueueUrl.rsplit('/', 1)[1]}",
                "FifoQueue": "false",
                "ApproximateNumberOfMessages": str(len(self.waiting)),
            }
        }

    def receive_message(self, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:  # noqa: N803
        with self.lock:
            taken = [
                self.waiting.popleft() for _ in range(min(MaxNumberOfMessages, len(self.waiting)))
            ]
            self.received += len(taken)
            serial = self.received
        messages = [
            {
                "MessageId": message_id,
                "ReceiptHandle": f"{message_id}/{serial}/" + "r" * 300,  # SQS's are ~400 bytes
                "Body": json.dumps({"order": message_id, "pad": "x" * 200}),
                "Attributes": {"ApproximateReceiveCount": "4"},
                "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "order"}},
            }
            for message_id in taken
        ]
        return {"Messages": messages} if messages else {}

    def send_message_batch(self, Entries: list[dict[str, Any]], **_: Any) -> dict[str, Any]:  # noqa: N803
        with self.lock:
            self.arrived += len(Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": str(uuid.uuid4())} for e in Entries]}

    def delete_message_batch(self, Entries: list[dict[str, Any]], **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def change_message_visibility_batch(
        self,
        Entries: list[dict[str, Any]],  # noqa: N803
        **_: Any,
    ) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def redrive_peak(count: int, **options: Any) -> float:
    queues = FakeQueues(count)

    def run() -> None:
        report = redrive_sqs(
            "https://sqs.us-east-1.amazonaws.com/1/dlq",
            target_queue_url="https://sqs.us-east-1.amazonaws.com/1/src",
            client=queues,
            wait_time_s=0,
            **options,
        )
        assert (report.received, report.moved, queues.arrived) == (count, count, count)

    return peak_of(run)


def test_redrive_keeps_only_what_it_still_owes() -> None:
    # The previous engine kept every message's id and receipt handle for the run: ~0.5 KB
    # each, 2.3 MB more at 10x here (500 MB per million). Now a window of moved ids: ~100 bytes
    # each, the newest 100,000 by default.
    small = redrive_peak(500)
    large = redrive_peak(5_000)
    assert large - small < 0.75 * MiB, (small / MiB, large / MiB)


def test_redrive_with_a_small_window_of_moved_ids_stays_flat() -> None:
    small = redrive_peak(500, remember_moved=200)
    large = redrive_peak(5_000, remember_moved=200)
    assert large - small < 0.25 * MiB, (small / MiB, large / MiB)


def test_the_window_of_moved_ids_keeps_the_newest_and_names_each_id_exactly() -> None:
    from resilient_aws.redrive._drain import _MovedIds

    window = _MovedIds(2)
    first, second = str(uuid.uuid4()), "not-a-uuid"
    window.add(first, None)
    window.add(second, "q")
    assert first in window and second in window and window.target(second) == "q"
    assert first.upper() not in window  # another string, another message
    window.add(first, "again")  # already there: no second place in the window
    assert len(window) == 2 and window.target(first) == "again"
    third = str(uuid.uuid4())
    window.add(third, None)
    assert first not in window and second in window and third in window
    empty = _MovedIds(0)
    empty.add(first, None)
    assert first not in empty


# -- the CLI's load --------------------------------------------------------------------------------


def tally_peak(lines: int) -> tuple[float, Any]:
    from resilient_aws.cli._load import _Tally

    tally = _Tally(keys=("pk",), track_keys=5_000)

    def run() -> None:
        for i in range(lines):
            tally.note_key({"pk": f"order-{i:09d}"})

    return peak_of(run), tally


def test_load_remembers_at_most_track_keys_keys() -> None:
    # It kept a digest of every distinct key of the file: ~70 bytes a line, 700 MB for 10M.
    small, _ = tally_peak(10_000)
    large, tally = tally_peak(100_000)
    assert large - small < 0.25 * MiB, (small / MiB, large / MiB)
    assert (len(tally.seen), tally.untracked) == (5_000, 95_000)
