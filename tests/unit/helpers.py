from __future__ import annotations

from botocore.exceptions import ClientError


def client_error(
    code: str, status: int = 400, *, retry_attempts: int = 0, operation: str = "Op"
) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retry_attempts},
        },
        operation,
    )


class Flaky:
    """A callable that raises the given errors in order, then returns ``result``."""

    def __init__(
        self, *errors: BaseException, result: object = "ok", clock: object = None, cost: float = 0.0
    ):
        self.errors = list(errors)
        self.result = result
        self.calls = 0
        self.clock = clock
        self.cost = cost
        self.__name__ = "flaky"

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.clock is not None and self.cost:
            self.clock.advance(self.cost)  # type: ignore[attr-defined]
        if self.errors:
            raise self.errors.pop(0)
        return self.result
