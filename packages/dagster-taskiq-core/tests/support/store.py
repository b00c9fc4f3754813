"""The idempotency store's test helpers: the PostgreSQL URL, table prefixes, the claim race."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from dagster_taskiq import ExecutionResult, TaskState
from dagster_taskiq.idempotency import SqlIdempotencyStore

POSTGRES_URL = os.environ.get(
    "DAGSTER_TASKIQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception:
        return False
    return True


def require_postgres() -> None:
    if not postgres_available():
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
        pytest.skip(message)


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


def drop_store_tables(store: SqlIdempotencyStore) -> None:
    tables = [store.records_table, *store.records_table.metadata.sorted_tables]
    with store.engine.connect() as conn:
        for table in {t.name: t for t in tables}.values():
            table.drop(conn, checkfirst=True)


def race_phase(
    *,
    url: str,
    prefix: str,
    phase: str,
    keys: list[str],
    threads: int,
    start_at: float,
    lease: float,
    token: int,
) -> list[tuple[str, int]]:
    """Run one phase of a claim race in this process with ``threads`` threads.

    Every thread tries the phase's operation on every key (in its own random order), starting
    together at ``start_at``; returns the (key, token) pairs this process won.
    """
    store = SqlIdempotencyStore(url, table_prefix=prefix)
    wins: list[tuple[str, int]] = []
    lock = threading.Lock()

    def run(thread_no: int) -> None:
        owner = f"{os.getpid()}-{thread_no}"
        order = list(keys)
        random.Random(thread_no * 7919 + os.getpid()).shuffle(order)
        time.sleep(max(0.0, start_at - time.time()))
        for key in order:
            won: int | None = None
            if phase == "claim":
                won = store.claim(key, owner, lease)
            elif phase == "reclaim":
                won = token if store.reclaim(key, token) is not None else None
            elif phase == "finish":
                state = TaskState.COMPLETED if token > 1 else TaskState.FAILED
                result = ExecutionResult(
                    idempotency_key=key,
                    state=state,
                    attempt=token,
                    worker_id=owner,
                    started_at=1.0,
                    finished_at=2.0,
                    error_class=None if token > 1 else "Stale",
                )
                won = token if store.finish(key, token, result) else None
            if won is not None:
                with lock:
                    wins.append((key, won))

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    return wins
