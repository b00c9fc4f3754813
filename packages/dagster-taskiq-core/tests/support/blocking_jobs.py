"""Ops that block where a thread cannot be interrupted (a sleep, a child process, a database
call) or that run past their timeout: for the worker's interrupt, give-up and timeout tests.

Each op notes in ``NOTES`` (module level: in-process workers import this module by name,
``support.blocking_jobs``) when its body started and, if it ever does, when it ended."""

import os
import subprocess
import threading
import time

import psycopg
from dagster import Config, RetryPolicy, job, op

from support.job_shapes import injected_executor

NOTES: dict[str, list[str]] = {}
_lock = threading.Lock()
STARTED = threading.Event()

SLEEP_ARG = "60.4321"
"""The child process's argument (``sleep 60.4321``): a test finds it among the processes."""


def note(what: str, event: str) -> None:
    with _lock:
        NOTES.setdefault(what, []).append(event)


class Blocking(Config):
    how: str = "sleep"
    """sleep | subprocess | pg_sleep"""


@op
def blocked(config: Blocking) -> None:
    note(config.how, "started")
    STARTED.set()
    if config.how == "sleep":
        time.sleep(60)
    elif config.how == "subprocess":
        subprocess.run(["sleep", SLEEP_ARG], check=False)
    elif config.how == "pg_sleep":
        url = os.environ.get("DAGSTER_TASKIQ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select pg_sleep(60)")
    note(config.how, "ended")


@job(executor_def=injected_executor)
def blocking():
    blocked()


@op
def quick() -> int:
    note("quick", "ended")
    return 1


@job(executor_def=injected_executor)
def quick_job():
    quick()


@op(tags={"dagster-taskiq/timeout": "1"}, retry_policy=RetryPolicy(max_retries=1))
def sleeps_past_timeout() -> None:
    note("sleeps_past_timeout", "started")
    time.sleep(60)
    note("sleeps_past_timeout", "ended")


@job(executor_def=injected_executor)
def blocked_timeout():
    sleeps_past_timeout()


@op(tags={"dagster-taskiq/timeout": "1"})
def computes_past_timeout() -> None:
    note("computes_past_timeout", "started")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # Python code: the timeout's exception lands here
        sum(range(1000))
    note("computes_past_timeout", "ended")


@job(executor_def=injected_executor)
def busy_timeout():
    computes_past_timeout()


@op(tags={"dagster-taskiq/timeout": "soon"})
def bad_timeout() -> None:
    note("bad_timeout", "ended")


@job(executor_def=injected_executor)
def bad_timeout_job():
    bad_timeout()


BLOCKING_POOL = "blocking_pool"


@op(pool=BLOCKING_POOL)
def pooled_blocked() -> None:
    note("pooled_blocked", "started")
    STARTED.set()
    time.sleep(60)
    note("pooled_blocked", "ended")


@job(executor_def=injected_executor)
def pooled_blocking():
    pooled_blocked()
