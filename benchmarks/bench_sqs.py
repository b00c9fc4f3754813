"""LocalStackSqsBroker vs a bare aioboto3 loop: messages per second through SQS, and the ratio.

    uv run nox -s bench -- sqs [--messages N] [--rounds R] [--concurrency C] [--in-process]

All paths run against moto's server (its own process on a loopback port, as SQS is remote;
with ``--in-process`` in this process, where it competes with the client for the GIL), each
round on a fresh FIFO queue, N messages per round, rounds interleaved (median reported). In each
round the consumer runs while the N messages are sent (C sends in flight); a round ends when the
last message is deleted.

* bare: aioboto3 directly, two clients (a sender's and a consumer's): ``send_message`` with its
  own group and deduplication id, ``receive_message`` (10, long poll) and a ``delete_message``
  per message started as soon as its batch arrives;
* broker: N no-op TaskIQ tasks sent with ``kiq`` through one ``LocalStackSqsBroker`` (the
  executor's side) and run by taskiq's own ``Receiver`` on a second one (a worker), which acks
  (deletes) each after running it; ``max_messages=10``, once with ``receive_ahead=true`` (the
  setting for short tasks) and once without (the default, for long Dagster steps).

moto's FIFO queues get slower as messages pile up, so a consumer that falls behind is punished
beyond its own cost; the ratio compares paths under the same conditions. structlog is set to
INFO, as a worker runs (the broker's per-message events are DEBUG). Aim: the broker at >= 0.7x
the bare client's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aioboto3
import structlog
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from dagster_taskiq_sqs import LocalStackSqsBroker, SqsSettings
from dagster_taskiq_sqs.client import aiobotocore_client_factory
from dagster_taskiq_testing.servers import MotoServer

RATIO_TARGET = 0.7
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


class _CountingClient:
    """The broker's client with its completed deletes counted (how a round knows it is over)."""

    def __init__(self, client: Any, done: _Counter) -> None:
        self._client = client
        self._done = done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def delete_message(self, **kwargs: Any) -> Any:
        response = await self._client.delete_message(**kwargs)
        self._done.add()
        return response


class _Counter:
    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.reached = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.reached.set()


def _settings(endpoint: str, queue: str, *, receive_ahead: bool) -> SqsSettings:
    return SqsSettings(
        receive_ahead=receive_ahead,
        queue_name=queue,
        endpoint_url=endpoint,
        region=REGION,
        create_queues_if_missing=True,
        max_messages=10,
        wait_time_seconds=1,
        visibility_timeout=60,
        **CREDENTIALS,
    )


@dataclasses.dataclass(frozen=True)
class Timing:
    """One round: N messages sent (C at a time) while a consumer receives, runs, deletes them."""

    messages: int
    send: float
    """Seconds until every send returned."""
    consume: float
    """Seconds from then until the last delete."""

    @property
    def rate(self) -> float:
        """End to end: messages per second from the first send to the last delete."""
        return self.messages / (self.send + self.consume)

    @property
    def send_rate(self) -> float:
        return self.messages / self.send


async def _broker_round(
    endpoint: str, messages: int, concurrency: int, *, receive_ahead: bool
) -> Timing:
    queue = f"bench-broker-{uuid.uuid4().hex[:8]}.fifo"
    settings = _settings(endpoint, queue, receive_ahead=receive_ahead)
    deleted = _Counter(messages)
    aiobotocore = aiobotocore_client_factory(settings)

    class _Counting:
        async def __aenter__(self) -> Any:
            self._context = aiobotocore()
            return _CountingClient(await self._context.__aenter__(), deleted)

        async def __aexit__(self, *exc: object) -> None:
            await self._context.__aexit__(*exc)

    sender = LocalStackSqsBroker(settings)
    worker = LocalStackSqsBroker(settings, client_factory=_Counting)

    @worker.task(task_name="bench.noop")
    async def noop(number: int) -> None:
        return None

    kicker: AsyncKicker[[int], None] = AsyncKicker(task_name="bench.noop", broker=sender, labels={})
    await sender.startup()
    await worker.startup()
    limit = asyncio.Semaphore(concurrency)

    async def send(number: int) -> None:
        async with limit:
            await kicker.kiq(number)

    finish = asyncio.Event()
    receiver = Receiver(worker, run_startup=False, max_async_tasks=100)
    listening = asyncio.create_task(receiver.listen(finish))
    started = time.perf_counter()
    await asyncio.gather(*(send(n) for n in range(messages)))
    sent = time.perf_counter()
    await asyncio.wait_for(deleted.reached.wait(), 120)
    done = time.perf_counter()
    finish.set()
    await asyncio.wait_for(listening, 30)
    await sender.shutdown()
    await worker.shutdown()
    return Timing(messages, send=sent - started, consume=done - sent)


async def _bare_round(endpoint: str, messages: int, concurrency: int, body: str) -> Timing:
    session = aioboto3.Session()
    # Two clients, as the broker path has two brokers: the sender's and the worker's.
    async with (
        session.client("sqs", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS) as sender,
        session.client("sqs", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS) as sqs,
    ):
        name = f"bench-bare-{uuid.uuid4().hex[:8]}.fifo"
        url = (await sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"}))["QueueUrl"]
        deleted = _Counter(messages)
        limit = asyncio.Semaphore(concurrency)

        async def send(number: int) -> None:
            async with limit:
                ident = uuid.uuid4().hex
                await sender.send_message(
                    QueueUrl=url,
                    MessageBody=body,
                    MessageGroupId=ident,
                    MessageDeduplicationId=ident,
                )

        async def delete(handle: str) -> None:
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
            deleted.add()

        async def consume() -> None:
            deletes: set[asyncio.Task[None]] = set()
            while not deleted.reached.is_set():
                response = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                for message in response.get("Messages", []):
                    task = asyncio.create_task(delete(message["ReceiptHandle"]))
                    deletes.add(task)
                    task.add_done_callback(deletes.discard)

        consumer = asyncio.create_task(consume())
        started = time.perf_counter()
        await asyncio.gather(*(send(n) for n in range(messages)))
        sent = time.perf_counter()
        await asyncio.wait_for(deleted.reached.wait(), 120)
        done = time.perf_counter()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        return Timing(messages, send=sent - started, consume=done - sent)


def _task_body() -> str:
    """A body of the size the broker sends for ``noop(n)`` (a TaskIQ JSON message)."""
    return (
        '{"task_id":"' + uuid.uuid4().hex + '","task_name":"bench.noop","labels":{},'
        '"labels_types":{},"args":[1],"kwargs":{}}'
    )


@contextlib.contextmanager
def _moto(in_process: bool) -> Iterator[str]:
    """moto's server, in this process or as ``python -m moto.server``; yields its endpoint."""
    if in_process:
        server = MotoServer().start()
        try:
            yield server.endpoint_url
        finally:
            server.stop()
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


PATHS = {
    "bare aioboto3 send/receive/delete": None,
    "broker, receive_ahead=true": True,
    "broker, defaults": False,
}


async def _round(endpoint: str, path: str, messages: int, concurrency: int) -> Timing:
    receive_ahead = PATHS[path]
    if receive_ahead is None:
        return await _bare_round(endpoint, messages, concurrency, _task_body())
    return await _broker_round(endpoint, messages, concurrency, receive_ahead=receive_ahead)


async def _run(
    endpoint: str, messages: int, rounds: int, concurrency: int
) -> dict[str, list[Timing]]:
    for path in PATHS:  # warm up every path
        await _round(endpoint, path, 50, concurrency)
    timings: dict[str, list[Timing]] = {path: [] for path in PATHS}
    for _ in range(rounds):
        for path in PATHS:
            timings[path].append(await _round(endpoint, path, messages, concurrency))
    return timings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench sqs", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--concurrency", type=int, default=10, help="sends in flight")
    parser.add_argument("--in-process", action="store_true", help="moto in this process")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    with _moto(args.in_process) as endpoint:
        timings = asyncio.run(_run(endpoint, args.messages, args.rounds, args.concurrency))
    where = "in this process" if args.in_process else "in its own process"
    print(
        f"SQS on moto's server ({where}), {args.messages} messages per round, "
        f"{args.rounds} rounds, {args.concurrency} sends in flight; messages/s, median of rounds"
    )
    print(f"{'path':<34} {'end to end':>10} {'sends':>7}   end-to-end by round")
    for path, runs in timings.items():
        print(
            f"{path:<34} {_median(runs, 'rate'):>10,.0f} {_median(runs, 'send_rate'):>7,.0f}   "
            + ", ".join(f"{t.rate:,.0f}" for t in runs)
        )
    bare = _median(timings["bare aioboto3 send/receive/delete"], "rate")
    ahead = _median(timings["broker, receive_ahead=true"], "rate") / bare
    default = _median(timings["broker, defaults"], "rate") / bare
    print(
        f"ratio broker / bare: {ahead:.2f}x with receive_ahead (aim >= {RATIO_TARGET}x: "
        + ("met" if ahead >= RATIO_TARGET else "NOT met")
        + f"), {default:.2f}x with the defaults"
    )
    return 0


def _median(timings: list[Timing], attribute: str) -> float:
    return statistics.median(getattr(t, attribute) for t in timings)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
