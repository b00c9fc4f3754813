"""Hand-off latency: from a step's end in a worker to the executor launching its successor.

    uv run nox -s bench -- latency [--runs R] [--localstack]

A chain job runs on two real ``dagster-taskiq worker`` processes over a real SQS server in its
own process (moto's server; LocalStack with ``--localstack``), never in this one, with a SQLite
Dagster instance and the SQLite idempotency store. For each step after the first, the hand-off
is the successor record's creation time in the store (the executor's ``ensure_pending``, just
before it sends the message) minus the predecessor's ``finished_at`` (taken by the worker as
the step ends). Both clocks are this machine's. The baseline in the same run is dagster-celery's
and ``StepDelegatingExecutor``'s fixed polling floor of one second per step hand-off, which
these numbers are compared against. The load average is printed before and after: a 1-minute
figure above 1.5 makes the run noisy, not comparable, never a result.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks._common import (
    add_localstack_argument,
    aim_verdict,
    is_noisy,
    load_average,
    load_verdict,
    sqs_server,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packages" / "dagster-taskiq-core" / "tests"))

POLLING_FLOOR_SECONDS = 1.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- latency", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    add_localstack_argument(parser)
    args = parser.parse_args(argv)

    from dagster import DagsterInstance  # noqa: PLC0415

    import job_shapes  # noqa: PLC0415 - the tests' job shapes, made importable above
    from dagster_taskiq import SqlIdempotencyStore  # noqa: PLC0415
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415
    from executor_harness import run_job  # noqa: PLC0415
    from worker_processes import SqsTarget, WorkerProcesses  # noqa: PLC0415

    kind = "localstack" if args.localstack else "moto"
    handoffs: list[float] = []
    load_before, line_before = load_average("before")
    print(line_before, flush=True)
    with tempfile.TemporaryDirectory() as tmp_name, sqs_server(kind) as server:
        tmp = Path(tmp_name)
        for sub in ("home", "logs"):
            (tmp / sub).mkdir()
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
    load_after, line_after = load_average("after")
    noisy = is_noisy(load_before, load_after)
    ms = [h * 1000 for h in handoffs]
    p50, p95 = statistics.median(ms), percentile(ms, 0.95)
    print(
        f"\nstep hand-off over {kind} (its own process), {len(ms)} hand-offs in "
        f"{args.runs} chain runs"
    )
    print(f"  {line_before}")
    print(f"  p50 {p50:.1f} ms   p95 {p95:.1f} ms   min {min(ms):.1f} ms   max {max(ms):.1f} ms")
    print(
        f"  vs a 1 s polling floor (dagster-celery, StepDelegatingExecutor): p50 is "
        f"{p50 / (POLLING_FLOOR_SECONDS * 1000):.3f}x of it"
    )
    print(f"  {line_after}")
    print(f"  {load_verdict(noisy)}")
    print(f"  aim: p50 under 25 ms {aim_verdict(p50 < 25, noisy)}")
    return 0
