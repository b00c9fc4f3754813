"""taskiq_executor on two workers vs Dagster's multiprocess and in-process executors.

    uv run nox -s bench -- executors [--repeat N] [--skip-multiprocess]

In one run, on the same jobs (``dagster_taskiq_examples.bench_jobs``: a 20-op chain and a 50-op
fan-out into one collector, trivial ops) and one temporary SQLite Dagster instance:

* ``taskiq``: ``taskiq_executor`` over moto's SQS server (in this process) with two
  ``dagster-taskiq worker`` processes (concurrency 2 each) and the SQLite idempotency store;
* ``multiprocess``: ``multiprocess_executor`` with ``max_concurrent: 2``;
* ``in_process``: ``in_process_executor``.

A warm-up round runs each job once on each executor untimed (the workers load the code, the
run process imports it), then ``--repeat`` timed rounds follow; within a round the executors
take turns on each job, so background load falls on all of them alike. The median wall time is
reported. Per-step
overhead is measured on the chain, whose ops do no work: the time between one step's
STEP_SUCCESS event and the next one's, which is all executor and Dagster overhead. Ratios are
against the baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

CHAIN, FAN_OUT = "chain_20", "fan_out_50"
EXECUTORS = ("taskiq", "multiprocess", "in_process")


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
    from dagster import execute_job  # noqa: PLC0415

    from dagster_taskiq.code_locations import job_in_module  # noqa: PLC0415

    if executor == "taskiq":
        target = job_in_module("dagster_taskiq_examples.definitions", job)
    else:
        target = job_in_module(
            "dagster_taskiq_examples.bench_jobs", f"{job}_{executor}", attribute="bench_defs"
        )
    started = time.perf_counter()
    result = execute_job(target, instance, run_config=run_config)
    wall = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"{executor} {job}: run {result.run_id} failed")
    return wall, result.run_id


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- executors", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per executor and job")
    parser.add_argument(
        "--skip-multiprocess", action="store_true", help="skip the slow multiprocess baseline"
    )
    args = parser.parse_args(argv)

    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq.logs import configure_logging  # noqa: PLC0415
    from dagster_taskiq_examples._cluster import DemoQueue, WorkerPool  # noqa: PLC0415
    from dagster_taskiq_testing.servers import MotoServer  # noqa: PLC0415

    configure_logging("console", "WARNING")  # the run process's own log; steps print below
    executors = [e for e in EXECUTORS if not (args.skip_multiprocess and e == "multiprocess")]
    walls: dict[tuple[str, str], list[float]] = {}
    gaps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name, MotoServer() as server:
        tmp = Path(tmp_name)
        (tmp / "home").mkdir()
        store_url = f"sqlite:///{tmp / 'store.db'}"
        queue = DemoQueue(endpoint_url=server.endpoint_url, region="us-east-1")
        configs = {
            "taskiq": {
                "execution": {
                    "config": {
                        "broker": {"backend": "sqs", "settings": queue.broker_settings()},
                        "store_url": store_url,
                        "taskiq_visibility_timeout": float(queue.visibility_timeout),
                    }
                }
            },
            "multiprocess": {"execution": {"config": {"max_concurrent": 2}}},
            "in_process": {},
        }
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
        with (
            DagsterInstance.local_temp(str(tmp / "home")) as instance,
            WorkerPool(queue, store_url, count=2, concurrency=2, log_dir=tmp / "logs") as pool,
        ):
            pool.wait_ready()
            # Rounds outermost, executors interleaved within each round: load from other work
            # on the machine then falls on every executor alike.
            for n in range(args.repeat + 1):
                label = "warm-up" if n == 0 else f"run {n}/{args.repeat}"
                for job in (CHAIN, FAN_OUT):
                    for executor in executors:
                        config = {**configs[executor], **quiet}
                        wall, run_id = _run_one(instance, executor, job, config)
                        print(f"  {executor:<12} {job:<10} {label:<9} {wall:7.2f} s", flush=True)
                        if n == 0:
                            continue
                        walls.setdefault((executor, job), []).append(wall)
                        if job == CHAIN:
                            gaps.setdefault(executor, []).extend(_chain_gaps(instance, run_id))
    _report(executors, walls, gaps, args.repeat)
    return 0


def _report(
    executors: list[str],
    walls: dict[tuple[str, str], list[float]],
    gaps: dict[str, list[float]],
    repeat: int,
) -> None:
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415

    median = {key: statistics.median(values) for key, values in walls.items()}
    print(f"\nmedian of {repeat} timed runs after one warm-up, seconds; ratios to the baselines")
    header = (
        "| executor | chain_20 wall | fan_out_50 wall | chain vs in_process | "
        "fan-out vs in_process | chain vs multiprocess | fan-out vs multiprocess | "
        "per-step overhead p50 / p95 (chain) |"
    )
    print(header)
    print("|---" * 8 + "|")
    for executor in executors:
        cells = [executor]
        cells += [f"{median[(executor, job)]:.2f} s" for job in (CHAIN, FAN_OUT)]
        for base in ("in_process", "multiprocess"):
            for job in (CHAIN, FAN_OUT):
                if (base, job) in median:
                    cells.append(f"{median[(executor, job)] / median[(base, job)]:.2f}x")
                else:
                    cells.append("-")
        ms = [g * 1000 for g in gaps.get(executor, [])]
        cells.append(f"{statistics.median(ms):.0f} / {percentile(ms, 0.95):.0f} ms" if ms else "-")
        print("| " + " | ".join(cells) + " |")
    if ("in_process", FAN_OUT) in median:
        fan = median[("taskiq", FAN_OUT)] / median[("in_process", FAN_OUT)]
        chain = median[("taskiq", CHAIN)] / median[("in_process", CHAIN)]
        print(f"\naim fan-out <= 1.0x in_process: {fan:.2f}x ({_verdict(fan <= 1.0)})")
        print(f"aim chain <= 1.5x in_process: {chain:.2f}x ({_verdict(chain <= 1.5)})")
    if ("multiprocess", CHAIN) in median:
        for job in (CHAIN, FAN_OUT):
            speedup = median[("multiprocess", job)] / median[("taskiq", job)]
            print(
                f"aim {job} >= 20x faster than multiprocess: {speedup:.1f}x "
                f"({_verdict(speedup >= 20)})"
            )


def _verdict(met: bool) -> str:
    return "met" if met else "not met"
