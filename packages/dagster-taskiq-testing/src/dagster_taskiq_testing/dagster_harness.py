"""Run your own Dagster jobs through ``taskiq_executor`` in a test, with no network.

``InProcessTaskIQ`` gives a test everything a real deployment has, in one process: a Dagster
instance on a temporary SQLite home, the SQLite idempotency store, the ``memory`` broker backend
(the real SQS broker on the in-memory stub, with its visibility timeouts, FIFO groups and
deduplication) and in-process ``dagster-taskiq`` workers on threads. Your job keeps
``executor_def=taskiq_executor``; the harness only supplies the executor's run config.

    def test_my_job(dagster_taskiq):
        with dagster_taskiq(modules=["my_project.jobs"]) as taskiq:
            result = taskiq.execute(my_job)
            assert result.success

Jobs must be reconstructable (defined at module level) and their module importable, as for any
multi-process executor.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import tempfile
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dagster import (
    DagsterInstance,
    JobDefinition,
    reconstructable,
)
from dagster import (
    execute_job as dagster_execute_job,
)

from dagster_taskiq import MessageVerifier, Refusal, SigningKey, SqlIdempotencyStore
from dagster_taskiq.backends import create_broker
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.worker import StepRunner, Worker, WorkerOptions

__all__ = ["InProcessTaskIQ", "WorkerThreads"]


class WorkerThreads:
    """Run ``workers`` on their own threads and event loops until the context exits."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = list(workers)
        self._running: list[tuple[asyncio.AbstractEventLoop, asyncio.Event, threading.Thread]] = []

    def __enter__(self) -> WorkerThreads:
        for n, worker in enumerate(self.workers):
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            thread = threading.Thread(
                target=loop.run_until_complete,
                args=(worker.run(stop),),
                name=f"dagster-taskiq-test-worker-{n}",
                daemon=True,
            )
            thread.start()
            self._running.append((loop, stop, thread))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for loop, stop, _ in self._running:
            loop.call_soon_threadsafe(stop.set)
        for loop, _, thread in self._running:
            thread.join(timeout=60)
            if not thread.is_alive():
                loop.close()
        self._running.clear()

    @property
    def processed(self) -> int:
        """Messages the workers handled to their end."""
        return sum(w.processed for w in self.workers)


@dataclasses.dataclass
class InProcessTaskIQ:
    """A Dagster instance, a store, the ``memory`` broker and in-process workers for tests.

    ``modules`` / ``python_files`` are the code locations the workers serve (payloads naming
    any other code are refused, as in production).
    """

    modules: Sequence[str] = ()
    python_files: Sequence[str] = ()
    workers: int = 2
    concurrency: int = 2
    visibility_timeout: float = 30.0
    directory: Path | None = None
    broker_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    signing_key: str | None = None
    """``KEY_ID:SECRET``: the executor signs each step message with it and the workers refuse
    what it did not sign (``docs/security.md``). None: messages are not signed."""

    def __post_init__(self) -> None:
        if not self.modules and not self.python_files:
            raise ValueError(
                "name the code the workers serve: InProcessTaskIQ(modules=[...]) or "
                "python_files=[...]"
            )
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.queue_name = f"dagster-taskiq-test-{uuid.uuid4().hex[:12]}.fifo"
        self._threads: WorkerThreads | None = None
        self.instance: DagsterInstance | None = None
        self.store: SqlIdempotencyStore | None = None

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self._root / 'idempotency.db'}"

    @property
    def _root(self) -> Path:
        if self.directory is not None:
            return self.directory
        assert self._tmp is not None, "use InProcessTaskIQ as a context manager"
        return Path(self._tmp.name)

    def settings(self) -> dict[str, Any]:
        """The ``memory`` backend's settings: this harness's own queue."""
        return {
            "queue_name": self.queue_name,
            "create_queues_if_missing": True,
            "wait_time_seconds": 1,
            "visibility_timeout": int(self.visibility_timeout),
            **self.broker_settings,
        }

    def run_config(self, run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``run_config`` plus the executor config that points ``taskiq_executor`` here."""
        merged = dict(run_config or {})
        merged["execution"] = {
            "config": {
                "broker": {"backend": "memory", "settings": self.settings()},
                "store_url": self.store_url,
                "visibility_timeout": self.visibility_timeout,
                "poll_interval": 0.2,
                **({"signing_key": self.signing_key} if self.signing_key else {}),
            }
        }
        return merged

    def __enter__(self) -> InProcessTaskIQ:
        if self.directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dagster-taskiq-test-")
        home = self._root / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        self.instance = DagsterInstance.local_temp(str(home))
        self.store = SqlIdempotencyStore(self.store_url)
        locations = CodeLocations(
            [CodeLocation(module=m) for m in self.modules]
            + [CodeLocation(python_file=f) for f in self.python_files]
        )
        verifier = (
            MessageVerifier([SigningKey.parse(self.signing_key, source="signing_key")])
            if self.signing_key
            else None
        )
        workers = [
            Worker(
                create_broker("memory", self.settings()),
                self.store,
                StepRunner(locations),
                WorkerOptions(
                    concurrency=self.concurrency,
                    visibility_timeout=self.visibility_timeout,
                    worker_id=f"test-worker-{n}",
                ),
                verifier=verifier,
            )
            for n in range(self.workers)
        ]
        self._threads = WorkerThreads(workers).__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._threads is not None:
            self._threads.__exit__(exc_type, exc, tb)
        if self.store is not None:
            self.store.close()
        if self.instance is not None:
            self.instance.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()

    def execute(
        self,
        job: JobDefinition | Any,
        *,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        raise_on_error: bool = False,
    ) -> Any:
        """Run ``job`` (a module-level job, or a function returning one) on the workers.

        Returns Dagster's ``JobExecutionResult``, already closed: read events and step
        outcomes from it, and outputs through your IO manager or ``execute_job`` itself.
        """
        assert self.instance is not None, "use InProcessTaskIQ as a context manager"
        with dagster_execute_job(
            reconstructable(job),
            instance=self.instance,
            run_config=self.run_config(run_config),
            tags=dict(tags or {}),
            raise_on_error=raise_on_error,
        ) as result:
            return result

    @property
    def processed(self) -> int:
        return 0 if self._threads is None else self._threads.processed

    @property
    def refused(self) -> collections.Counter[Refusal]:
        """Messages the workers refused (signature check), by reason."""
        total: collections.Counter[Refusal] = collections.Counter()
        for worker in [] if self._threads is None else self._threads.workers:
            total.update(worker.refused)
        return total

    def records(self, run_id: str) -> Iterable[Any]:
        """The idempotency records of a run (one per executed step)."""
        assert self.store is not None
        return self.store.records_for_run(run_id)
