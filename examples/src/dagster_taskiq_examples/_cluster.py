"""What the demo starts: an SQS endpoint (unless one is given) and worker processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dagster_taskiq.cli import worker_command

CODE_LOCATION = "dagster_taskiq_examples.definitions"


@dataclasses.dataclass(frozen=True)
class DemoQueue:
    """The queue the run and the workers share, as settings of the ``sqs`` backend."""

    endpoint_url: str | None
    region: str
    queue_name: str = dataclasses.field(
        default_factory=lambda: f"dagster-taskiq-demo-{uuid.uuid4().hex[:8]}.fifo"
    )
    visibility_timeout: int = 30
    signing_key: str = dataclasses.field(
        default_factory=lambda: f"demo:{secrets.token_hex(32)}", repr=False
    )
    """The key the run signs its step messages with and the workers accept (a fresh one for
    each queue; the workers get it from their environment and refuse unsigned messages)."""

    def broker_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "queue_name": self.queue_name,
            "region": self.region,
            "create_queues_if_missing": True,
            "visibility_timeout": self.visibility_timeout,
            "wait_time_seconds": 1,
            "receive_ahead": True,
        }
        if self.endpoint_url:
            settings["endpoint_url"] = self.endpoint_url
        return settings


@contextlib.contextmanager
def sqs_endpoint(endpoint_url: str | None) -> Iterator[str]:
    """``endpoint_url``, or moto's SQS server started in this process for the demo."""
    if endpoint_url:
        yield endpoint_url
        return
    from dagster_taskiq_testing.servers import MotoServer  # noqa: PLC0415 - only when needed

    with MotoServer() as server:
        yield server.endpoint_url


class WorkerStartError(RuntimeError):
    """A demo worker process did not start."""


class WorkerPool:
    """``count`` ``dagster-taskiq worker`` processes serving the example code location."""

    def __init__(
        self,
        queue: DemoQueue,
        store_url: str,
        *,
        count: int,
        concurrency: int,
        log_dir: Path,
        code: tuple[str, ...] = ("-m", CODE_LOCATION),
    ) -> None:
        self.code = code
        """The code location the workers serve (``-m MODULE`` or ``-f FILE``)."""
        self.queue = queue
        self.store_url = store_url
        self.count = count
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def command(self) -> list[str]:
        return worker_command(
            backend="sqs",
            broker_settings=self.queue.broker_settings(),
            store_url=self.store_url,
            code=self.code,
            concurrency=self.concurrency,
            visibility_timeout=self.queue.visibility_timeout,
            grace_period=10,
            extra=("--require-signed",),
        )

    def environment(self) -> dict[str, str]:
        """The workers' environment: the signing key is passed here, not on the command line
        (which other users of the machine can read)."""
        return {**os.environ, "DAGSTER_TASKIQ_SIGNING_KEY": self.queue.signing_key}

    def __enter__(self) -> WorkerPool:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, self.count + 1):
            log = open(self.log_dir / f"worker-{n}.log", "wb")
            self._logs.append(log)
            self.processes.append(
                subprocess.Popen(  # noqa: S603
                    self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.environment()
                )
            )
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every worker has started its broker (logged ``worker_started``)."""
        deadline = time.monotonic() + timeout
        while True:
            ready = sum(
                '"worker_started"' in path.read_text(errors="replace")
                for path in self.log_dir.glob("worker-*.log")
            )
            if ready >= self.count:
                return
            if self.dead():
                raise WorkerStartError(f"a worker process exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise WorkerStartError(
                    f"{self.count - ready} of {self.count} workers not started after "
                    f"{timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def dead(self) -> list[int]:
        """Exit codes of workers that have exited."""
        return [code for p in self.processes if (code := p.poll()) is not None]

    def log_tail(self, lines: int = 20) -> str:
        tails = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(tails)

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
