"""What a waiting run costs the databases: store and Dagster round trips per second per run.

    uv run nox -s bench -- idle [--runs 1,8,32] [--sleep S] [--baseline-ref REF] [--localstack]

For each concurrency N (``--runs``) and each build, interleaved (baseline N=1, current N=1,
baseline N=8, ...): N concurrent runs of ``benchmarks.idle_jobs:idle_pair`` (two steps that
sleep ``--sleep`` S seconds, 30 by default, and then until the benchmark releases them, so that
no step ends inside the measurement window), each run its own process
(``python -m benchmarks._run_job``), as in production. The *baseline* build is ``--baseline-ref``
(65e49e3, before the executor waited on LISTEN/NOTIFY: it polled the store every 5 ms while
steps were in flight), checked out in a temporary ``git worktree`` whose packages come first on
the ``PYTHONPATH`` of its run and worker processes; the *current* build is this checkout.

Each measurement starts from scratch: an SQS server in its own process (moto's; LocalStack with
``--localstack``), a Dagster instance on PostgreSQL (a fresh database, dropped at the end), a
fresh idempotency-store database ``dagster_taskiq_idle_<hex>`` (dropped at the end), and 4
``dagster-taskiq worker`` processes of the build with ``--concurrency`` ceil(2N/4) (every step
runs at once; ``receive_ahead`` off, so that no busy worker holds a step back) and a 300 s
lease. Every database is reached through a ``PgCountingProxy`` (``dagster_taskiq_testing``),
which counts round trips exactly (one per simple query, one per extended-protocol Sync) and
connections: one in front of Dagster's database (the port in ``dagster.yaml``), one for the
store as the run processes' executors reach it (``store_url`` in the run config) and one for the
store as the workers reach it (their ``--store-url``).

Once every step is RUNNING in the store and has started (its STEP_START in the event log; both
tables read directly, not through a proxy), and 2 s more (the steps' start, their workers
opening the run's instance, is then behind them), the window: max(S/2, 10) seconds in which
every run waits on its two sleeping steps. Reported per N and build: store round trips per
second per run (and the executors' and workers' shares), Dagster-database round trips per
second per run, connections opened per second per run, the most connections open at once in
the window, the run processes' and PostgreSQL's CPU per run; then the runs are released and
must succeed. The aim (GitHub issue 13): at most 2 store round trips per second per waiting
run at every N, for the current build. The table starts once the load average has settled
(``benchmarks._common``'s ``ConditionsWatch``); it is noisy, not comparable, never a result,
if it started above load 1.5 or if other processes used more than half a core meanwhile (the
PostgreSQL server's CPU, reported, counts as this benchmark's).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._common import (
    Conditions,
    add_localstack_argument,
    aim_verdict,
    dagster_home,
    postgres_cpu_seconds,
    sqs_server,
)
from benchmarks._runs import (
    BASELINE_REF,
    ERRORS_ONLY,
    BenchProcessError,
    Build,
    RunProcesses,
    TableConditions,
    Workers,
    baseline_build,
    cpu_seconds,
    current_build,
    fresh_database,
    interrupt_once,
    parse_runs,
    warn_if_few_connections,
)

if TYPE_CHECKING:
    from dagster_taskiq_testing.servers import PgCounts

JOBS_MODULE = "benchmarks.idle_jobs"
JOB = "idle_pair"
STEPS_PER_RUN = 2
WORKERS = 4
LEASE_SECONDS = 300
AIM_ROUND_TRIPS = 2.0
SETTLE_SECONDS = 2.0
"""Seconds between the last step's start and the window."""
STORE_TABLE = "dagster_taskiq_idempotency"


@dataclasses.dataclass(frozen=True)
class IdleFigures:
    """One measurement: N runs of one build, the counts over the window."""

    runs: int
    build: Build
    window: float
    store_executors: PgCounts
    store_workers: PgCounts
    dagster: PgCounts
    run_cpu: float
    """CPU seconds of all the run processes over the window."""
    postgres_cpu: float
    """CPU seconds of the PostgreSQL server over the window."""

    def per_run_second(self, counts: PgCounts) -> float:
        return counts.round_trips / self.window / self.runs

    @property
    def store_rate(self) -> float:
        return self.per_run_second(self.store_executors) + self.per_run_second(self.store_workers)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="nox -s bench -- idle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--runs", type=parse_runs, default=[1, 8, 32], help="concurrent runs, e.g. 1,8,32"
    )
    parser.add_argument(
        "--sleep", type=float, default=30.0, help="seconds each step sleeps (at least)"
    )
    parser.add_argument(
        "--baseline-ref", default=BASELINE_REF, help=f"the baseline build (default {BASELINE_REF})"
    )
    add_localstack_argument(parser)
    args = parser.parse_args(argv)
    kind = "localstack" if args.localstack else "moto"
    window = max(args.sleep / 2, 10.0)

    # Per run: the executor's store connection and its LISTEN one, Dagster's short-lived
    # ones; per worker: its store pool and Dagster's.
    warn_if_few_connections(3 * max(args.runs) + 3 * WORKERS)
    figures: list[IdleFigures] = []
    try:
        with interrupt_once(), baseline_build(args.baseline_ref) as baseline:
            current = current_build()
            watch = TableConditions()
            for runs in args.runs:
                for build in (baseline, current):
                    figures.append(_measure(build, runs, args.sleep, window, kind))
            conditions, postgres_cores = watch.stop()
    except BenchProcessError as exc:
        print(f"\nidle benchmark failed: {exc}", flush=True)
        return 1
    _report(figures, kind, conditions, postgres_cores)
    return 0


def _measure(build: Build, runs: int, sleep: float, window: float, kind: str) -> IdleFigures:
    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq_examples._cluster import DemoQueue  # noqa: PLC0415
    from dagster_taskiq_testing.servers import PgCountingProxy  # noqa: PLC0415

    concurrency = math.ceil(STEPS_PER_RUN * runs / WORKERS)
    print(
        f"\n== N={runs}, {build.label}: {WORKERS} workers x {concurrency}, steps sleep "
        f">= {sleep:g} s",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = stack.enter_context(sqs_server(kind))
        dagster_proxy = stack.enter_context(PgCountingProxy())
        executors_proxy = stack.enter_context(PgCountingProxy())
        workers_proxy = stack.enter_context(PgCountingProxy())
        home = stack.enter_context(dagster_home(tmp, "postgres", postgres_port=dagster_proxy.port))
        dagster_db = _dagster_database(home)
        with DagsterInstance.get():  # its schema, before any worker or run opens it
            pass
        store_db = stack.enter_context(fresh_database("dagster_taskiq_idle_"))
        queue = DemoQueue(
            endpoint_url=server.endpoint_url, region="us-east-1", visibility_timeout=LEASE_SECONDS
        )
        settings = {**queue.broker_settings(), "receive_ahead": False}
        workers = stack.enter_context(
            Workers(
                build,
                broker_settings=settings,
                store_url=workers_proxy.url(store_db),
                module=JOBS_MODULE,
                count=WORKERS,
                concurrency=concurrency,
                visibility_timeout=LEASE_SECONDS,
                log_dir=tmp / "workers",
            )
        )
        workers.wait_ready()
        release = tmp / "release"
        nap = {"config": {"seconds": sleep, "release_file": str(release)}}
        run_config: dict[str, Any] = {
            "execution": {
                "config": {
                    "broker": {"backend": "sqs", "settings": settings},
                    "store_url": executors_proxy.url(store_db),
                    "visibility_timeout": float(LEASE_SECONDS),
                }
            },
            "ops": {"nap_a": nap, "nap_b": nap},
            **ERRORS_ONLY,
        }
        print(f"  starting {runs} run process(es)", flush=True)
        processes = stack.enter_context(
            RunProcesses(
                build, f"{JOBS_MODULE}:{JOB}", run_config, count=runs, log_dir=tmp / "runs"
            )
        )
        _wait_running(store_db, dagster_db, STEPS_PER_RUN * runs, processes, workers)
        # Each step's start (its worker opening the run's instance: engines, dialect checks)
        # is behind it now; what remains is waiting.
        time.sleep(SETTLE_SECONDS)

        proxies = (executors_proxy, workers_proxy, dagster_proxy)
        print(f"  every step RUNNING: measuring {window:g} s", flush=True)
        starts = [proxy.snapshot(reset_peak=True) for proxy in proxies]
        cpu_start = sum(cpu_seconds(pid) for pid in processes.pids)
        postgres_start = postgres_cpu_seconds()
        time.sleep(window)
        ends = [proxy.snapshot() for proxy in proxies]
        postgres_end = postgres_cpu_seconds()
        processes.check_alive()
        cpu_end = sum(cpu_seconds(pid) for pid in processes.pids)
        still = _states(store_db).get("RUNNING", 0)
        if still != STEPS_PER_RUN * runs:
            raise BenchProcessError(
                f"only {still} of {STEPS_PER_RUN * runs} steps still RUNNING after the window"
            )
        store_executors, store_workers, dagster = (
            end.since(start) for end, start in zip(ends, starts, strict=True)
        )
        figures = IdleFigures(
            runs=runs,
            build=build,
            window=window,
            store_executors=store_executors,
            store_workers=store_workers,
            dagster=dagster,
            run_cpu=cpu_end - cpu_start,
            postgres_cpu=postgres_end - postgres_start,
        )
        print(
            f"  store {figures.store_rate:.2f} round trips/s per run, Dagster DB "
            f"{figures.per_run_second(dagster):.2f}/s per run; releasing the steps",
            flush=True,
        )
        release.touch()
        outcomes = processes.wait(timeout=120 + 5 * runs)
        print(f"  {len(outcomes)} run(s) succeeded", flush=True)
    return figures


def _dagster_database(home: Path) -> str:
    """The database ``dagster.yaml`` names (``db_name: ...``)."""
    match = re.search(r"^\s*db_name:\s*(\S+)\s*$", (home / "dagster.yaml").read_text(), re.M)
    if match is None:
        raise BenchProcessError(f"no db_name in {home / 'dagster.yaml'}")
    return match.group(1)


def _count_rows(database: str, query: str) -> list[tuple[Any, ...]]:
    """``query``'s rows, read directly (not through a proxy); none if its table is missing."""
    import psycopg  # noqa: PLC0415

    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            return conn.execute(query).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


def _states(database: str) -> dict[str, int]:
    """The store's records by state."""
    rows = _count_rows(database, f"SELECT state, count(*) FROM {STORE_TABLE} GROUP BY state")
    return {str(state): int(count) for state, count in rows}


def _steps_started(dagster_db: str) -> int:
    """STEP_START events in Dagster's event log (the steps' code has begun)."""
    rows = _count_rows(
        dagster_db, "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'STEP_START'"
    )
    return int(rows[0][0]) if rows else 0


def _wait_running(
    database: str, dagster_db: str, steps: int, processes: RunProcesses, workers: Workers
) -> None:
    """Until ``steps`` records are RUNNING and have started (STEP_START); raises if a process
    dies or it takes too long."""
    timeout = 120 + 10 * processes.count
    deadline = time.monotonic() + timeout
    next_print = 0.0
    while True:
        states = _states(database)
        running = states.get("RUNNING", 0)
        if running >= steps and _steps_started(dagster_db) >= steps:
            return
        processes.check_alive()
        workers.check_alive()
        now = time.monotonic()
        if now > deadline:
            raise BenchProcessError(
                f"{running} of {steps} steps RUNNING after {timeout} s (store: {states})"
            )
        if now >= next_print:
            shown = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no records yet"
            print(f"  waiting for {steps} steps RUNNING: {shown}", flush=True)
            next_print = now + 5
        time.sleep(0.5)


def _report(
    figures: list[IdleFigures], kind: str, conditions: Conditions, postgres_cores: float
) -> None:
    noisy = conditions.noisy
    window = figures[0].window if figures else 0.0
    print(
        f"\nA waiting run's cost: PostgreSQL store and Dagster storage, SQS on {kind} (its own "
        f"process), {WORKERS} workers, 2 sleeping steps per run, a {window:g} s window"
    )
    print(
        "| N | build | store round trips/s per run | executors / workers | "
        "Dagster DB round trips/s per run | connections opened/s per run (store / Dagster DB) | "
        "store connections max open (executors + workers) | Dagster DB connections max open | "
        "run process CPU per run | PostgreSQL CPU per run |"
    )
    print("|---" * 10 + "|")
    for f in figures:
        store_opened = f.store_executors.connections_opened + f.store_workers.connections_opened
        print(
            f"| {f.runs} | {f.build.label} | {f.store_rate:.2f} | "
            f"{f.per_run_second(f.store_executors):.2f} / "
            f"{f.per_run_second(f.store_workers):.2f} | {f.per_run_second(f.dagster):.2f} | "
            f"{store_opened / f.window / f.runs:.2f} / "
            f"{f.dagster.connections_opened / f.window / f.runs:.2f} | "
            f"{f.store_executors.max_open + f.store_workers.max_open} "
            f"({f.store_executors.max_open} + {f.store_workers.max_open}) | "
            f"{f.dagster.max_open} | {100 * f.run_cpu / f.window / f.runs:.1f} % | "
            f"{100 * f.postgres_cpu / f.window / f.runs:.1f} % |"
        )
    for line in conditions.lines():
        print(line)
    print(
        f"PostgreSQL used {postgres_cores:.2f} cores on average meanwhile, counted as this "
        "benchmark's (the load on the databases is what it measures), not as other processes'"
    )
    print(
        "\n* store round trips/s per run: statements the store's database received (one per "
        "simple query, one per extended-protocol Sync), from run processes and workers, per "
        "second of the window, divided by N\n"
        "* executors / workers: the same, split by who sent them (each has its own proxy)\n"
        "* Dagster DB round trips/s per run: the same for Dagster's storage (runs, event log; "
        "run processes and workers together)\n"
        "* connections opened/s per run: new connections to each database in the window, per "
        "second, divided by N (each one a PostgreSQL backend started)\n"
        "* connections max open: the most connections open at once through each proxy during "
        "the window (the executors' and workers' peaks added: an upper bound of the store's)\n"
        "* run process CPU per run: CPU time of the run processes during the window, per run, "
        "in % of one core\n"
        "* PostgreSQL CPU per run: the same for the local PostgreSQL server (every postgres "
        "process, ended backends included; another client's queries would count too)"
    )
    print()
    by_key = {(f.runs, f.build.name): f for f in figures}
    for f in figures:
        if f.build.name != "current":
            continue
        line = (
            f"aim <= {AIM_ROUND_TRIPS:g} store round trips/s per waiting run, N={f.runs}: "
            f"{f.store_rate:.2f} {aim_verdict(f.store_rate <= AIM_ROUND_TRIPS, noisy)}"
        )
        base = by_key.get((f.runs, "baseline"))
        if base is not None and f.store_rate > 0:
            line += f"; baseline {base.store_rate:.2f} ({base.store_rate / f.store_rate:.0f}x)"
        print(line)
