"""Cost as the work grows: 1, 8 and 32 concurrent runs of fan_out_50 on four workers.

    uv run nox -s bench -- scale [--runs 1,8,32] [--localstack]
                                 [--dagster-storage sqlite|postgres]

The current build only. One SQS server in its own process (moto's; LocalStack with
``--localstack``), one Dagster instance (PostgreSQL by default, production's storage: a fresh
database, dropped at the end; SQLite with ``--dagster-storage sqlite``), one fresh
idempotency-store database ``dagster_taskiq_scale_<hex>`` on PostgreSQL (dropped at the end),
and 4 ``dagster-taskiq worker`` processes (concurrency 2 each) serving the example project
(``dagster_taskiq_examples.definitions``). Every PostgreSQL database is reached through a
``PgCountingProxy`` (``dagster_taskiq_testing``), which counts round trips exactly (one per
simple query, one per extended-protocol Sync) and connections.

After one warm-up run (untimed: the workers load the code), for each N (``--runs``): N run
processes of ``fan_out_50`` (one op, 50 leaves, one collector: 52 steps) started at once, each
its own process (``python -m benchmarks._run_job``), as in production. Reported per N:

* the wall time from the first launch to the last run process's exit, and steps per second
  (N x 52 / wall);
* hand-offs from the store's records: *queueing*, for every step, from its record's
  ``created_at`` (the executor's ``ensure_pending``, just before the message is sent) to its
  result's ``started_at`` (the worker's claim), waiting in the queue included; and the
  executor's *reaction*, for each run's collector, from the last leaf's ``finished_at`` to the
  collector's ``created_at``; p50 and p95 of each;
* store round trips per step, and Dagster-database round trips and connections opened per
  step (PostgreSQL storage); the most connections open at once;
* CPU seconds per step: the workers' (``/proc/<pid>/stat`` utime + stime, before and after)
  and the run processes' (each reports its own, from ``os.times()``, as it exits); the
  PostgreSQL server's beside it.

The aim (GitHub issue 13): the per-step cost (CPU seconds per step) may grow by at most 1.5x
from the smallest N to the largest. The measured runs start once the load average has settled
(``benchmarks._common``'s ``ConditionsWatch``); the table is noisy, not comparable, never a
result, if it started above load 1.5 or if other processes used more than half a core
meanwhile (the PostgreSQL server's CPU, reported per step, counts as this benchmark's).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._common import (
    Conditions,
    add_localstack_argument,
    add_storage_argument,
    aim_verdict,
    dagster_home,
    postgres_cpu_seconds,
    sqs_server,
)
from benchmarks._runs import (
    ERRORS_ONLY,
    BenchProcessError,
    Build,
    RunOutcome,
    RunProcesses,
    TableConditions,
    Workers,
    current_build,
    fresh_database,
    interrupt_once,
    parse_runs,
    warn_if_few_connections,
)

if TYPE_CHECKING:
    from dagster_taskiq_testing.servers import PgCountingProxy, PgCounts

CODE_LOCATION = "dagster_taskiq_examples.definitions"
JOB = "fan_out_50"
STEPS_PER_RUN = 52
COLLECTOR = "collect"
LEAF_PREFIX = "leaf_"
WORKERS = 4
CONCURRENCY = 2
AIM_GROWTH = 1.5


@dataclasses.dataclass(frozen=True)
class ScaleFigures:
    """One N: wall time, hand-offs, round trips and CPU."""

    runs: int
    wall: float
    queueing: list[float]
    reaction: list[float]
    store: PgCounts
    dagster: PgCounts | None
    worker_cpu: float
    run_cpu: float
    postgres_cpu: float
    """The PostgreSQL server's CPU seconds meanwhile (not in ``cpu_per_step``)."""

    @property
    def steps(self) -> int:
        return self.runs * STEPS_PER_RUN

    @property
    def cpu_per_step(self) -> float:
        return (self.worker_cpu + self.run_cpu) / self.steps


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s bench -- scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs", type=parse_runs, default=[1, 8, 32], help="concurrent runs, e.g. 1,8,32"
    )
    add_localstack_argument(parser)
    add_storage_argument(parser, both=False)
    parser.set_defaults(dagster_storage="postgres")
    args = parser.parse_args(argv)
    kind = "localstack" if args.localstack else "moto"

    # Per run: the executor's store pool and its LISTEN connection, Dagster's short-lived
    # ones; per worker: a store connection per step slot and Dagster's.
    warn_if_few_connections(4 * max(args.runs) + 4 * WORKERS)
    try:
        with interrupt_once():
            figures, conditions, postgres_cores = _measure(
                current_build(), args.runs, kind, args.dagster_storage
            )
    except BenchProcessError as exc:
        print(f"\nscale benchmark failed: {exc}", flush=True)
        return 1
    _report(figures, kind, args.dagster_storage, conditions, postgres_cores)
    return 0


def _measure(
    build: Build, all_runs: list[int], kind: str, storage: str
) -> tuple[list[ScaleFigures], Conditions, float]:
    """Every N's figures, the table's conditions and the cores PostgreSQL used meanwhile."""
    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq_examples._cluster import DemoQueue  # noqa: PLC0415
    from dagster_taskiq_testing.servers import PgCountingProxy  # noqa: PLC0415

    print(
        f"scale: {build.label}, {WORKERS} workers x {CONCURRENCY}, Dagster storage {storage}",
        flush=True,
    )
    figures = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = stack.enter_context(sqs_server(kind))
        store_proxy = stack.enter_context(PgCountingProxy())
        dagster_proxy = stack.enter_context(PgCountingProxy()) if storage == "postgres" else None
        port = dagster_proxy.port if dagster_proxy is not None else 5432
        stack.enter_context(dagster_home(tmp, storage, postgres_port=port))
        with DagsterInstance.get():  # its schema, before any worker or run opens it
            pass
        store_db = stack.enter_context(fresh_database("dagster_taskiq_scale_"))
        queue = DemoQueue(endpoint_url=server.endpoint_url, region="us-east-1")
        workers = stack.enter_context(
            Workers(
                build,
                broker_settings=queue.broker_settings(),
                store_url=store_proxy.url(store_db),
                module=CODE_LOCATION,
                count=WORKERS,
                concurrency=CONCURRENCY,
                visibility_timeout=queue.visibility_timeout,
                log_dir=tmp / "workers",
            )
        )
        workers.wait_ready()
        run_config: dict[str, Any] = {
            "execution": {
                "config": {
                    "broker": {"backend": "sqs", "settings": queue.broker_settings()},
                    "store_url": store_proxy.url(store_db),
                    "visibility_timeout": float(queue.visibility_timeout),
                }
            },
            **ERRORS_ONLY,
        }
        setup = _Setup(build, run_config, tmp, store_db, store_proxy, dagster_proxy, workers)
        print("  warm-up: 1 run (untimed)", flush=True)
        _run(build, run_config, 1, tmp / "runs-warm-up")
        watch = TableConditions()  # the measured runs start on a settled machine
        for runs in all_runs:
            print(f"\n== N={runs}: {runs} run process(es) of {JOB} at once", flush=True)
            figures.append(_measure_one(setup, runs))
        conditions, postgres_cores = watch.stop()
    return figures, conditions, postgres_cores


def _run(
    build: Build, run_config: dict[str, Any], runs: int, log_dir: Path
) -> tuple[list[RunOutcome], float]:
    """``runs`` run processes at once; their outcomes and the wall time to the last exit."""
    with RunProcesses(
        build, f"{CODE_LOCATION}:{JOB}", run_config, count=runs, log_dir=log_dir
    ) as processes:
        outcomes = processes.wait(timeout=300 + 30 * runs)
    wall = max(o.exited_at for o in outcomes) - processes.started_at
    return outcomes, wall


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every N shares: the build, run config, store, proxies and workers."""

    build: Build
    run_config: dict[str, Any]
    tmp: Path
    store_db: str
    store_proxy: PgCountingProxy
    dagster_proxy: PgCountingProxy | None
    workers: Workers


def _measure_one(setup: _Setup, runs: int) -> ScaleFigures:
    store_proxy, dagster_proxy = setup.store_proxy, setup.dagster_proxy
    store_start = store_proxy.snapshot(reset_peak=True)
    dagster_start = dagster_proxy.snapshot(reset_peak=True) if dagster_proxy else None
    worker_start = setup.workers.cpu_seconds()
    postgres_start = postgres_cpu_seconds()
    outcomes, wall = _run(setup.build, setup.run_config, runs, setup.tmp / f"runs-{runs}")
    worker_cpu = setup.workers.cpu_seconds() - worker_start
    postgres_cpu = postgres_cpu_seconds() - postgres_start
    store = store_proxy.snapshot().since(store_start)
    dagster = (
        dagster_proxy.snapshot().since(dagster_start)
        if dagster_proxy is not None and dagster_start is not None
        else None
    )
    queueing, reaction = _handoffs(setup.store_db, [o.run_id for o in outcomes])
    figures = ScaleFigures(
        runs=runs,
        wall=wall,
        queueing=queueing,
        reaction=reaction,
        store=store,
        dagster=dagster,
        worker_cpu=worker_cpu,
        run_cpu=sum(o.cpu_seconds for o in outcomes),
        postgres_cpu=postgres_cpu,
    )
    print(
        f"  {runs} run(s) succeeded in {wall:.1f} s: {figures.steps / wall:.1f} steps/s, "
        f"{store.round_trips / figures.steps:.1f} store round trips per step, "
        f"{figures.cpu_per_step * 1000:.0f} ms CPU per step",
        flush=True,
    )
    return figures


def _handoffs(store_db: str, run_ids: list[str]) -> tuple[list[float], list[float]]:
    """Queueing (every step) and the executor's reaction (each collector), in seconds, from the
    store's records, read directly (not through the proxy)."""
    from dagster_taskiq import SqlIdempotencyStore  # noqa: PLC0415

    store = SqlIdempotencyStore(f"postgresql://postgres@127.0.0.1:5432/{store_db}")
    queueing: list[float] = []
    reaction: list[float] = []
    try:
        for run_id in run_ids:
            records = store.records_for_run(run_id)
            if len(records) != STEPS_PER_RUN:
                raise BenchProcessError(
                    f"run {run_id}: {len(records)} store records, not {STEPS_PER_RUN}"
                )
            leaves_done: list[float] = []
            collector_created: float | None = None
            for record in records:
                if record.result is None:
                    raise BenchProcessError(f"run {run_id}: {record.step_key} has no result")
                queueing.append(record.result.started_at - record.created_at)
                if record.step_key.startswith(LEAF_PREFIX):
                    leaves_done.append(record.result.finished_at)
                elif record.step_key == COLLECTOR:
                    collector_created = record.created_at
            if collector_created is None or not leaves_done:
                raise BenchProcessError(f"run {run_id}: no collector or no leaves in the store")
            reaction.append(collector_created - max(leaves_done))
    finally:
        store.close()
    return queueing, reaction


def _ms(values: list[float]) -> str:
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415

    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f} / {percentile(ms, 0.95):.0f} ms"


def _report(
    figures: list[ScaleFigures],
    kind: str,
    storage: str,
    conditions: Conditions,
    postgres_cores: float,
) -> None:
    noisy = conditions.noisy
    print(
        f"\n{JOB} ({STEPS_PER_RUN} steps) at N concurrent runs, {WORKERS} workers x "
        f"{CONCURRENCY}, SQS on {kind} (its own process), PostgreSQL store, Dagster storage "
        f"{storage}"
    )
    print(
        "| N | wall | steps/s | queueing p50 / p95 | reaction (collector) p50 / p95 | "
        "store round trips per step | Dagster DB round trips per step | "
        "Dagster DB connections opened per step | connections max open (store / Dagster DB) | "
        "worker CPU per step | run process CPU per step | CPU per step | "
        "PostgreSQL CPU per step |"
    )
    print("|---" * 13 + "|")
    for f in figures:
        dagster = opened = dagster_open = "-"
        if f.dagster is not None:
            dagster = f"{f.dagster.round_trips / f.steps:.1f}"
            opened = f"{f.dagster.connections_opened / f.steps:.2f}"
            dagster_open = str(f.dagster.max_open)
        print(
            f"| {f.runs} | {f.wall:.1f} s | {f.steps / f.wall:.1f} | {_ms(f.queueing)} | "
            f"{_ms(f.reaction)} | {f.store.round_trips / f.steps:.1f} | {dagster} | {opened} | "
            f"{f.store.max_open} / {dagster_open} | {1000 * f.worker_cpu / f.steps:.0f} ms | "
            f"{1000 * f.run_cpu / f.steps:.0f} ms | {1000 * f.cpu_per_step:.0f} ms | "
            f"{1000 * f.postgres_cpu / f.steps:.0f} ms |"
        )
    for line in conditions.lines():
        print(line)
    print(
        f"PostgreSQL used {postgres_cores:.2f} cores on average meanwhile, counted as this "
        "benchmark's (its databases carry the runs' state), not as other processes'"
    )
    print(
        "\n* wall: from the first run process's start to the last one's exit; steps/s: "
        f"N x {STEPS_PER_RUN} / wall\n"
        "* queueing: a step's record created (the executor's ensure_pending, before the send) "
        "to its claim by a worker (the result's started_at), waiting in the queue included; "
        "every step\n"
        "* reaction (collector): the last leaf's finished_at to the collector's record created, "
        "the executor noticing the leaves' outcomes and launching; one per run\n"
        "* round trips per step: statements the database received through its counting proxy "
        "(one per simple query, one per extended-protocol Sync), from run processes and "
        "workers, divided by N x 52\n"
        "* Dagster DB connections opened per step: new connections to Dagster's database "
        "(each a PostgreSQL backend started), divided by N x 52\n"
        "* connections max open: the most open at once through each database's proxy while "
        "the N runs ran (PostgreSQL's max_connections must leave room for both)\n"
        "* CPU per step: CPU seconds of the 4 workers (/proc, before and after) plus those the "
        "run processes report at exit (process start and imports included), divided by N x 52\n"
        "* PostgreSQL CPU per step: the local PostgreSQL server's (every postgres process, "
        "ended backends included; another client's queries would count too), divided by "
        "N x 52, not in CPU per step"
    )
    if len(figures) >= 2:
        first, last = figures[0], figures[-1]
        growth = last.cpu_per_step / first.cpu_per_step
        print(
            f"\naim per-step CPU grows <= {AIM_GROWTH:g}x from N={first.runs} to N={last.runs}: "
            f"{1000 * first.cpu_per_step:.0f} -> {1000 * last.cpu_per_step:.0f} ms = "
            f"{growth:.2f}x {aim_verdict(growth <= AIM_GROWTH, noisy)}"
        )
        store_growth = (last.store.round_trips / last.steps) / max(
            first.store.round_trips / first.steps, 1e-9
        )
        print(
            f"store round trips per step from N={first.runs} to N={last.runs}: {store_growth:.2f}x"
        )
