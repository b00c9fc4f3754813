"""Real ``dagster-taskiq worker`` processes for integration tests, over a real broker.

A *target* is one queue of one backend as the executor and the workers both see it:
``SqsTarget`` (a real SQS server), ``RedisTarget`` (a stream on the local Redis),
``NatsTarget`` (a JetStream stream on the local NATS) and ``RabbitMqTarget`` (a quorum queue on
the local RabbitMQ). Each gives ``backend``,
``broker_settings()``, ``run_config(store_url)``, ``visibility_timeout``, ``depth()`` (messages
not yet acked) and ``cleanup()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dagster_taskiq.cli import worker_command
from dagster_taskiq_testing.servers._base import unacked_messages
from support import TESTS_DIR

REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
NATS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get(
    "DAGSTER_TASKIQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)


def _unavailable(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@dataclasses.dataclass(kw_only=True)
class Target:
    """What every target shares: its delivery settings, its executor config, and the acts each
    backend does its own way (:meth:`transport`, :meth:`require`, :meth:`depth`,
    :meth:`cleanup`)."""

    backend: ClassVar[str]
    visibility_timeout: int = 5
    max_receive_count: int = 5
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def transport(self) -> dict[str, Any]:
        """The backend's own settings: where its queue is."""
        raise NotImplementedError

    def broker_settings(self) -> dict[str, Any]:
        """The transport's settings, then the delivery settings every target shares, then the
        ``extra`` overrides."""
        return {
            **self.transport(),
            "visibility_timeout": self.visibility_timeout,
            "max_deliveries": self.max_receive_count,
            "retry_timeout": 20.0,
            **self.extra,
        }

    def run_config(self, store_url: str, **executor: Any) -> dict[str, Any]:
        return {
            "execution": {
                "config": {
                    "broker": {"backend": self.backend, "settings": self.broker_settings()},
                    "store_url": store_url,
                    "visibility_timeout": float(self.visibility_timeout),
                    "poll_interval": 0.2,
                    **executor,
                }
            }
        }

    def require(self) -> None:
        """Skip (or fail, in CI) when the backend's service is not reachable."""

    def depth(self) -> int:
        """Messages in the queue not yet acked."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Delete what the target made on its service."""


@dataclasses.dataclass(kw_only=True)
class SqsTarget(Target):
    """One queue (and its DLQ) on a real SQS server, as executor and workers both see it."""

    backend: ClassVar[str] = "sqs"
    endpoint_url: str
    queue_name: str = dataclasses.field(
        default_factory=lambda: f"steps-{uuid.uuid4().hex[:10]}.fifo"
    )

    def transport(self) -> dict[str, Any]:
        return dict(
            endpoint_url=self.endpoint_url,
            queue_name=self.queue_name,
            create_queues_if_missing=True,
            wait_time_seconds=1,
        )

    def require(self) -> None:
        """The sqs_server fixture starts (or skips) the server itself."""

    def depth(self) -> int:
        """Messages in the queue, visible or not."""
        return unacked_messages(self.endpoint_url, self.queue_name)

    def cleanup(self) -> None:
        """The server goes away with its fixture."""


@dataclasses.dataclass(kw_only=True)
class RedisTarget(Target):
    """One stream (and its dead-letter stream) on the local Redis."""

    backend: ClassVar[str] = "redis"
    url: str = REDIS_URL
    stream: str = dataclasses.field(default_factory=lambda: f"steps-{uuid.uuid4().hex[:10]}")

    def transport(self) -> dict[str, Any]:
        return dict(
            url=self.url,
            stream=self.stream,
            block_seconds=0.5,
        )

    def _client(self) -> Any:
        import redis  # noqa: PLC0415

        return redis.Redis.from_url(self.url, socket_connect_timeout=2)

    def require(self) -> None:
        try:
            self._client().ping()
        except Exception as exc:
            _unavailable(f"Redis is not reachable at {self.url}: {exc}")

    def depth(self) -> int:
        """Entries not yet acked (the broker deletes an entry when it acks it)."""
        return int(self._client().xlen(self.stream))

    def cleanup(self) -> None:
        client = self._client()
        client.delete(self.stream, f"{self.stream}-dlq", *client.keys(f"{self.stream}:*"))


@dataclasses.dataclass(kw_only=True)
class NatsTarget(Target):
    """One JetStream stream (and its dead-letter stream) on the local NATS."""

    backend: ClassVar[str] = "nats"
    servers: str = NATS_URL
    name: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def stream(self) -> str:
        return f"STEPS_{self.name}"

    def transport(self) -> dict[str, Any]:
        return dict(
            servers=self.servers,
            stream=self.stream,
            subject=f"steps.{self.name}",
            storage="memory",
            fetch_timeout=0.5,
        )

    def _js(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        import nats  # noqa: PLC0415

        async def run() -> Any:
            # nats-py retries the first connect max_reconnect_attempts times (default 60, 2 s
            # apart): without a limit an absent server takes two minutes to skip.
            client = await nats.connect(
                self.servers, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1
            )
            try:
                return await call(client.jetstream())
            finally:
                await client.close()

        return asyncio.run(run())

    def require(self) -> None:
        try:
            self._js(lambda js: js.account_info())
        except Exception as exc:
            _unavailable(f"NATS with JetStream is not reachable at {self.servers}: {exc!r}")

    def depth(self) -> int:
        """Messages not yet acked (work-queue retention removes a message when it is acked)."""

        async def messages(js: Any) -> int:
            return int((await js.stream_info(self.stream)).state.messages)

        return int(self._js(messages))

    def cleanup(self) -> None:
        async def delete(js: Any) -> None:
            for stream in (self.stream, f"{self.stream}_DLQ"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(stream)

        self._js(delete)


@dataclasses.dataclass(kw_only=True)
class RabbitMqTarget(Target):
    """One quorum queue (and its dead-letter queue) on the local RabbitMQ."""

    backend: ClassVar[str] = "rabbitmq"
    url: str = RABBITMQ_URL
    queue: str = dataclasses.field(default_factory=lambda: f"steps-{uuid.uuid4().hex[:10]}")

    def transport(self) -> dict[str, Any]:
        return dict(
            url=self.url,
            queue_name=self.queue,
            wait_time_seconds=0.5,
        )

    def _channel(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        import aio_pika  # noqa: PLC0415

        async def run() -> Any:
            connection = await aio_pika.connect(self.url, timeout=2)
            try:
                return await call(await connection.channel())
            finally:
                await connection.close()

        return asyncio.run(run())

    def require(self) -> None:
        try:
            self._channel(lambda channel: asyncio.sleep(0))
        except Exception as exc:
            _unavailable(f"RabbitMQ is not reachable at {self.url}: {exc!r}")

    def depth(self) -> int:
        """Messages not yet acked, ready or held by a consumer. AMQP tells only the ready ones,
        so the count is ``rabbitmqctl``'s (the local node's CLI, as root)."""
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "messages"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        for line in listed.splitlines():
            name, _, messages = line.partition("\t")
            if name == self.queue:
                return int(messages)
        return 0

    def cleanup(self) -> None:
        async def delete(channel: Any) -> None:
            for queue in (self.queue, f"{self.queue}-dlq"):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)

        self._channel(delete)


Target = SqsTarget | RedisTarget | NatsTarget | RabbitMqTarget


class WorkerProcesses:
    """``count`` worker processes; a supervisor restarts any that die (if ``restart``)."""

    def __init__(
        self,
        target: Target,
        store_url: str,
        env: dict[str, str],
        *,
        count: int = 2,
        concurrency: int = 2,
        restart: bool = True,
        log_dir: Path,
        modules: tuple[str, ...] = ("support.job_shapes",),
        grace_period: float = 5.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.target = target
        self.store_url = store_url
        self.env = {
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]),
        }
        self.count = count
        self.concurrency = concurrency
        self.restart = restart
        self.log_dir = log_dir
        self.modules = modules
        self.grace_period = grace_period
        self.extra_args = extra_args
        self.processes: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.exit_codes: list[int] = []
        """Exit codes of the workers the supervisor replaced (-9: SIGKILL, 0: clean stop)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def _command(self) -> list[str]:
        return worker_command(
            backend=self.target.backend,
            broker_settings=self.target.broker_settings(),
            store_url=self.store_url,
            code=[arg for module in self.modules for arg in ("-m", module)],
            concurrency=self.concurrency,
            visibility_timeout=self.target.visibility_timeout,
            grace_period=self.grace_period,
            extra=(
                "--heartbeat-interval",
                str(self.target.visibility_timeout / 3),
                *self.extra_args,
            ),
        )

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.log_dir / f"worker-{self.started}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(self._command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def __enter__(self) -> WorkerProcesses:
        self.processes = [self._spawn() for _ in range(self.count)]
        self._supervisor.start()
        return self

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            if not self.restart:
                continue
            with self._lock:
                for i, process in enumerate(self.processes):
                    if process.poll() is not None:
                        self.exit_codes.append(process.returncode)
                        self.processes[i] = self._spawn()

    @property
    def pids(self) -> list[int]:
        """Pids of the worker processes alive now."""
        with self._lock:
            return [p.pid for p in self.processes if p.poll() is None]

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        os.kill(pid, sig)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._supervisor.join(5)
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob("worker-*.log")))


def ledger_lines(directory: Path, run_id: str) -> list[list[str]]:
    path = directory / f"{run_id}.ledger"
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line]


@dataclasses.dataclass
class OneWorker:
    """A Dagster instance, a SQLite store, a fresh queue of an SQS server and one worker
    process on it (restarted when it exits), all under one directory: :func:`one_sqs_worker`."""

    instance: Any
    target: SqsTarget
    store_url: str
    workers: WorkerProcesses

    def run(self, job: Any) -> Any:
        """Run ``job`` (a ``job_shapes`` job) on the worker; its ``RunReport``."""
        from dagster_taskiq import SqlIdempotencyStore  # noqa: PLC0415
        from support.executor_harness import run_job  # noqa: PLC0415 - imports Dagster's job

        store = SqlIdempotencyStore(self.store_url)
        try:
            return run_job(
                job, self.instance, store, run_config=self.target.run_config(self.store_url)
            )
        finally:
            store.close()


@contextlib.contextmanager
def one_sqs_worker(endpoint_url: str, root: Path, *extra_args: str) -> Iterator[OneWorker]:
    """:class:`OneWorker` over the SQS server at ``endpoint_url``, in ``root``, the worker
    started with ``extra_args``."""
    from dagster import DagsterInstance  # noqa: PLC0415

    from support import job_shapes  # noqa: PLC0415

    for sub in ("home", "ledger", "logs"):
        (root / sub).mkdir()
    store_url = f"sqlite:///{root / 'store.db'}"
    target = SqsTarget(endpoint_url=endpoint_url, visibility_timeout=10)
    env = {job_shapes.LEDGER_ENV: str(root / "ledger")}
    with (
        DagsterInstance.local_temp(str(root / "home")) as instance,
        WorkerProcesses(
            target, store_url, env, count=1, log_dir=root / "logs", extra_args=extra_args
        ) as workers,
    ):
        yield OneWorker(instance, target, store_url, workers)
