"""A stand-in for the Lambda context object, for calling handlers in tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import field

from resilient_aws._dataclass import lean_dataclass

__all__ = ["FakeLambdaContext"]


@lean_dataclass
class FakeLambdaContext:
    """What a handler reads from the Lambda context; the remaining time runs on ``clock``.

    >>> context = FakeLambdaContext(timeout_s=30)
    >>> 29_000 < context.get_remaining_time_in_millis() <= 30_000
    True

    Pass ``clock=fake_clock.monotonic`` to control the remaining time from a test.
    """

    timeout_s: float = 30.0
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 128
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    started: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        left = self.timeout_s - (self.clock() - self.started)
        return max(0, int(left * 1000))
