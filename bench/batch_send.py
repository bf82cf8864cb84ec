"""SqsSender throughput and client CPU against plain ``send_message_batch`` calls, in one run.

a. ``--messages`` SQS messages (JSON bodies of ~200 bytes) through a latency proxy
   (``bench/_proxy.py``, ``--delay-ms`` per request) in front of a moto server:
   ``SqsSender(concurrency=8)`` vs a sequential loop of ``send_message_batch`` (10 per call);
b. the server's ceiling: raw ``send_message_batch`` from 8 threads straight to moto (no proxy);
   SqsSender-through-proxy is printed as a share of it;
c. client CPU per entry (``time.process_time``) against botocore's ``Stubber`` (no server, no
   network): ``SqsSender(concurrency=1)`` vs SendMessageBatch requests built by hand, making the
   same stubbed calls; median of ``--rounds`` interleaved rounds.

moto 5's SQS rebuilds every queue attribute for each message it stores, scanning the queue
(O(n) per message), so each request goes to a fresh queue, created before the clock starts
(``SpreadSqsSender``). Even so moto spends ~10 ms of CPU per request: it, not the latency,
bounds (a); the table prints that bound. Every message is counted: successes, the proxy's request
counts, a sample of queues. ``--in-process`` runs moto as a thread of this process instead of
its own process (one GIL for client and server: it caps what concurrency gains).

    python bench/batch_send.py [--messages 20000] [--delay-ms 5] [--rounds 5] [--in-process]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import moto
from _proxy import LatencyProxy
from botocore.config import Config
from botocore.stub import Stubber

from resilient_aws.batch import SqsSender
from resilient_aws.testing import MotoServer
from resilient_aws.testing._moto import free_port

THREADS = 8
COUNT = "ApproximateNumberOfMessages"
CREDENTIALS: dict[str, Any] = {
    "region_name": "us-east-1",
    "aws_access_key_id": "x",
    "aws_secret_access_key": "x",
}
_prefixes = itertools.count(1)


class SpreadSqsSender(SqsSender):
    """An SqsSender whose n-th request goes to ``urls[n]`` (see the module docstring)."""

    def __init__(self, urls: list[str], **options: Any) -> None:
        super().__init__(urls[0], **options)
        self._urls, self._requests = urls, itertools.count()

    def _call(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        url = self._urls[next(self._requests)]
        response: dict[str, Any] = self.client.send_message_batch(QueueUrl=url, Entries=entries)
        return response


def make_bodies(count: int) -> list[str]:
    """Orders as JSON, ~200 bytes each."""
    order = '{{"order_id": "order-{:09d}", "customer": "customer-{:05d}", "amount": "{:.2f}", '
    order += '"currency": "EUR", "created": "2025-06-{:02d}T12:00:00Z", '
    order += '"items": [{{"sku": "sku-{:04d}", "qty": {}}}], "note": "deliver to the back door"}}'
    bodies = [
        order.format(i, i % 9973, i * 37 % 10**5 / 100, 1 + i % 28, i % 503, 1 + i % 5)
        for i in range(count)
    ]
    assert json.loads(bodies[-1])
    return bodies


@contextlib.contextmanager
def moto_server(
    in_process: bool, *, python_code: str | None = None
) -> Iterator[tuple[str, int | None]]:
    """(endpoint url, server pid or None when it runs in this process).

    ``python_code`` (with a ``{port}`` placeholder) replaces ``python -m moto.server`` for a
    server that needs set-up in its own process first.
    """
    if in_process:
        with MotoServer() as server:
            yield server.endpoint_url, None
        return
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    if python_code is not None:
        cmd = [sys.executable, "-c", python_code.format(port=port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the moto server did not start")
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # moto can be busy long after SIGTERM: do not leak it
            proc.kill()
            proc.wait()


def sqs(endpoint: str) -> Any:
    config = Config(max_pool_connections=2 * THREADS)
    return boto3.client("sqs", endpoint_url=endpoint, config=config, **CREDENTIALS)


def make_queues(client: Any, count: int) -> list[str]:
    names = [f"bench{next(_prefixes)}-{i:05d}" for i in range(count)]
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda n: client.create_queue(QueueName=n)["QueueUrl"], names))


def send_chunk(client: Any, url: str, chunk: list[str]) -> int:
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
    response = client.send_message_batch(QueueUrl=url, Entries=entries)
    if response.get("Failed"):
        raise RuntimeError(f"failed entries: {response['Failed']}")
    return len(response["Successful"])


def run_loop(client: Any, urls: list[str], bodies: list[str]) -> int:
    return sum(send_chunk(client, url, bodies[10 * i : 10 * i + 10]) for i, url in enumerate(urls))


def run_threads(client: Any, urls: list[str], bodies: list[str]) -> int:
    requests = itertools.count()

    def worker() -> int:
        sent = 0
        while (i := next(requests)) < len(urls):
            sent += send_chunk(client, urls[i], bodies[10 * i : 10 * i + 10])
        return sent

    with ThreadPoolExecutor(THREADS) as pool:
        return sum(f.result() for f in [pool.submit(worker) for _ in range(THREADS)])


def fill(sender: SqsSender, bodies: list[str]) -> int:
    with sender:
        for body in bodies:
            sender.send_message(body)
    return sender.result.succeeded


def run_sender(client: Any, urls: list[str], bodies: list[str]) -> int:
    return fill(SpreadSqsSender(urls, client=client, concurrency=THREADS), bodies)


def cpu_of(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (Linux /proc; 0.0 elsewhere or for None)."""
    with contextlib.suppress(OSError):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def measure(name: str, run: Callable[[], int], expected: int, server: int | None) -> dict[str, Any]:
    wall, cpu, srv = time.perf_counter(), time.process_time(), cpu_of(server)
    if (sent := run()) != expected:
        raise SystemExit(f"{name}: {sent} messages sent, expected {expected}")
    wall, cpu, srv = time.perf_counter() - wall, time.process_time() - cpu, cpu_of(server) - srv
    return {"name": name, "wall": wall, "rate": sent / wall, "cpu": cpu, "srv": srv}


def check_queues(client: Any, urls: list[str]) -> int:
    sample = urls[:: max(1, len(urls) // 25)]
    for url in sample:
        answer = client.get_queue_attributes(QueueUrl=url, AttributeNames=[COUNT])
        if (held := answer["Attributes"][COUNT]) != "10":
            raise SystemExit(f"{url} holds {held} messages, not 10")
    return len(sample)


def stubbed_cpu(bodies: list[str], hand_built: bool) -> float:
    """CPU seconds per entry of sending ``bodies`` through a Stubber-backed client."""
    client = boto3.client("sqs", **CREDENTIALS)
    stubber = Stubber(client)
    for i in range(0, len(bodies), 10):
        ok = [{"Id": str(j), "MessageId": f"m{i + j}", "MD5OfMessageBody": "0"} for j in range(10)]
        stubber.add_response("send_message_batch", {"Successful": ok, "Failed": []})
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    with stubber:
        cpu = time.process_time()
        if hand_built:
            sent = run_loop(client, [url] * (len(bodies) // 10), bodies)
        else:
            sent = fill(SqsSender(url, client=client, concurrency=1), bodies)
        cpu = time.process_time() - cpu
        stubber.assert_no_pending_responses()  # both sides made every stubbed call, no more
    if sent != len(bodies):
        raise SystemExit(f"stubbed run sent {sent} of {len(bodies)}")
    return cpu / len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="a multiple of 10")
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (c)")
    parser.add_argument("--in-process", action="store_true", help="moto as a thread in here")
    args = parser.parse_args()
    if args.messages <= 0 or args.messages % 10:
        parser.error("--messages must be a positive multiple of 10")
    n, requests = args.messages, args.messages // 10
    t0, load0 = time.perf_counter(), os.getloadavg()
    bodies = make_bodies(n)
    where = "a thread of this process (one GIL)" if args.in_process else "its own process"
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{n:,} messages of {sum(map(len, bodies)) / n:.0f} bytes on average (JSON), sent as")
    print(f"{requests:,} requests of 10, one fresh queue each; moto {moto.__version__} server in")
    print(f"{where}; latency proxy (+{args.delay_ms:g} ms per request) in its own process")

    rows: list[dict[str, Any]] = []
    checked = 0
    with moto_server(args.in_process) as (endpoint, pid):
        direct = sqs(endpoint)
        with LatencyProxy(endpoint, delay=args.delay_ms / 1000) as proxy:
            proxied = sqs(proxy.endpoint_url)
            for name, run in (
                ("(a) plain loop, sequential, via proxy", run_loop),
                (f"(a) SqsSender(concurrency={THREADS}), via proxy", run_sender),
            ):
                urls = make_queues(direct, requests)
                proxy.stats(reset=True)
                rows.append(measure(name, functools.partial(run, proxied, urls, bodies), n, pid))
                seen = proxy.stats().get("SendMessageBatch", {}).get("requests", 0)
                if seen != requests:
                    raise SystemExit(f"{name}: the proxy saw {seen} requests, not {requests}")
                checked += check_queues(direct, urls)
        urls = make_queues(direct, requests)
        name = f"(b) raw send_message_batch, {THREADS} threads, direct"
        rows.append(measure(name, functools.partial(run_threads, direct, urls, bodies), n, pid))
        checked += check_queues(direct, urls)

    print(f"\n{'':46} {'time':>7} {'msg/s':>6} {'client CPU/msg':>14} {'server CPU/req':>14}")
    for r in rows:
        server = f"{r['srv'] / requests * 1e3:11.2f} ms" if pid else "      (shared)"
        client = f"{r['cpu'] / n * 1e6:11.1f} us"
        print(f"{r['name']:46} {r['wall']:6.2f}s {r['rate']:6,.0f} {client} {server}")
    loop, sender, ceiling = (r["rate"] for r in rows)
    print(f"(a) SqsSender / plain loop                {sender / loop:6.2f}x  (target >= 3x)")
    print(f"    bound set by this server: ceiling / loop {ceiling / loop:4.2f}x")
    print(f"(b) SqsSender via proxy / server ceiling  {sender / ceiling:6.0%}   (target >= 75%)")
    print(f"    checked: all {n:,} sent per scenario, proxy request counts, {checked} queues")

    hand: list[float] = []
    ours: list[float] = []
    for _ in range(args.rounds):  # interleaved so that drift hits both alike
        hand.append(stubbed_cpu(bodies, hand_built=True))
        ours.append(stubbed_cpu(bodies, hand_built=False))
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"\n(c) client CPU per entry, Stubber, median of {args.rounds} rounds of {n:,} (min)")
    print(f"    hand-built SendMessageBatch requests  {h * 1e6:6.1f} us ({min(hand) * 1e6:.1f})")
    print(f"    SqsSender(concurrency=1)              {o * 1e6:6.1f} us ({min(ours) * 1e6:.1f})")
    ratio = f"{o / h:6.2f}x ({min(ours) / min(hand):.2f}x)"
    print(f"    ratio                                 {ratio}  (target <= 1.15x)")
    load1 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    elapsed = time.perf_counter() - t0
    print(f"\nrun time {elapsed:.0f} s; load average {load0[0]:.2f} at start, {load1} at end")


if __name__ == "__main__":
    main()
