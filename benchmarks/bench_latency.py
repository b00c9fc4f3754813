"""Hand-off latency: from a step's end in a worker to the executor launching its successor.

    uv run nox -s bench -- latency [--runs R] [--localstack] [--store sqlite|postgres|both]
                                   [--signing unsigned|signed|both]

A chain job runs on two real ``dagster-taskiq worker`` processes over a real SQS server in its
own process (moto's server; LocalStack with ``--localstack``), never in this one, with a SQLite
Dagster instance, once per idempotency store (``--store``, ``both`` by default): SQLite (the
executor polls ``PRAGMA data_version``) and PostgreSQL on 127.0.0.1:5432 (the executor waits on
LISTEN/NOTIFY), each with its own table prefix. For each step after the first, the hand-off is
the successor record's creation time in the store (the executor's ``ensure_pending``, just
before it sends the message) minus the predecessor's ``finished_at`` (taken by the worker as the
step ends). Both clocks are this machine's. The baseline is dagster-celery's and
``StepDelegatingExecutor``'s fixed polling floor of one second per step hand-off. With
``--signing both`` (the default) each round runs the chain unsigned and signed (executor
``signing_key``, workers with the key and ``--require-signed``, each mode on its own queue and
workers, all started first), interleaved, and prints what signing costs at p50. The timed
runs wait for the load average to settle to 1.5; the load before and after and the CPU other
processes used meanwhile are printed (a start above load 1.5, or others above half a core,
makes the run noisy, not comparable, never a result).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks._common import (
    ConditionsWatch,
    add_localstack_argument,
    aim_verdict,
    sqs_server,
)
from benchmarks._runs import ERRORS_ONLY

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packages" / "dagster-taskiq-core" / "tests"))

POLLING_FLOOR_SECONDS = 1.0


POSTGRES_STORE_URL = "postgresql://postgres@127.0.0.1:5432/test"
STORES = ("sqlite", "postgres")
MODES = ("unsigned", "signed")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- latency", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=(*STORES, "both"), default="both")
    parser.add_argument("--signing", choices=(*MODES, "both"), default="both")
    add_localstack_argument(parser)
    args = parser.parse_args(argv)
    from dagster_taskiq.logs import configure_logging  # noqa: PLC0415

    configure_logging("console", "WARNING")  # the executor's debug events are not the result
    kind = "localstack" if args.localstack else "moto"
    stores = STORES if args.store == "both" else (args.store,)
    modes = MODES if args.signing == "both" else (args.signing,)
    with sqs_server(kind) as server:
        for store in stores:
            _measure(server.endpoint_url, kind, store, args.runs, modes)
    return 0


def _measure(
    endpoint_url: str, kind: str, store_kind: str, runs: int, modes: tuple[str, ...]
) -> None:
    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq import SqlIdempotencyStore  # noqa: PLC0415
    from support import job_shapes  # noqa: PLC0415 - the tests' job shapes, made importable above
    from support.executor_harness import run_job  # noqa: PLC0415
    from support.store import drop_store_tables, unique_prefix  # noqa: PLC0415
    from support.worker_processes import SqsTarget, WorkerProcesses  # noqa: PLC0415

    handoffs: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "home").mkdir()
        prefix = unique_prefix()
        store_url = (
            POSTGRES_STORE_URL if store_kind == "postgres" else f"sqlite:///{tmp / 'store.db'}"
        )
        store = SqlIdempotencyStore(store_url, table_prefix=prefix)
        watch: ConditionsWatch | None = None
        try:
            with contextlib.ExitStack() as stack:
                instance = stack.enter_context(DagsterInstance.local_temp(str(tmp / "home")))
                configs = {}
                for mode in modes:  # a queue and two workers for each mode, all started first
                    target = SqsTarget(endpoint_url=endpoint_url, visibility_timeout=30)
                    key = f"bench:{secrets.token_hex(32)}" if mode == "signed" else None
                    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
                    args: tuple[str, ...] = ("--table-prefix", prefix)
                    if key is not None:
                        env["DAGSTER_TASKIQ_SIGNING_KEY"] = key
                        args += ("--require-signed",)
                    (tmp / "logs" / mode).mkdir(parents=True)
                    stack.enter_context(
                        WorkerProcesses(
                            target,
                            store_url,
                            env,
                            count=2,
                            log_dir=tmp / "logs" / mode,
                            extra_args=args,
                        )
                    )
                    executor = {"table_prefix": prefix, **({"signing_key": key} if key else {})}
                    configs[mode] = {**target.run_config(store_url, **executor), **ERRORS_ONLY}
                for n in range(runs + 1):  # the first round warms the workers up
                    if n == 1:
                        watch = ConditionsWatch.settle()
                    for mode in modes:  # interleaved: each round runs every mode once
                        report = run_job(
                            job_shapes.chain, instance, store, run_config=configs[mode]
                        )
                        assert report.success, f"{mode} chain run failed"
                        if n == 0:
                            continue
                        records = sorted(report.records, key=lambda r: r.created_at)
                        for before, after in itertools.pairwise(records):
                            assert before.result is not None
                            handoffs[mode].append(after.created_at - before.result.finished_at)
            conditions = watch.stop() if watch is not None else None
        finally:
            drop_store_tables(store)
            store.close()
    noisy = conditions is None or conditions.noisy
    print(
        f"\nstep hand-off over {kind} (its own process), {store_kind} store, "
        f"{runs} chain runs a mode"
    )
    p50s = {mode: _report(mode, [h * 1000 for h in found]) for mode, found in handoffs.items()}
    for line in conditions.lines() if conditions else []:
        print(f"  {line}")
    if "unsigned" in p50s:
        print(f"  aim: unsigned p50 under 25 ms {aim_verdict(p50s['unsigned'] < 25, noisy)}")
    if len(p50s) == 2:
        cost = p50s["signed"] - p50s["unsigned"]
        print(
            f"  signing costs {cost:+.2f} ms at p50; aim: within 1 ms "
            f"{aim_verdict(abs(cost) <= 1.0, noisy)}",
            flush=True,
        )


def _report(mode: str, ms: list[float]) -> float:
    from dagster_taskiq_examples._summary import percentile  # noqa: PLC0415

    p50, p95 = statistics.median(ms), percentile(ms, 0.95)
    print(
        f"  {mode:>8}: {len(ms)} hand-offs  p50 {p50:.1f} ms   p95 {p95:.1f} ms   "
        f"min {min(ms):.1f} ms   max {max(ms):.1f} ms   "
        f"({p50 / (POLLING_FLOOR_SECONDS * 1000):.3f}x of a 1 s polling floor)"
    )
    return p50
