"""Races on the real PostgreSQL: 2 processes x 8 threads fight over the same 200 keys."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest

from dagster_taskiq import CodePointer, OpExecutionTask, SqlIdempotencyStore, TaskState
from support.store import (
    POSTGRES_URL,
    drop_store_tables,
    race_phase,
    require_postgres,
    unique_prefix,
)

PROCESSES = 2
THREADS = 8
KEYS = 200


def _race(
    pool: ProcessPoolExecutor, prefix: str, phase: str, keys: list[str], *, token: int = 0
) -> list[tuple[str, int]]:
    start_at = time.time() + 0.5
    futures = [
        pool.submit(
            race_phase,
            url=POSTGRES_URL,
            prefix=prefix,
            phase=phase,
            keys=keys,
            threads=THREADS,
            start_at=start_at,
            lease=60.0,
            token=token,
        )
        for _ in range(PROCESSES)
    ]
    return [win for f in futures for win in f.result(timeout=120)]


@pytest.mark.postgres
def test_one_winner_per_key_per_lease_across_processes() -> None:
    require_postgres()
    prefix = unique_prefix()
    store = SqlIdempotencyStore(POSTGRES_URL, table_prefix=prefix)
    keys = []
    for n in range(KEYS):
        task = OpExecutionTask(
            run_id="race",
            step_key=f"step_{n}",
            idempotency_key=f"race:step_{n}",
            code=CodePointer(job_name="j", module="m"),
            instance_ref={},
            created_at=time.time(),
        )
        keys.append(store.ensure_pending(task).key)
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
            # 1. Everyone claims every key: exactly one winner per key, token 1.
            first = _race(pool, prefix, "claim", keys)
            assert Counter(k for k, _ in first) == Counter(keys)
            assert {t for _, t in first} == {1}

            # 2. While the leases live, nobody else gets in.
            assert _race(pool, prefix, "claim", keys) == []

            # 3. The holders shorten their leases to 0.2 s (a heartbeat) and then "die"; after
            # expiry everyone tries to reclaim token 1: exactly one reclaim per key.
            assert all(store.heartbeat(key, 1, 0.2) for key in keys)
            deadline = time.time() + 10
            while len(store.expired(limit=KEYS)) < KEYS and time.time() < deadline:
                time.sleep(0.05)
            assert len(store.expired(limit=KEYS)) == KEYS
            reclaimed = _race(pool, prefix, "reclaim", keys, token=1)
            assert Counter(k for k, _ in reclaimed) == Counter(keys)

            # 4. A new race of claims: one winner per key, with a higher token.
            second = _race(pool, prefix, "claim", keys)
            assert Counter(k for k, _ in second) == Counter(keys)
            assert {t for _, t in second} == {2}

            # 5. Stale finishes (token 1) are all rejected; exactly one token-2 finish per key.
            stale = _race(pool, prefix, "finish", keys, token=1)
            assert stale == []
            fresh = _race(pool, prefix, "finish", keys, token=2)
            assert Counter(k for k, _ in fresh) == Counter(keys)

        records = store.records_for_run("race")
        assert len(records) == KEYS
        assert all(r.state is TaskState.COMPLETED for r in records)
        assert all(r.result is not None and r.result.attempt == 2 for r in records)
        assert all(r.enqueue_attempt == 1 for r in records)
    finally:
        drop_store_tables(store)
        store.close()
