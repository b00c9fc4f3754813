"""Real ``dagster-taskiq worker`` processes for integration tests, over a real SQS server."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import job_shapes

TESTS_DIR = str(Path(job_shapes.__file__).parent)


@dataclasses.dataclass
class SqsTarget:
    """One queue (and its DLQ) on a real SQS server, as executor and workers both see it."""

    endpoint_url: str
    queue_name: str = dataclasses.field(
        default_factory=lambda: f"steps-{uuid.uuid4().hex[:10]}.fifo"
    )
    visibility_timeout: int = 5
    max_receive_count: int = 5
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def broker_settings(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint_url,
            "queue_name": self.queue_name,
            "create_queues_if_missing": True,
            "taskiq_visibility_timeout": self.visibility_timeout,
            "max_receive_count": self.max_receive_count,
            "wait_time_seconds": 1,
            "retry_timeout": 20.0,
            **self.extra,
        }

    def run_config(self, store_url: str, **executor: Any) -> dict[str, Any]:
        return {
            "execution": {
                "config": {
                    "broker": {"backend": "sqs", "settings": self.broker_settings()},
                    "store_url": store_url,
                    "taskiq_visibility_timeout": float(self.visibility_timeout),
                    "poll_interval": 0.2,
                    **executor,
                }
            }
        }


class WorkerProcesses:
    """``count`` worker processes; a supervisor restarts any that die (if ``restart``)."""

    def __init__(
        self,
        target: SqsTarget,
        store_url: str,
        env: dict[str, str],
        *,
        count: int = 2,
        concurrency: int = 2,
        restart: bool = True,
        log_dir: Path,
        modules: tuple[str, ...] = ("job_shapes",),
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
        command = [sys.executable, "-m", "dagster_taskiq.cli", "worker", "--backend", "sqs"]
        for key, value in self.target.broker_settings().items():
            command += ["--broker-setting", f"{key}={json.dumps(value).strip(chr(34))}"]
        return [
            *command,
            "--store-url",
            self.store_url,
            *(arg for module in self.modules for arg in ("-m", module)),
            "--concurrency",
            str(self.concurrency),
            "--visibility-timeout",
            str(self.target.visibility_timeout),
            "--heartbeat-interval",
            str(self.target.visibility_timeout / 3),
            "--grace-period",
            str(self.grace_period),
            "--log-format",
            "json",
            *self.extra_args,
        ]

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
