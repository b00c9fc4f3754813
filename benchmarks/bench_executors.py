"""taskiq_executor on two workers vs Dagster's multiprocess and in-process executors.

    uv run nox -s bench -- executors [--repeat N] [--skip-multiprocess] [--localstack]
                                     [--dagster-storage sqlite|postgres|both]

On the same jobs (``dagster_taskiq_examples.bench_jobs``: a 20-op chain and a 50-op fan-out
into one collector, trivial ops), once per Dagster storage (``--dagster-storage``, ``both`` by
default: SQLite, the embedded default, then PostgreSQL, what production uses, each measured
from scratch with its own table), on an instance under a temporary ``DAGSTER_HOME`` with
telemetry off (``benchmarks._common.dagster_home``):

* ``taskiq``: ``taskiq_executor`` over SQS, moto's server in its own process (LocalStack with
  ``--localstack``), never in this one, with two ``dagster-taskiq worker`` processes
  (concurrency 2 each) and the idempotency store on the same kind of database as Dagster's
  storage (SQLite with SQLite; with PostgreSQL, a fresh database of its own);
* ``multiprocess``: ``multiprocess_executor`` with ``max_concurrent: 2``;
* ``in_process``: ``in_process_executor``.

A warm-up round runs each job once on each executor untimed (the workers load the code, the run
process imports it), then ``--repeat`` timed rounds follow; within a round the executors take
turns on each job, so background load falls on all of them alike. The timed rounds wait for the
load average to settle to 1.5; reported per storage: the load average before and after and the
CPU other processes used meanwhile (a start above load 1.5, or others above half a core, makes
the table noisy, not comparable, never a result), the median wall time, the median event-log
rows per run (every row, plain log records included) and their ratio to in_process's, and
per-step overhead p50/p95 on the chain, whose ops do no work: the time between one step's
STEP_SUCCESS event and the next one's, which is all executor and Dagster overhead. Ratios are
against the baselines measured in the same table; the aims are printed met / not met.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Conditions,
    ConditionsWatch,
    add_localstack_argument,
    add_storage_argument,
    aim_verdict,
    dagster_home,
    event_log_rows,
    postgres_database,
    sqs_server,
    storages,
    timed_run,
)

CHAIN, FAN_OUT = "chain_20", "fan_out_50"
JOBS = (CHAIN, FAN_OUT)
EXECUTORS = ("taskiq", "multiprocess", "in_process")
ERRORS_ONLY = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclasses.dataclass
class Measurement:
    """One table's figures: per (executor, job) wall times and event-log rows, chain gaps, and
    the machine's conditions during the timed rounds."""

    storage: str
    sqs: str
    repeat: int
    conditions: Conditions | None = None
    walls: dict[tuple[str, str], list[float]] = dataclasses.field(default_factory=dict)
    rows: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)
    gaps: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @property
    def noisy(self) -> bool:
        return self.conditions is None or self.conditions.noisy


def _chain_gaps(instance: Any, run_id: str) -> list[float]:
    from dagster import DagsterEventType  # noqa: PLC0415

    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.STEP_SUCCESS, limit=1000
    ).records
    times = sorted(r.event_log_entry.timestamp for r in records)
    return [b - a for a, b in itertools.pairwise(times)]


def _run_one(
    instance: Any, executor: str, job: str, run_config: dict[str, Any]
) -> tuple[float, str]:
    from dagster_taskiq.code_locations import job_in_module  # noqa: PLC0415

    if executor == "taskiq":
        target = job_in_module("dagster_taskiq_examples.definitions", job)
    else:
        target = job_in_module(
            "dagster_taskiq_examples.bench_jobs", f"{job}_{executor}", attribute="bench_defs"
        )
    wall, result = timed_run(target, instance, run_config, f"{executor} {job}")
    return wall, result.run_id


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- executors", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per executor and job")
    parser.add_argument(
        "--skip-multiprocess", action="store_true", help="skip the slow multiprocess baseline"
    )
    add_localstack_argument(parser)
    add_storage_argument(parser, both=True)
    args = parser.parse_args(argv)

    from dagster_taskiq.logs import configure_logging  # noqa: PLC0415

    configure_logging("console", "WARNING")  # the run process's own log; steps print below
    executors = [e for e in EXECUTORS if not (args.skip_multiprocess and e == "multiprocess")]
    kind = "localstack" if args.localstack else "moto"
    with sqs_server(kind) as server:
        for storage in storages(args.dagster_storage):
            measurement = _measure(server.endpoint_url, kind, storage, executors, args.repeat)
            _report(executors, measurement)
    return 0


def _measure(
    endpoint_url: str, sqs: str, storage: str, executors: list[str], repeat: int
) -> Measurement:
    """Warm-up and ``repeat`` timed rounds on a fresh instance, queue, store and worker pool."""
    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq_examples._cluster import DemoQueue, WorkerPool  # noqa: PLC0415

    print(f"\n== {storage} storage, SQS on {sqs}", flush=True)
    measurement = Measurement(storage, sqs, repeat)
    watch: ConditionsWatch | None = None
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        dagster_home(Path(tmp_name), storage),
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        # The idempotency store goes with the storage: SQLite beside SQLite (one machine),
        # PostgreSQL (its own fresh database) beside PostgreSQL, as production runs it.
        if storage == "postgres":
            store_db = stack.enter_context(postgres_database())
            store_url = f"postgresql://postgres@127.0.0.1:5432/{store_db}"
        else:
            store_url = f"sqlite:///{tmp / 'store.db'}"
        queue = DemoQueue(endpoint_url=endpoint_url, region="us-east-1")
        configs: dict[str, dict[str, Any]] = {
            "taskiq": {
                "execution": {
                    "config": {
                        "broker": {"backend": "sqs", "settings": queue.broker_settings()},
                        "store_url": store_url,
                        "visibility_timeout": float(queue.visibility_timeout),
                    }
                }
            },
            "multiprocess": {"execution": {"config": {"max_concurrent": 2}}},
            "in_process": {},
        }
        # Created (its schema stamped) before any worker opens it: processes that create a
        # fresh SQLite instance at once can stamp two alembic heads.
        instance = stack.enter_context(DagsterInstance.get())
        pool = stack.enter_context(
            WorkerPool(queue, store_url, count=2, concurrency=2, log_dir=tmp / "logs")
        )
        pool.wait_ready()
        # Rounds outermost, executors interleaved within each round: load from other work on
        # the machine then falls on every executor alike.
        for n in range(repeat + 1):
            label = "warm-up" if n == 0 else f"run {n}/{repeat}"
            if n == 1:  # the timed rounds start on a settled machine
                watch = ConditionsWatch.settle()
            for job in JOBS:
                for executor in executors:
                    config = {**configs[executor], **ERRORS_ONLY}
                    wall, run_id = _run_one(instance, executor, job, config)
                    rows = event_log_rows(instance, run_id)
                    print(
                        f"  {executor:<12} {job:<10} {label:<9} {wall:7.2f} s {rows:5d} rows",
                        flush=True,
                    )
                    if n == 0:
                        continue
                    measurement.walls.setdefault((executor, job), []).append(wall)
                    measurement.rows.setdefault((executor, job), []).append(rows)
                    if job == CHAIN:
                        measurement.gaps.setdefault(executor, []).extend(
                            _chain_gaps(instance, run_id)
                        )
        if watch is not None:
            measurement.conditions = watch.stop()
    return measurement


def _report(executors: list[str], m: Measurement) -> None:
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415

    median = {key: statistics.median(values) for key, values in m.walls.items()}
    rows = {key: statistics.median(values) for key, values in m.rows.items()}
    print(
        f"\n{m.storage} storage, SQS on {m.sqs} (its own process): median of {m.repeat} timed "
        "run(s) after one warm-up, seconds; ratios to the baselines; event-log rows per run "
        "(median, every row) and their ratio to in_process's"
    )
    print(
        "| executor | chain_20 wall | fan_out_50 wall | chain vs in_process | "
        "fan-out vs in_process | chain vs multiprocess | fan-out vs multiprocess | "
        "per-step overhead p50 / p95 (chain) | chain_20 event-log rows | "
        "fan_out_50 event-log rows |"
    )
    print("|---" * 10 + "|")
    for executor in executors:
        cells = [executor]
        cells += [f"{median[(executor, job)]:.2f} s" for job in JOBS]
        for base in ("in_process", "multiprocess"):
            for job in JOBS:
                if (base, job) in median:
                    cells.append(f"{median[(executor, job)] / median[(base, job)]:.2f}x")
                else:
                    cells.append("-")
        ms = [g * 1000 for g in m.gaps.get(executor, [])]
        cells.append(f"{statistics.median(ms):.0f} / {percentile(ms, 0.95):.0f} ms" if ms else "-")
        for job in JOBS:
            cell = f"{rows[(executor, job)]:.0f}"
            if ("in_process", job) in rows:
                cell += f" ({rows[(executor, job)] / rows[('in_process', job)]:.2f}x)"
            cells.append(cell)
        print("| " + " | ".join(cells) + " |")
    for line in m.conditions.lines() if m.conditions else []:
        print(line)
    _print_aims(m, median, rows)


def _print_aims(
    m: Measurement,
    median: dict[tuple[str, str], float],
    rows: dict[tuple[str, str], float],
) -> None:
    print()
    if ("in_process", FAN_OUT) in median:
        fan = median[("taskiq", FAN_OUT)] / median[("in_process", FAN_OUT)]
        chain = median[("taskiq", CHAIN)] / median[("in_process", CHAIN)]
        for stage, fan_aim, chain_aim in (("first", 1.0, 1.5), ("second", 0.7, 1.3)):
            print(
                f"{stage} aim fan-out <= {fan_aim:.1f}x in_process: {fan:.2f}x "
                f"{aim_verdict(fan <= fan_aim, m.noisy)}"
            )
            print(
                f"{stage} aim chain <= {chain_aim:.1f}x in_process: {chain:.2f}x "
                f"{aim_verdict(chain <= chain_aim, m.noisy)}"
            )
        taskiq_rows, base_rows = rows[("taskiq", CHAIN)], rows[("in_process", CHAIN)]
        ratio = taskiq_rows / base_rows
        print(
            f"aim chain event-log rows <= 1.3x in_process's: {taskiq_rows:.0f} vs "
            f"{base_rows:.0f} = {ratio:.2f}x {aim_verdict(ratio <= 1.3, m.noisy)}"
        )
    if ("multiprocess", CHAIN) in median:
        for job in JOBS:
            speedup = median[("multiprocess", job)] / median[("taskiq", job)]
            print(
                f"aim {job} >= 20x faster than multiprocess: {speedup:.1f}x "
                f"{aim_verdict(speedup >= 20, m.noisy)}"
            )
