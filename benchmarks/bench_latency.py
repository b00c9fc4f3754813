"""Hand-off latency: from a step's end in a worker to the executor launching its successor.

    uv run nox -s bench -- latency [--steps N] [--runs R]

A chain job runs on two real ``dagster-taskiq worker`` processes over a real SQS server (moto,
in-process), with a SQLite Dagster instance and the SQLite idempotency store. For each step
after the first, the hand-off is the successor record's creation time in the store (the
executor's ``ensure_pending``, just before it sends the message) minus the predecessor's
``finished_at`` (taken by the worker as the step ends). Both clocks are this machine's.
The baseline in the same run is dagster-celery's and ``StepDelegatingExecutor``'s fixed polling
floor of one second per step hand-off, which these numbers are compared against.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packages" / "dagster-taskiq-core" / "tests"))

POLLING_FLOOR_SECONDS = 1.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- latency", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    from dagster import DagsterInstance  # noqa: PLC0415

    import job_shapes  # noqa: PLC0415 - the tests' job shapes, made importable above
    from dagster_taskiq import SqlIdempotencyStore  # noqa: PLC0415
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415
    from dagster_taskiq_testing.servers import MotoServer  # noqa: PLC0415
    from executor_harness import run_job  # noqa: PLC0415
    from worker_processes import SqsTarget, WorkerProcesses  # noqa: PLC0415

    handoffs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for sub in ("home", "logs"):
            (tmp / sub).mkdir()
        server = MotoServer().start()
        try:
            target = SqsTarget(endpoint_url=server.endpoint_url, visibility_timeout=30)
            store_url = f"sqlite:///{tmp / 'store.db'}"
            env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
            with (
                DagsterInstance.local_temp(str(tmp / "home")) as instance,
                WorkerProcesses(target, store_url, env, count=2, log_dir=tmp / "logs"),
            ):
                store = SqlIdempotencyStore(store_url)
                for n in range(args.runs + 1):  # the first run warms the workers up
                    report = run_job(
                        job_shapes.chain, instance, store, run_config=target.run_config(store_url)
                    )
                    assert report.success, "chain run failed"
                    if n == 0:
                        continue
                    records = sorted(report.records, key=lambda r: r.created_at)
                    for before, after in itertools.pairwise(records):
                        assert before.result is not None
                        handoffs.append(after.created_at - before.result.finished_at)
                store.close()
        finally:
            server.stop()
    ms = [h * 1000 for h in handoffs]
    p50, p95 = statistics.median(ms), percentile(ms, 0.95)
    print(f"step hand-off over moto, {len(ms)} hand-offs in {args.runs} chain runs")
    print(f"  p50 {p50:.1f} ms   p95 {p95:.1f} ms   min {min(ms):.1f} ms   max {max(ms):.1f} ms")
    print(
        f"  vs a 1 s polling floor (dagster-celery, StepDelegatingExecutor): p50 is "
        f"{p50 / (POLLING_FLOOR_SECONDS * 1000):.3f}x of it"
    )
    print(f"  aim: p50 under 25 ms: {'met' if p50 < 25 else 'not met'}")
    return 0
