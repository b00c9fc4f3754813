"""Idempotency store throughput: claim+finish pairs per second vs plain UPDATE round trips.

    uv run nox -s bench -- store [--pairs N] [--clients C] [--postgres-url URL]

For each database (PostgreSQL at --postgres-url, SQLite in a temp file) and C concurrent client
processes (as workers are), in the same run and through the same kind of SQLAlchemy engine:
  * baseline: plain single-row ``UPDATE t SET n = n + 1 WHERE id = :id`` round trips per second;
  * store: ``claim`` + ``finish`` pairs per second on distinct PENDING records.
A pair is two round trips, so a store with no overhead over bare SQL scores 0.5x the baseline.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import sqlalchemy as sa

from benchmarks._common import ConditionsWatch
from dagster_taskiq import (
    CodePointer,
    ExecutionResult,
    OpExecutionTask,
    SqlIdempotencyStore,
    TaskState,
    idempotency_key,
)

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def _client(url: str, prefix: str, kind: str, client: int, count: int, run_id: str) -> float:  # noqa: PLR0917
    """One client process: ``count`` operations of ``kind``; returns its end time."""
    store = SqlIdempotencyStore(url, table_prefix=prefix)
    plain = sa.text(f"UPDATE {prefix}bench_plain SET n = n + 1 WHERE id = :id")
    steps = [f"c{client}_s{i}" for i in range(count)]
    if kind == "pairs":
        for step in steps:
            store.ensure_pending(_task(run_id, step))
    with store.engine.connect() as conn:  # warm the pool and the statement caches
        conn.execute(sa.text("SELECT 1"))
    _START.wait()
    if kind == "plain":
        for _ in range(count):
            with store.engine.connect() as conn:
                conn.execute(plain, {"id": client})
    else:
        owner = f"client-{client}"
        for step in steps:
            key = idempotency_key(run_id, step)
            token = store.claim(key, owner, 60)
            assert token is not None
            result = ExecutionResult(
                idempotency_key=key,
                state=TaskState.COMPLETED,
                attempt=token,
                worker_id=owner,
                started_at=0.0,
                finished_at=0.0,
            )
            assert store.finish(key, token, result)
    ended = time.perf_counter()
    store.close()
    return ended


def _task(run_id: str, step: str) -> OpExecutionTask:
    return OpExecutionTask(
        run_id=run_id,
        step_key=step,
        idempotency_key=idempotency_key(run_id, step),
        code=CodePointer(job_name="bench", module="bench"),
        instance_ref={},
        created_at=time.time(),
    )


_START: Any = None


def _init(start: Any) -> None:
    global _START  # noqa: PLW0603 - per-process handle of the start barrier
    _START = start


def _timed(url: str, prefix: str, kind: str, clients: int, count: int, context: Any) -> float:  # noqa: PLR0917
    """Run ``clients`` client processes started together; return operations per second."""
    start = context.Barrier(clients + 1)
    with ProcessPoolExecutor(
        clients, mp_context=context, initializer=_init, initargs=(start,)
    ) as pool:
        run_id = uuid.uuid4().hex
        futures = [
            pool.submit(_client, url, prefix, kind, n, count, run_id) for n in range(clients)
        ]
        start.wait()
        began = time.perf_counter()
        ended = max(f.result() for f in futures)
    return clients * count / (ended - began)


def _measure(url: str, clients: int, per_client: int, rounds: int) -> tuple[float, float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    store = SqlIdempotencyStore(url, table_prefix=prefix)
    store.get("warm:up")  # create the schema outside the timed part
    with store.engine.connect() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE {prefix}bench_plain (id INTEGER PRIMARY KEY, n INTEGER)")
        )
        for n in range(clients):
            conn.execute(sa.text(f"INSERT INTO {prefix}bench_plain VALUES (:id, 0)"), {"id": n})
    context = multiprocessing.get_context("fork")
    try:
        baselines, pairs = [], []
        for _ in range(rounds):  # interleaved, so that noise hits both alike
            baselines.append(_timed(url, prefix, "plain", clients, per_client * 2, context))
            pairs.append(_timed(url, prefix, "pairs", clients, per_client, context))
        return statistics.median(baselines), statistics.median(pairs)
    finally:
        with store.engine.connect() as conn:
            for table in ("idempotency", "schema_version", "bench_plain"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {prefix}{table}"))
        store.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- store", description=__doc__)
    parser.add_argument("--pairs", type=int, default=1500, help="claim+finish pairs per client")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args(argv)
    watch = ConditionsWatch.settle()
    with tempfile.TemporaryDirectory() as tmp:
        targets = {
            "PostgreSQL": args.postgres_url,
            "SQLite (WAL)": f"sqlite:///{tmp}/bench.db",
        }
        print(
            f"idempotency store: {args.clients} concurrent clients, {args.pairs} pairs per "
            f"client, median of {args.rounds} rounds"
        )
        header = (
            f"{'database':<14} {'plain UPDATE/s':>15} {'claim+finish pairs/s':>21} {'ratio':>7}"
        )
        print(header)
        print("-" * len(header))
        for name, url in targets.items():
            baseline, pairs = _measure(url, args.clients, args.pairs, args.rounds)
            print(f"{name:<14} {baseline:>15,.0f} {pairs:>21,.0f} {pairs / baseline:>6.2f}x")
        print("(a pair is two round trips: 0.50x means no overhead over bare SQL)")
    for line in watch.stop().lines():
        print(line)
    return 0
