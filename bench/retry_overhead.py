"""What the retry core costs when nothing fails, and what importing the library costs.

Measured side by side in one run: a Stubber-backed DynamoDB ``get_item`` (real botocore work:
parameter validation, serialization, event hooks, parsing) called bare and through
``RetryPolicy.call``; then ``import resilient_aws`` and ``import resilient_aws.retry`` on top of
``import boto3``, each in a fresh interpreter with ``-X importtime``.

    python bench/retry_overhead.py [--calls 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.stub import Stubber

from resilient_aws.retry import RetryPolicy

RESPONSE = {"Item": {"pk": {"S": "k"}, "n": {"N": "1"}}}
PARAMS = {"TableName": "orders", "Key": {"pk": {"S": "k"}}}


def _stubbed_client(calls: int) -> tuple[Any, Stubber]:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    for _ in range(calls):
        stubber.add_response("get_item", RESPONSE, PARAMS)
    stubber.activate()
    return client, stubber


def _time(calls: int, run: Callable[[Any], object]) -> float:
    client, stubber = _stubbed_client(calls)
    start = time.perf_counter()
    for _ in range(calls):
        run(client)
    elapsed = time.perf_counter() - start
    stubber.deactivate()
    return elapsed / calls


def call_overhead(calls: int, rounds: int) -> tuple[float, float]:
    policy = RetryPolicy()
    bare: list[float] = []
    cored: list[float] = []
    for _ in range(rounds):  # interleaved so that drift hits both alike
        bare.append(_time(calls, lambda c: c.get_item(**PARAMS)))
        cored.append(_time(calls, lambda c: policy.call(c.get_item, **PARAMS)))
    return statistics.median(bare), statistics.median(cored)


def import_ms(statement: str, module: str, repeats: int = 7) -> float:
    """Median cumulative import time of ``module`` (µs in -X importtime) as ms."""
    samples = []
    pattern = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| {0,}" + re.escape(module) + r"$")
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        matches = [
            int(m.group(1)) for line in out.splitlines() if (m := pattern.search(line.rstrip()))
        ]
        samples.append(matches[-1] / 1000 if matches else 0.0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    bare, cored = call_overhead(args.calls, args.rounds)
    print(f"get_item via Stubber, {args.calls} calls x {args.rounds} rounds (median per call)")
    print(f"  bare client call        {bare * 1e6:8.1f} us")
    print(f"  through RetryPolicy.call {cored * 1e6:7.1f} us")
    print(f"  ratio                    {cored / bare:7.3f}x  (target <= 1.05x)")

    top = import_ms("import boto3; import resilient_aws", "resilient_aws")
    retry = import_ms("import boto3; import resilient_aws.retry", "resilient_aws.retry")
    print("import time on top of `import boto3` (median of 7 fresh interpreters)")
    print(f"  import resilient_aws        {top:6.2f} ms  (target <= 20 ms)")
    print(f"  import resilient_aws.retry  {retry:6.2f} ms  (tenacity included)")


if __name__ == "__main__":
    main()
