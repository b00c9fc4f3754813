"""A cluster for chaos and load tests: a broker, fault proxies, PostgreSQL store, worker processes.

```
run process (this one, or a child)          worker processes (dagster-taskiq worker)
      |                                           |
      +---- broker proxy ---> moto (this process, a fixed port: restartable)      backend sqs
      |                   or  Redis 127.0.0.1:6379 (a stream of its own)          backend redis
      |                   or  NATS 127.0.0.1:4222 (a JetStream stream of its own) backend nats
      |                   or  RabbitMQ 127.0.0.1:5672 (a quorum queue of its own) backend rabbitmq
      +---- PostgreSQL proxy ---> 127.0.0.1:5432 (the store's tables, a prefix of their own)
ops ---------------------------------------------> PostgreSQL ledger (direct, never faulted)
```

Every proxy is a ``dagster_taskiq_testing.servers.EndpointProxy``: ``kill()`` closes the port
and resets every connection (an outage), ``start()`` serves again. On sqs an outage also stops
moto; Redis, NATS and RabbitMQ stay up behind their proxy (clients see the same reset connections
and refused connects). The chaos side (the duplicates fault, queue depth, clean-up) talks to
Redis, NATS and RabbitMQ directly, never through the proxy. The store's connections carry
an ``application_name`` of their own, so ``terminate_store_connections`` kills exactly them with
``pg_terminate_backend`` and nobody else's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from dagster import (
    DagsterInstance,
    DagsterRun,
    execute_job,
    reconstructable,
)

from chaos import jobs as chaos_jobs
from chaos.ledger import Ledger, RunCheck, check_run
from dagster_taskiq import OpExecutionTask, SqlIdempotencyStore, idempotency_key
from dagster_taskiq.backends import create_broker
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.executor._broker_thread import BrokerThread
from dagster_taskiq.instances import instance_ref_payload
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_testing.servers import EndpointProxy, MotoServer
from dagster_taskiq_testing.servers._base import free_port, unacked_messages
from support import TESTS_DIR
from support.executor_harness import wait_for_final_records
from support.store import POSTGRES_URL
from support.worker_processes import (
    NATS_URL,
    RABBITMQ_URL,
    REDIS_URL,
    NatsTarget,
    RabbitMqTarget,
    RedisTarget,
    SqsTarget,
    Target,
    WorkerProcesses,
)

BACKENDS = ("sqs", "redis", "nats", "rabbitmq")


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def _proxied_amqp(port: int) -> str:
    """``RABBITMQ_URL`` with its host and port replaced by the proxy's."""
    credentials = RABBITMQ_URL.split("//", 1)[1].split("@", 1)[0]
    return f"amqp://{credentials}@127.0.0.1:{port}/"


def direct_target(backend: str) -> Target:
    """A target on the real server (no proxy), e.g. to ``require()`` it before a cluster."""
    if backend == "redis":
        return RedisTarget(url=REDIS_URL)
    if backend == "nats":
        return NatsTarget(servers=NATS_URL)
    if backend == "rabbitmq":
        return RabbitMqTarget(url=RABBITMQ_URL)
    raise ValueError(f"no direct target for backend {backend!r}")


@dataclasses.dataclass
class RunResult:
    run_id: str
    success: bool
    check: RunCheck
    seconds: float


class Cluster:
    """Everything one chaos scenario (or a load test) runs on. Use as a context manager."""

    def __init__(
        self,
        root: Path,
        *,
        backend: str = "sqs",
        workers: int = 2,
        concurrency: int = 2,
        visibility_timeout: int = 3,
        max_receive_count: int = 10,
        grace_period: float = 1.0,
        retry_timeout: float = 30.0,
        start_workers: bool = True,
        store_password: str | None = None,
        worker_env: dict[str, str] | None = None,
        store_url_env: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")
        self.backend = backend
        self.root = root
        for sub in ("home", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.moto = MotoServer(free_port())
        self.broker_proxy = EndpointProxy(
            {
                "sqs": self.moto.port or 0,
                "redis": _port_of(REDIS_URL),
                "nats": _port_of(NATS_URL),
                "rabbitmq": _port_of(RABBITMQ_URL),
            }[backend]
        )
        self.sqs_proxy = self.broker_proxy
        """The broker's proxy under its historical name (whatever the backend)."""
        self.pg_proxy = EndpointProxy(5432)
        self.app_name = f"chaos_store_{uuid.uuid4().hex[:10]}"
        self.table_prefix = f"c{uuid.uuid4().hex[:10]}_"
        pg = POSTGRES_URL.replace("127.0.0.1:5432", f"127.0.0.1:{self.pg_proxy.port}")
        if store_password is not None:  # PostgreSQL trusts local users: any password works
            pg = pg.replace("postgres@", f"postgres:{store_password}@")
        self.store_url = f"{pg}?application_name={self.app_name}"
        self.target: Target
        if backend == "sqs":
            self.target = SqsTarget(
                endpoint_url=self.sqs_proxy.endpoint_url,
                visibility_timeout=visibility_timeout,
                max_receive_count=max_receive_count,
                extra={"retry_timeout": retry_timeout},
            )
        elif backend == "redis":
            self.target = RedisTarget(
                url=f"redis://127.0.0.1:{self.broker_proxy.port}",
                stream=f"chaos-{uuid.uuid4().hex[:10]}",
                visibility_timeout=visibility_timeout,
                max_receive_count=max_receive_count,
                extra={"retry_timeout": retry_timeout},
            )
        elif backend == "rabbitmq":
            self.target = RabbitMqTarget(
                url=_proxied_amqp(self.broker_proxy.port),
                queue=f"chaos-{uuid.uuid4().hex[:10]}",
                visibility_timeout=visibility_timeout,
                max_receive_count=max_receive_count,
                extra={"retry_timeout": retry_timeout},
            )
        else:
            self.target = NatsTarget(
                servers=f"nats://127.0.0.1:{self.broker_proxy.port}",
                name=f"chaos{uuid.uuid4().hex[:10]}",
                visibility_timeout=visibility_timeout,
                max_receive_count=max_receive_count,
                extra={"retry_timeout": retry_timeout},
            )
        self.worker_count = workers
        self.concurrency = concurrency
        self.grace_period = grace_period
        self.start_workers = start_workers
        self.worker_env = worker_env or {}
        self.store_url_env = store_url_env
        """If set, run config names the store URL by this environment variable (StringSource)."""
        self.ledger = Ledger()
        self._stack = contextlib.ExitStack()
        self.instance: DagsterInstance
        self.store: SqlIdempotencyStore
        self.workers: WorkerProcesses | None = None

    def __enter__(self) -> Cluster:
        if self.backend == "sqs":
            self.moto.start()
        self.sqs_proxy.start()
        self.pg_proxy.start()
        self._stack.callback(self.ledger.drop)
        if self.backend == "sqs":
            self._stack.callback(self.moto.stop)
        else:
            self._stack.callback(self.direct_target().cleanup)
        self._stack.callback(self.sqs_proxy.kill)
        self._stack.callback(self.pg_proxy.kill)
        self.instance = self._stack.enter_context(
            DagsterInstance.local_temp(str(self.root / "home"))
        )
        self.store = SqlIdempotencyStore(
            self.store_url,
            table_prefix=self.table_prefix,
            retry=RetryBudget(
                attempts=100, initial_delay=0.05, max_delay=1.0, timeout=60, jitter=0.25
            ),
        )
        self._stack.callback(self._drop_store)
        if self.start_workers:
            self.start_worker_processes()
        return self

    def start_worker_processes(self) -> WorkerProcesses:
        self.workers = self._stack.enter_context(
            WorkerProcesses(
                self.target,
                self.store_url,
                {
                    **self.ledger.env(),
                    "DAGSTER_HOME": str(self.root / "home"),
                    **self.worker_env,
                    # Workers resolve the run's config too (to build the step's plan).
                    **({self.store_url_env: self.store_url} if self.store_url_env else {}),
                },
                count=self.worker_count,
                concurrency=self.concurrency,
                log_dir=self.root / "logs",
                modules=("chaos.jobs",),
                grace_period=self.grace_period,
                extra_args=("--table-prefix", self.table_prefix),
            )
        )
        return self.workers

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def direct_target(self) -> Target:
        """This cluster's queue, seen on the real server rather than through the proxy."""
        if isinstance(self.target, RedisTarget):
            return dataclasses.replace(self.target, url=REDIS_URL)
        if isinstance(self.target, NatsTarget):
            return dataclasses.replace(self.target, servers=NATS_URL)
        if isinstance(self.target, RabbitMqTarget):
            return dataclasses.replace(self.target, url=RABBITMQ_URL)
        return self.target

    def _drop_store(self) -> None:
        with contextlib.suppress(Exception), self.store.engine.connect() as conn:
            self.store.records_table.drop(conn, checkfirst=True)
            for table in self.store.records_table.metadata.sorted_tables:
                table.drop(conn, checkfirst=True)
        self.store.close()

    # --- runs ----------------------------------------------------------------------------

    def run_config(self, **executor: Any) -> dict[str, Any]:
        config = self.target.run_config(self.store_url, table_prefix=self.table_prefix, **executor)
        if self.store_url_env is not None:
            config["execution"]["config"]["store_url"] = {"env": self.store_url_env}
        # Dagster's console logger at WARNING: hundreds of runs would drown the report.
        config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
        return config

    def tags(self, step_seconds: tuple[float, float]) -> dict[str, str]:
        return {chaos_jobs.STEP_SECONDS_TAG: f"{step_seconds[0]},{step_seconds[1]}"}

    def execute(
        self,
        job_name: str,
        *,
        step_seconds: tuple[float, float] = (0.05, 0.3),
        reexecution: Any = None,
    ) -> RunResult:
        """Run a job of ``chaos.jobs`` in this process (the executor's run loop here), check it."""
        started = time.monotonic()
        with execute_job(
            reconstructable(chaos_jobs.JOBS[job_name]),
            instance=self.instance,
            run_config=self.run_config(),
            tags=self.tags(step_seconds),
            raise_on_error=False,
            reexecution_options=reexecution,
        ) as result:
            run_id, success = result.run_id, result.success
        return self.result(run_id, success, started, job_name=job_name, reexecution=reexecution)

    def result(
        self,
        run_id: str,
        success: bool,
        started: float,
        *,
        job_name: str | None = None,
        reexecution: Any = None,
    ) -> RunResult:
        records = wait_for_final_records(self.store, run_id)
        expected = None
        if job_name is not None and reexecution is None:
            expected = chaos_jobs.JOB_STEPS[job_name]
        check = check_run(
            self.instance,
            self.store,
            self.ledger,
            run_id,
            expected_steps=expected,
            records=records,
        )
        return RunResult(run_id, success, check, time.monotonic() - started)

    def create_run(
        self, job_name: str, *, step_seconds: tuple[float, float] = (0.05, 0.3)
    ) -> DagsterRun:
        """A run of ``job_name`` created (NOT_STARTED) for ``launch_run_process``."""
        job_def = chaos_jobs.JOBS[job_name]
        return self.instance.create_run_for_job(
            job_def,
            run_config=self.run_config(),
            tags=self.tags(step_seconds),
            job_code_origin=reconstructable(job_def).get_python_origin(),
        )

    def launch_run_process(self, run: DagsterRun, job_name: str) -> subprocess.Popen[bytes]:
        """Execute an existing run in a child process (a run worker a launcher would start)."""
        log = open(self.root / "logs" / f"run-{run.run_id}.log", "wb")  # noqa: SIM115
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.root / "home"),
            "PYTHONPATH": os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]),
        }
        return subprocess.Popen(
            [sys.executable, "-m", "chaos.cluster", "execute-run", job_name, run.run_id],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    # --- faults --------------------------------------------------------------------------

    def terminate_store_connections(self) -> int:
        """``pg_terminate_backend`` every connection of this cluster's store; how many."""
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (self.app_name,),
            ).fetchall()
        return len(rows)

    def store_listeners(self) -> int:
        """How many of this cluster's store connections wait on LISTEN (executors' watches)."""
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = %s AND query LIKE 'LISTEN %%'",
                (self.app_name,),
            ).fetchone()
        return int(row[0]) if row else 0

    def stop_sqs(self) -> None:
        """SQS goes away: port closed, every open connection reset."""
        self.sqs_proxy.kill()
        self.moto.stop()

    def start_sqs(self) -> None:
        self.moto.start()
        self.sqs_proxy.start()

    def ack_marker(self) -> bytes | re.Pattern[bytes]:
        """Bytes that appear in a worker's ack of a step message on the wire (and in nothing
        else a worker sends), for ``broker_proxy.hold``.

        sqs: the ``DeleteMessage`` action; redis: the SHA-1 of the broker's ``ACK`` script (sent
        as ``EVALSHA``); nats: ``ack_sync``'s request (nats-py 2.16 acks with an empty payload
        and a reply subject), a pattern; rabbitmq: the AMQP ``basic.ack`` method frame (type 1,
        any channel, 13 bytes: class 60, method 80), a pattern.
        """
        if self.backend == "redis":
            from dagster_taskiq_redis import scripts  # noqa: PLC0415

            return hashlib.sha1(scripts.ACK.encode()).hexdigest().encode()
        if self.backend == "nats":
            # ack_sync: an empty request on the message's reply subject (in-progress acks and
            # NAKs are published without a reply subject, with "+WPI" / "-NAK" payloads).
            return re.compile(rb"PUB \$JS\.ACK\.\S+ _INBOX\.\S+ 0\r\n")
        if self.backend == "rabbitmq":
            # basic.nack (method 120) and basic.qos (class 60, method 10) differ in their bytes.
            return re.compile(rb"\x01..\x00\x00\x00\x0d\x00\x3c\x00\x50", re.DOTALL)
        return b"AmazonSQS.DeleteMessage"

    def stop_broker(self) -> None:
        """The broker goes away: on sqs ``stop_sqs``; elsewhere the proxy is killed (port
        closed, every connection reset) while the server behind it keeps the messages."""
        if self.backend == "sqs":
            self.stop_sqs()
        else:
            self.broker_proxy.kill()

    def start_broker(self) -> None:
        if self.backend == "sqs":
            self.start_sqs()
        else:
            self.broker_proxy.start()

    def send_copy(self, run_id: str, step_key: str, job_name: str, enqueue_attempt: int) -> None:
        """Another copy of a step's message (as a redelivery or a resend), straight to SQS.

        It has its own enqueue attempt, so FIFO deduplication lets it through, and no known
        state: a worker must drop it at the claim, before anything of it matters. (A copy
        that wins a claim runs the step with what the message says.)
        """
        task = OpExecutionTask(
            run_id=run_id,
            step_key=step_key,
            idempotency_key=idempotency_key(run_id, step_key),
            code=pointer_for_job(reconstructable(chaos_jobs.JOBS[job_name])),
            instance_ref=instance_ref_payload(self.instance),
            created_at=time.time(),
            enqueue_attempt=enqueue_attempt,
        )
        broker = BrokerThread(create_broker(self.target.backend, self.target.broker_settings()))
        try:
            broker.send([task])
        finally:
            broker.close()

    def queue_depth(self) -> int:
        """Messages not yet acked (visible or not), asked of the server directly."""
        if self.backend != "sqs":
            return self.direct_target().depth()
        return unacked_messages(self.moto.endpoint_url, self.target.queue_name)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted((self.root / "logs").glob("*.log"))
        )


def pids_of_client_ports(ports: list[int], candidates: list[int]) -> list[int]:
    """Which of ``candidates`` (pids) own a TCP socket whose local port is in ``ports``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port in ports:
                    inodes.add(fields[9])
    found = []
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        found.append(pid)
                        break
    return found


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (from /proc), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def cluster(**kwargs: Any) -> Iterator[Cluster]:
    with (
        tempfile.TemporaryDirectory(prefix="dagster-taskiq-chaos-") as tmp,
        Cluster(Path(tmp), **kwargs) as made,
    ):
        yield made


def _execute_run_main(job_name: str, run_id: str) -> int:
    """Child process: execute an existing run (``python -m chaos.cluster execute-run``)."""
    from dagster._core.execution.api import execute_run  # noqa: PLC0415 - what run workers call

    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None, run_id
        result = execute_run(reconstructable(chaos_jobs.JOBS[job_name]), run, instance)
        return 0 if result.success else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["execute-run"] and len(argv) == 3:
        return _execute_run_main(argv[1], argv[2])
    print("usage: python -m chaos.cluster execute-run JOB RUN_ID", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
