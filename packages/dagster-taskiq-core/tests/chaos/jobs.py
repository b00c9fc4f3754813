"""Jobs of the chaos, load and bad-input tests; every op body writes the PostgreSQL ledger.

Each execution of an op body inserts one row into the ledger table (run, step, retry number,
worker pid, start) when it starts and sets its end when it finishes (``chaos.ledger`` reads and
checks it). The ledger lives in PostgreSQL, reached directly (never through the fault proxies),
so faults injected into the idempotency store's connections do not touch it.

How long a body runs comes from the run's tags: ``chaos/step_seconds = "MIN,MAX"`` (uniform,
default ``0.05,0.3``). No ``from __future__ import annotations`` here: Dagster reads the op
context annotations at definition time.
"""

import os
import random
import threading
import time

import psycopg
from dagster import (
    DynamicOut,
    DynamicOutput,
    OpExecutionContext,
    job,
    op,
)

from dagster_taskiq import taskiq_executor

LEDGER_URL_ENV = "DAGSTER_TASKIQ_CHAOS_LEDGER_URL"
LEDGER_TABLE_ENV = "DAGSTER_TASKIQ_CHAOS_LEDGER_TABLE"
STEP_SECONDS_TAG = "chaos/step_seconds"

_local = threading.local()


def _connection() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ[LEDGER_URL_ENV], autocommit=True, application_name="chaos_ledger"
        )
        _local.conn = conn
    return conn


def _execute(sql: str, params: tuple) -> list[tuple]:
    """Run one ledger statement; reconnect and retry on a broken connection (at most 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            with _connection().cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _table() -> str:
    table = os.environ[LEDGER_TABLE_ENV]
    if not table.replace("_", "").isalnum():
        raise ValueError(f"bad ledger table name {table!r}")
    return table


def ledger_start(context: OpExecutionContext) -> int | None:
    """Insert this execution's row; its id (None when no ledger is configured)."""
    if LEDGER_URL_ENV not in os.environ:
        return None
    step = context.get_step_execution_context().step.key
    rows = _execute(
        f"INSERT INTO {_table()} (run_id, step_key, retry_number, pid, started_at) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (context.run_id, step, context.retry_number, os.getpid(), time.time()),
    )
    return int(rows[0][0])


def ledger_end(row: int | None) -> None:
    if row is not None:
        _execute(
            f"UPDATE {_table()} SET ended_at = %s WHERE id = %s",
            (time.time(), row),
        )


def body(context: OpExecutionContext) -> None:
    """One execution: ledger start, work for the run's step duration, ledger end."""
    row = ledger_start(context)
    low, high = (float(x) for x in context.run.tags.get(STEP_SECONDS_TAG, "0.05,0.3").split(","))
    deadline = time.monotonic() + random.uniform(low, high)
    while time.monotonic() < deadline:
        time.sleep(0.02)
    ledger_end(row)


# --- ops -------------------------------------------------------------------------------------


@op
def root(context: OpExecutionContext) -> int:
    body(context)
    return 1


@op
def work(context: OpExecutionContext, x: int) -> int:
    body(context)
    return x + 1


@op
def total(context: OpExecutionContext, values: list[int]) -> int:
    body(context)
    return sum(values)


@op(out=DynamicOut(int))
def emit(context: OpExecutionContext):
    body(context)
    for n in range(5):
        yield DynamicOutput(n, mapping_key=f"k{n}")


# --- jobs (all on taskiq_executor, configured by run config) ------------------------------


@job(executor_def=taskiq_executor)
def chaos_fan_out() -> None:
    """10 steps: root, 8 parallel leaves, a fan-in."""
    top = root()
    total([work.alias(f"leaf_{n}")(top) for n in range(8)])


@job(executor_def=taskiq_executor)
def chaos_chain() -> None:
    """6 steps in a line."""
    value = root()
    for n in range(5):
        value = work.alias(f"link_{n}")(value)


@job(executor_def=taskiq_executor)
def chaos_dynamic() -> None:
    """7 steps: emit, 5 mapped copies of work, a collect."""
    total(emit().map(work).collect())


@job(executor_def=taskiq_executor)
def twenty_steps() -> None:
    """20 steps: root, 18 parallel leaves, a fan-in (the concurrent-runs load)."""
    top = root()
    total([work.alias(f"leaf_{n}")(top) for n in range(18)])


@job(executor_def=taskiq_executor)
def wide_1000() -> None:
    """1,000 steps: root and 999 leaves (the large fan-out load)."""
    top = root()
    for n in range(999):
        work.alias(f"leaf_{n}")(top)


@job(executor_def=taskiq_executor)
def hundred_independent() -> None:
    """100 steps with no dependencies (the queue backlog: every message runnable at once)."""
    for n in range(100):
        root.alias(f"part_{n}")()


@job(executor_def=taskiq_executor)
def one_step() -> None:
    """One step (the queue backlog: one message per run)."""
    root()


JOB_STEPS = {
    "chaos_fan_out": 10,
    "chaos_chain": 6,
    "chaos_dynamic": 7,
    "twenty_steps": 20,
    "wide_1000": 1000,
    "hundred_independent": 100,
    "one_step": 1,
}
"""Steps of each job's full run (dynamic: with its 5 mapped copies)."""

JOBS = {
    "chaos_fan_out": chaos_fan_out,
    "chaos_chain": chaos_chain,
    "chaos_dynamic": chaos_dynamic,
    "twenty_steps": twenty_steps,
    "wide_1000": wide_1000,
    "hundred_independent": hundred_independent,
    "one_step": one_step,
}
