"""taskiq_executor on every backend vs dagster-celery (and multiprocess), in one session.

    uv run nox -s bench -- celery [--repeat N] [--skip-multiprocess] [--backends sqs,redis,nats]
                                  [--taskiq-concurrency C] [--celery-db D] [--plot PATH]
                                  [--dagster-storage sqlite|postgres] [--localstack]

The same jobs as ``executors`` (a 20-op chain and a 50-op fan-out into one collector, trivial
ops) on one shared Dagster instance (a temporary ``DAGSTER_HOME`` with a ``dagster.yaml``,
telemetry off, from ``benchmarks._common.dagster_home``): its storage SQLite by default, or with
``--dagster-storage postgres`` dagster-postgres on a fresh database of the local PostgreSQL
(127.0.0.1:5432, user postgres; dropped at the end), the storage a production deployment uses.
Executors:

* ``taskiq-sqs``, ``taskiq-redis``, ``taskiq-nats``: ``taskiq_executor`` with two
  ``dagster-taskiq worker`` processes per backend (concurrency ``--taskiq-concurrency``, 2 by
  default, as in ``executors``), each pool on its own queue and SQLite idempotency store: SQS
  over moto's server in its own process (LocalStack with ``--localstack``), never in this one,
  a Redis stream at 127.0.0.1:6379, a JetStream stream at 127.0.0.1:4222, each backend with its
  default settings but a 30 s visibility timeout;
* ``celery``: dagster-celery's ``celery_executor`` (``benchmarks.celery_jobs``) with two workers
  started as dagster-celery documents them (``dagster-celery worker start -A dagster_celery.app
  -y <executor config yaml>``), each with ``--concurrency 1`` (one prefork child), broker and
  result backend on the local Redis (``redis://127.0.0.1:6379/<--celery-db>``), executor config
  left at dagster-celery's defaults otherwise;
* ``multiprocess``: ``multiprocess_executor`` with ``max_concurrent: 2`` (slow: skip it with
  ``--skip-multiprocess``);
* ``in_process``: ``in_process_executor``, Dagster's own floor for these jobs: every step in
  the run's process, one after the other, no hand-off at all. The aim (0.1x dagster-celery) is
  printed against it too: an executor that hands steps to other processes cannot beat it on the
  chain, whose steps must run one after the other.

A warm-up round runs each job once on each executor but ``multiprocess`` untimed (workers load
the code, the run process imports it; a multiprocess step is a fresh process anyway), then
``--repeat`` timed rounds follow, the executors taking turns on each job within a round, so
background load falls on all of them alike; the timed rounds wait for the load average to settle
to 1.5. Reported: the load average before and after and the CPU other processes used meanwhile
(a start above load 1.5, or others above half a core, makes the table noisy, not comparable,
never a result), median wall times, ratios to dagster-celery, and per-step overhead p50/p95 on
the chain (whose ops do no work: the time between one step's STEP_SUCCESS event and the next
one's), and with ``--plot PATH`` a PNG of that overhead by executor (the one in the docs,
``docs/benchmarks-overhead.png``, comes from a quiet run)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Conditions,
    ConditionsWatch,
    add_localstack_argument,
    add_storage_argument,
    aim_verdict,
    dagster_home,
    sqs_server,
    timed_run,
)
from benchmarks.bench_executors import CHAIN, FAN_OUT, _chain_gaps

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379"
NATS_URL = "nats://127.0.0.1:4222"
BACKENDS = ("sqs", "redis", "nats")
VISIBILITY_TIMEOUT = 30
CELERY = "celery"
MULTIPROCESS = "multiprocess"
IN_PROCESS = "in_process"
CELERY_WORKERS = 2


@dataclasses.dataclass(frozen=True)
class BackendQueue:
    """One queue of one backend, as ``WorkerPool`` and the executor both see it."""

    backend: str
    settings: dict[str, Any]
    visibility_timeout: int = VISIBILITY_TIMEOUT

    def broker_settings(self) -> dict[str, Any]:
        return dict(self.settings)


def _queue(backend: str, endpoint_url: str) -> BackendQueue:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    if backend == "sqs":
        from dagster_taskiq_examples._cluster import DemoQueue  # noqa: PLC0415

        demo = DemoQueue(endpoint_url=endpoint_url, region="us-east-1")
        return BackendQueue("sqs", demo.broker_settings(), demo.visibility_timeout)
    if backend == "redis":
        settings = {"url": REDIS_URL, "stream": name, "visibility_timeout": VISIBILITY_TIMEOUT}
        return BackendQueue("redis", settings)
    if backend == "nats":
        suffix = name.replace("-", "_").upper()
        settings = {
            "servers": NATS_URL,
            "stream": suffix,
            "subject": f"steps.{suffix.lower()}",
            "visibility_timeout": VISIBILITY_TIMEOUT,
        }
        return BackendQueue("nats", settings)
    raise SystemExit(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _cleanup(queue: BackendQueue) -> None:
    """Delete the Redis stream or JetStream stream (and dead-letter ones) the pool used."""
    with contextlib.suppress(Exception):
        if queue.backend == "redis":
            import redis  # noqa: PLC0415

            client = redis.Redis.from_url(REDIS_URL)
            stream = queue.settings["stream"]
            client.delete(stream, f"{stream}-dlq", *client.keys(f"{stream}:*"))
        elif queue.backend == "nats":
            import nats  # noqa: PLC0415

            async def delete() -> None:
                client = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
                try:
                    js = client.jetstream()
                    for stream in (queue.settings["stream"], f"{queue.settings['stream']}_DLQ"):
                        with contextlib.suppress(Exception):
                            await js.delete_stream(stream)
                finally:
                    await client.close()

            asyncio.run(delete())


def _worker_pool(queue: BackendQueue, store_url: str, concurrency: int, log_dir: Path) -> Any:
    from dagster_taskiq_examples._cluster import WorkerPool  # noqa: PLC0415

    class BackendPool(WorkerPool):
        """The example's worker pool on any backend (it starts ``--backend sqs``)."""

        def command(self) -> list[str]:
            command = super().command()
            command[command.index("--backend") + 1] = queue.backend
            return command

    return BackendPool(
        queue,  # type: ignore[arg-type]  # DemoQueue-shaped
        store_url,
        count=2,
        concurrency=concurrency,
        log_dir=log_dir,
    )


class CeleryWorkers:
    """``CELERY_WORKERS`` dagster-celery workers, one process group each (stopped by group id)."""

    def __init__(self, config_yaml: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.config_yaml = config_yaml
        self.log_dir = log_dir
        self.env = env
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> CeleryWorkers:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:6]
        for n in range(1, CELERY_WORKERS + 1):
            command = [
                *(str(Path(sys.executable).parent / "dagster-celery"), "worker", "start"),
                *("-A", "dagster_celery.app", "-y", str(self.config_yaml)),
                *("-n", f"bench-{tag}-{n}", "-i", "benchmarks.celery_jobs", "-l", "INFO"),
                *("--", "--concurrency", "1", "--pool", "prefork"),
            ]
            with open(self.log_dir / f"celery-{n}.log", "wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        start_new_session=True,
                    )
                )
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            logs = [p.read_text(errors="replace") for p in self.log_dir.glob("celery-*.log")]
            if sum(" ready." in text for text in logs) >= CELERY_WORKERS:
                return
            if any(p.poll() is not None for p in self.processes) or time.monotonic() > deadline:
                raise SystemExit("celery workers did not start:\n" + "\n".join(logs))
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _target(executor: str, job: str) -> Any:
    from dagster_taskiq.code_locations import job_in_module  # noqa: PLC0415

    if executor.startswith("taskiq-"):
        return job_in_module("dagster_taskiq_examples.definitions", job)
    if executor == CELERY:
        return job_in_module("benchmarks.celery_jobs", f"{job}_celery", attribute="celery_defs")
    return job_in_module(
        "dagster_taskiq_examples.bench_jobs", f"{job}_{executor}", attribute="bench_defs"
    )


def _run_one(instance: Any, executor: str, job: str, config: dict[str, Any]) -> tuple[float, str]:
    wall, result = timed_run(_target(executor, job), instance, config, f"{executor} {job}")
    return wall, result.run_id


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- celery", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per executor and job")
    parser.add_argument(
        "--skip-multiprocess", action="store_true", help="skip the slow multiprocess baseline"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="taskiq backends to run")
    parser.add_argument("--taskiq-concurrency", type=int, default=2, help="per taskiq worker")
    parser.add_argument("--celery-db", type=int, default=11, help="Redis database for celery")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="write a PNG of the per-step overhead here (docs/benchmarks-overhead.png from a "
        "quiet run); none by default",
    )
    add_storage_argument(parser, both=False)
    add_localstack_argument(parser)
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]

    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq.logs import configure_logging  # noqa: PLC0415

    configure_logging("console", "WARNING")
    # dagster-celery builds its task again for every step it submits; celery 5.7 warns each time.
    warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")
    executors = [f"taskiq-{b}" for b in backends] + [CELERY]
    if not args.skip_multiprocess:
        executors.append(MULTIPROCESS)
    executors.append(IN_PROCESS)
    celery_url = f"{REDIS_URL}/{args.celery_db}"
    walls: dict[tuple[str, str], list[float]] = {}
    gaps: dict[str, list[float]] = {}
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    queues: list[BackendQueue] = []
    watch: ConditionsWatch | None = None
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        sqs_server("localstack" if args.localstack else "moto") as server,
        dagster_home(Path(tmp_name), args.dagster_storage) as home,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        # Created (its SQLite schema stamped) before any worker opens it: processes that create
        # a fresh SQLite instance at once can stamp two alembic heads.
        instance = stack.enter_context(DagsterInstance.get())
        configs: dict[str, dict[str, Any]] = {}
        pools = []
        for backend in backends:
            queue = _queue(backend, server.endpoint_url)
            queues.append(queue)
            stack.callback(_cleanup, queue)
            store_url = f"sqlite:///{tmp / f'store-{backend}.db'}"
            configs[f"taskiq-{backend}"] = {
                "execution": {
                    "config": {
                        "broker": {"backend": backend, "settings": queue.broker_settings()},
                        "store_url": store_url,
                        "visibility_timeout": float(queue.visibility_timeout),
                    }
                }
            }
            pools.append(
                stack.enter_context(
                    _worker_pool(queue, store_url, args.taskiq_concurrency, tmp / "logs" / backend)
                )
            )
        celery_config = {"broker": celery_url, "backend": celery_url}
        configs[CELERY] = {"execution": {"config": celery_config}}
        configs[MULTIPROCESS] = {"execution": {"config": {"max_concurrent": 2}}}
        configs[IN_PROCESS] = {}
        config_yaml = tmp / "celery.yaml"
        config_yaml.write_text(
            f"execution:\n  config:\n    broker: '{celery_url}'\n    backend: '{celery_url}'\n"
        )
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        celery = stack.enter_context(
            CeleryWorkers(
                config_yaml, tmp / "logs" / "celery", {**os.environ, "PYTHONPATH": pythonpath}
            )
        )
        for pool in pools:
            pool.wait_ready()
        celery.wait_ready()
        print(
            f"instance {home} ({args.dagster_storage}); executors: {', '.join(executors)}",
            flush=True,
        )
        for n in range(args.repeat + 1):
            label = "warm-up" if n == 0 else f"run {n}/{args.repeat}"
            if n == 1:  # the timed rounds start on a settled machine
                watch = ConditionsWatch.settle()
            for job in (CHAIN, FAN_OUT):
                for executor in executors:
                    if n == 0 and executor == MULTIPROCESS:
                        continue
                    wall, run_id = _run_one(instance, executor, job, {**configs[executor], **quiet})
                    print(f"  {executor:<13} {job:<10} {label:<9} {wall:7.2f} s", flush=True)
                    if n == 0:
                        continue
                    walls.setdefault((executor, job), []).append(wall)
                    if job == CHAIN:
                        gaps.setdefault(executor, []).extend(_chain_gaps(instance, run_id))
        conditions = watch.stop() if watch is not None else None
    _report(executors, walls, gaps, args.repeat, conditions)
    if args.plot is not None:
        _plot(executors, gaps, args.plot, args.repeat)
    return 0


def _label(executor: str) -> str:
    if executor.startswith("taskiq-"):
        return f"{executor} (2 workers)"
    if executor == CELERY:
        return "dagster-celery (2 workers, redis)"
    if executor == IN_PROCESS:
        return "in_process (1 process)"
    return "multiprocess (2)"


def _report(
    executors: list[str],
    walls: dict[tuple[str, str], list[float]],
    gaps: dict[str, list[float]],
    repeat: int,
    conditions: Conditions | None,
) -> None:
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415

    noisy = conditions is None or conditions.noisy
    median = {key: statistics.median(values) for key, values in walls.items()}
    print(f"\nmedian of {repeat} timed run(s) after one warm-up, seconds; ratios to dagster-celery")
    print(
        "| executor | chain_20 wall | fan_out_50 wall | chain vs celery | fan-out vs celery | "
        "per-step overhead p50 / p95 (chain) |"
    )
    print("|---" * 6 + "|")
    for executor in executors:
        cells = [_label(executor)]
        cells += [f"{median[(executor, job)]:.2f} s" for job in (CHAIN, FAN_OUT)]
        cells += [
            f"{median[(executor, job)] / median[(CELERY, job)]:.3f}x" for job in (CHAIN, FAN_OUT)
        ]
        ms = [g * 1000 for g in gaps.get(executor, [])]
        cells.append(f"{statistics.median(ms):.0f} / {percentile(ms, 0.95):.0f} ms" if ms else "-")
        print("| " + " | ".join(cells) + " |")
    for line in conditions.lines() if conditions else []:
        print(line)
    print()
    for executor in executors:
        if not executor.startswith("taskiq-"):
            continue
        ratios = [median[(executor, job)] / median[(CELERY, job)] for job in (CHAIN, FAN_OUT)]
        met = all(r <= 0.1 for r in ratios)
        print(
            f"aim {executor} <= 0.1x dagster-celery on both jobs: chain {ratios[0]:.3f}x, "
            f"fan-out {ratios[1]:.3f}x {aim_verdict(met, noisy)}; vs in_process: chain "
            f"{median[(executor, CHAIN)] / median[(IN_PROCESS, CHAIN)]:.2f}x, fan-out "
            f"{median[(executor, FAN_OUT)] / median[(IN_PROCESS, FAN_OUT)]:.2f}x"
        )
    for job in (CHAIN, FAN_OUT):
        aim = 0.1 * median[(CELERY, job)]
        print(
            f"{job}: 0.1x dagster-celery is {aim:.2f} s = "
            f"{aim / median[(IN_PROCESS, job)]:.2f}x in_process_executor's wall time"
        )


def _plot(executors: list[str], gaps: dict[str, list[float]], path: Path, repeat: int) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    shown = [e for e in executors if gaps.get(e)]
    data = [[g * 1000 for g in gaps[e]] for e in shown]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.boxplot(data, whis=(5, 95), showfliers=True)
    ax.set_xticks(range(1, len(shown) + 1), [_label(e).replace(" (", "\n(") for e in shown])
    ax.set_yscale("log")
    ax.set_ylabel("per-step overhead, ms (log scale)")
    ax.set_title(
        "Per-step overhead on the 20-op chain (gap between STEP_SUCCESS events)\n"
        f"box: quartiles, whiskers: p5-p95, line: median; {repeat} timed run(s) each",
        fontsize=10,
    )
    for i, values in enumerate(data, start=1):
        ax.annotate(
            f"p50 {statistics.median(values):.0f} ms",
            (i, statistics.median(values)),
            textcoords="offset points",
            xytext=(30, 0),
            fontsize=8,
            va="center",
        )
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"\nplot: {path}")
