"""Stub vs real SQS server: send+receive+delete round trips per second, and the ratio.

    uv run nox -s bench -- stub [--seconds S] [--localstack]

The stub runs on one thread with its default settings (real clock, call log on); moto's
server runs in its own process on a loopback port and is driven by boto3. ``--localstack`` adds
LocalStack (builds its cached env if needed). Aim: the stub >= 20,000 round trips/s and >= 50x
the real server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import ConditionsWatch
from dagster_taskiq_testing import InMemorySqs
from dagster_taskiq_testing.servers import LocalStackServer, MotoProcessServer

STUB_TARGET = 20_000.0
RATIO_TARGET = 50.0


def _round_trip(sqs: Any, url: str) -> None:
    sqs.send_message(QueueUrl=url, MessageBody='{"step": "bench"}')
    message = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def measure(sqs: Any, url: str, seconds: float) -> tuple[float, float, int]:
    """(round trips per second, p50 latency in ms, round trips done) over ~``seconds``."""
    for _ in range(20):  # warm up
        _round_trip(sqs, url)
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    clock: Callable[[], float] = time.perf_counter
    while True:
        before = clock()
        _round_trip(sqs, url)
        after = clock()
        latencies.append(after - before)
        if after >= deadline:
            break
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, len(latencies)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench stub", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per backend")
    parser.add_argument("--localstack", action="store_true", help="also measure LocalStack")
    args = parser.parse_args(argv)

    watch = ConditionsWatch.settle()
    rows: list[tuple[str, float, float, int]] = []
    stub = InMemorySqs()
    stub_client = stub.client()
    url = stub_client.create_queue(QueueName="bench")["QueueUrl"]
    rows.append(("stub (1 thread)", *measure(stub_client, url, args.seconds)))

    servers: list[Any] = [MotoProcessServer()]
    if args.localstack:
        servers.append(LocalStackServer())
    for server in servers:
        server.start()
        try:
            client = server.client()
            server_url = client.create_queue(QueueName="bench")["QueueUrl"]
            rows.append((f"{server.name} server", *measure(client, server_url, args.seconds)))
        finally:
            server.stop()

    print(f"{'backend':<18} {'round trips/s':>14} {'p50 ms':>9} {'n':>8}")
    for name, rate, p50, count in rows:
        print(f"{name:<18} {rate:>14,.0f} {p50:>9.3f} {count:>8}")
    stub_rate = rows[0][1]
    for name, rate, _p50, _count in rows[1:]:
        print(f"ratio stub / {name}: {stub_rate / rate:,.0f}x")
    ratio = stub_rate / rows[1][1]
    ok = stub_rate >= STUB_TARGET and ratio >= RATIO_TARGET
    print(
        f"targets: stub >= {STUB_TARGET:,.0f}/s and >= {RATIO_TARGET:.0f}x moto: "
        + ("met" if ok else "NOT met")
    )
    for line in watch.stop().lines():
        print(line)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
