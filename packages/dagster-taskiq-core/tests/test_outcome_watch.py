"""How a run's executor learns of recorded outcomes: LISTEN/NOTIFY on PostgreSQL, polling else."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq.idempotency._outcome_watch import (
    FAST_FOR,
    FAST_POLL,
    SLOW_POLL,
    DataVersionProbe,
    PollingOutcomeWatch,
    PostgresOutcomeWatch,
    outcome_channel,
)
from dagster_taskiq.idempotency._protocol import OutcomeVersion
from support.store import POSTGRES_URL, require_postgres
from test_store import result, task

MakeStore = Callable[..., SqlIdempotencyStore]


class _Time:
    """A fake monotonic clock whose sleep advances it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _claimed(store: SqlIdempotencyStore, step: str, run_id: str = "run-1") -> tuple[str, int]:
    key = store.ensure_pending(task(step, run_id=run_id)).key
    token = store.claim(key, "w", 30)
    assert token is not None
    return key, token


def _finish_later(store: SqlIdempotencyStore, key: str, token: int) -> threading.Thread:
    def finish() -> None:
        time.sleep(0.2)
        assert store.finish(key, token, result(key, token))

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_polling_watch_wakes_on_a_new_version_and_backs_off_while_none_comes() -> None:
    fake = _Time()
    versions: list[OutcomeVersion] = [(0, 0, 0.0)] * 31 + [(1, 1, 5.0)]
    watch = PollingOutcomeWatch(lambda: versions.pop(0), clock=fake.clock, sleep=fake.sleep)
    assert not watch.wait(0.05)  # nothing yet: polled at the fast interval, then timed out
    assert fake.sleeps[0] == FAST_POLL
    fake.now += FAST_FOR * 4  # a long quiet spell: the poll has backed off to its slowest
    assert watch.interval() == SLOW_POLL
    assert watch.wait(60)
    assert watch.interval() == FAST_POLL  # an outcome came: fast again
    assert max(fake.sleeps) <= SLOW_POLL


def test_the_store_watch_wakes_the_run_whose_outcome_is_recorded(make_store: MakeStore) -> None:
    store = make_store()
    key, token = _claimed(store, "a")
    other_key, other_token = _claimed(store, "b", run_id="run-2")
    watch = store.watch_outcomes("run-1")
    try:
        assert not watch.wait(0.05)
        assert store.finish(other_key, other_token, result(other_key, other_token))
        assert not watch.wait(0.3)  # another run's outcome does not wake this one
        finisher = _finish_later(store, key, token)
        assert watch.wait(30)
        finisher.join()
        record = store.get(key)
        assert record is not None
        assert record.state is TaskState.COMPLETED
    finally:
        watch.close()


def test_postgres_watch_listens_on_the_channel_that_finish_notifies(
    make_store: MakeStore,
) -> None:
    require_postgres()
    store = make_store()
    if not store.notifies:  # the SQLite parametrisation
        return
    key, token = _claimed(store, "a")
    watch = store.watch_outcomes("run-1")
    assert isinstance(watch, PostgresOutcomeWatch)
    assert watch.channel == outcome_channel(store.table_prefix, "run-1")
    try:
        finisher = _finish_later(store, key, token)
        assert watch.wait(30)
        finisher.join()
    finally:
        watch.close()


def test_postgres_watch_survives_its_connection_being_terminated() -> None:
    require_postgres()
    from support.store import drop_store_tables, unique_prefix  # noqa: PLC0415

    store = SqlIdempotencyStore(POSTGRES_URL, table_prefix=unique_prefix())
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        first, first_token = _claimed(store, "a")
        second, second_token = _claimed(store, "b")
        watch = store.watch_outcomes("run-1")
        assert isinstance(watch, PostgresOutcomeWatch)
        channel = watch.channel
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE :listen"
                ),
                {"listen": f'LISTEN "{channel}"%'},
            ).scalar_one()
        assert killed == 1
        # The outcome recorded while nobody listens is lost as a notification...
        assert store.finish(first, first_token, result(first, first_token))
        # ... so the watch reports that it may have missed one (the executor then looks) ...
        assert watch.wait(30)
        assert not watch.listening
        # ... and listens again: later outcomes wake it as before.
        assert watch.wait(30)
        assert watch.listening
        finisher = _finish_later(store, second, second_token)
        assert watch.wait(30)
        finisher.join()
        watch.close()
    finally:
        drop_store_tables(store)
        store.close()
        admin.dispose()


def test_the_sqlite_probe_moves_when_another_connection_commits(tmp_path: Path) -> None:
    path = tmp_path / "probe.db"
    writer = sqlite3.connect(path)
    writer.execute("CREATE TABLE t (n INTEGER)")
    writer.commit()
    probe = DataVersionProbe(sqlite3.connect(path))
    try:
        assert not probe.changed()
        writer.execute("INSERT INTO t VALUES (1)")
        assert not probe.changed()  # not committed yet
        writer.commit()
        assert probe.changed()
        assert not probe.changed()
    finally:
        probe.close()
        writer.close()
