"""The idempotency store's transitions, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from dagster_taskiq import (
    CodePointer,
    ExecutionResult,
    IdempotencyError,
    OpExecutionTask,
    SchemaVersionError,
    SqlIdempotencyStore,
    StoreRetry,
    StoreUnavailableError,
    TaskState,
    idempotency_key,
)
from dagster_taskiq.idempotency import (
    DEFAULT_STORE_RETRY,
    SCHEMA_VERSION,
    AsyncIdempotencyStore,
)
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_testing import FakeClock
from support.store import (
    POSTGRES_URL,
    drop_store_tables,
    require_postgres,
    unique_prefix,
)

MakeStore = Callable[..., SqlIdempotencyStore]


def task(
    step_key: str = "op_a", *, run_id: str = "run-1", retry_number: int = 0
) -> OpExecutionTask:
    return OpExecutionTask(
        run_id=run_id,
        step_key=step_key,
        idempotency_key=idempotency_key(run_id, step_key),
        code=CodePointer(job_name="job", module="pkg.defs"),
        instance_ref={},
        created_at=time.time(),
        retry_number=retry_number,
    )


def result(key: str, token: int, state: TaskState = TaskState.COMPLETED) -> ExecutionResult:
    failed = state is TaskState.FAILED
    return ExecutionResult(
        idempotency_key=key,
        state=state,
        attempt=token,
        worker_id="w",
        started_at=1.0,
        finished_at=2.0,
        error_class="ValueError" if failed else None,
        error_message="boom" if failed else None,
    )


def test_lifecycle_pending_running_completed(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    t = task()
    record = store.ensure_pending(t)
    assert (record.state, record.attempt, record.owner, record.result) == (
        TaskState.PENDING,
        0,
        None,
        None,
    )
    assert record.created_at == clock.now()
    token = store.claim(t.idempotency_key, "w1", 30)
    assert token == 1
    running = store.get(t.idempotency_key)
    assert running is not None
    assert (running.state, running.owner, running.lease_until) == (
        TaskState.RUNNING,
        "w1",
        clock.now() + 30,
    )
    assert store.finish(t.idempotency_key, token, result(t.idempotency_key, token))
    done = store.get(t.idempotency_key)
    assert done is not None
    assert done.state is TaskState.COMPLETED
    assert done.result == result(t.idempotency_key, token)
    assert done.lease_until is None
    # Final: no claim, no second outcome, and ensure_pending leaves it alone.
    assert store.claim(t.idempotency_key, "w2", 30) is None
    assert not store.finish(
        t.idempotency_key, token, result(t.idempotency_key, token, TaskState.FAILED)
    )
    assert store.ensure_pending(t).state is TaskState.COMPLETED


def test_ensure_pending_is_insert_if_absent(make_store: MakeStore) -> None:
    store = make_store()
    t = task()
    store.ensure_pending(t)
    token = store.claim(t.idempotency_key, "w1", 30)
    again = store.ensure_pending(t)
    assert again.state is TaskState.RUNNING
    assert again.attempt == token


def test_claim_is_exclusive_while_the_lease_lives(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    key = store.ensure_pending(task()).key
    assert store.claim(key, "w1", 10) == 1
    clock.advance(9.5)
    assert store.claim(key, "w2", 10) is None
    clock.advance(1)
    assert store.claim(key, "w2", 10) == 2


def test_claim_of_unknown_key_is_none(make_store: MakeStore) -> None:
    assert make_store().claim("nope:nope", "w", 10) is None


def test_heartbeat_extends_only_the_current_token(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    key = store.ensure_pending(task()).key
    token = store.claim(key, "w1", 10)
    assert token is not None
    clock.advance(8)
    assert store.heartbeat(key, token, 10)
    clock.advance(8)  # 16 s after the claim: alive only thanks to the heartbeat
    assert store.claim(key, "w2", 10) is None
    assert not store.heartbeat(key, token + 1, 10)
    clock.advance(11)
    new_token = store.claim(key, "w2", 10)
    assert new_token == token + 1
    assert not store.heartbeat(key, token, 10)


def test_stale_finish_after_reclaim_is_rejected(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    key = store.ensure_pending(task()).key
    old = store.claim(key, "slow", 5)
    assert old is not None
    clock.advance(6)
    assert [r.key for r in store.expired()] == [key]
    reclaimed = store.reclaim(key, old)
    assert reclaimed is not None
    assert (reclaimed.state, reclaimed.enqueue_attempt, reclaimed.owner) == (
        TaskState.PENDING,
        1,
        None,
    )
    assert store.expired() == []
    new = store.claim(key, "fast", 5)
    assert new is not None
    assert new > old
    assert not store.finish(key, old, result(key, old, TaskState.FAILED))
    assert store.finish(key, new, result(key, new))
    final = store.get(key)
    assert final is not None
    assert final.state is TaskState.COMPLETED
    assert final.result is not None
    assert final.result.attempt == new


def test_reclaim_needs_an_expired_lease_and_the_current_token(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    key = store.ensure_pending(task()).key
    token = store.claim(key, "w", 5)
    assert token is not None
    assert store.reclaim(key, token) is None  # lease alive
    clock.advance(6)
    assert store.reclaim(key, token + 1) is None  # not the current token
    assert store.reclaim(key, token) is not None
    assert store.reclaim(key, token) is None  # already PENDING


def test_expired_lease_can_be_claimed_directly(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    key = store.ensure_pending(task()).key
    first = store.claim(key, "dead", 5)
    clock.advance(5.5)
    second = store.claim(key, "alive", 5)
    assert first is not None
    assert second == first + 1
    assert not store.finish(key, first, result(key, first))


def test_release_returns_the_step_to_pending(make_store: MakeStore) -> None:
    store = make_store()
    key = store.ensure_pending(task()).key
    token = store.claim(key, "w1", 30)
    assert token is not None
    assert not store.release(key, token + 1)
    assert store.release(key, token)
    record = store.get(key)
    assert record is not None
    assert (record.state, record.owner) == (TaskState.PENDING, None)
    assert store.claim(key, "w2", 30) == token + 1


def test_retry_rearms_a_failed_record_once_per_retry_number(make_store: MakeStore) -> None:
    store = make_store()
    t0 = task()
    key = store.ensure_pending(t0).key
    tok0 = store.claim(key, "w", 30, retry_number=0)
    assert tok0 is not None
    assert store.finish(key, tok0, result(key, tok0, TaskState.FAILED))

    t1 = task(retry_number=1)
    rearmed = store.ensure_pending(t1)
    assert (rearmed.state, rearmed.retry_number, rearmed.result) == (TaskState.PENDING, 1, None)
    # A late duplicate of retry 0's message cannot claim retry 1.
    assert store.claim(key, "late", 30, retry_number=0) is None
    tok1 = store.claim(key, "w", 30, retry_number=1)
    assert tok1 == tok0 + 1
    # Retry 0's worker cannot record a second outcome, even with its old token.
    assert not store.finish(key, tok0, result(key, tok0))
    # Re-asking for retry 1 (a duplicate ensure_pending) does not re-arm the running record.
    assert store.ensure_pending(t1).state is TaskState.RUNNING
    assert store.finish(key, tok1, result(key, tok1))
    # A COMPLETED record is never re-armed, whatever retry number is asked for.
    assert store.ensure_pending(task(retry_number=2)).state is TaskState.COMPLETED


def test_failed_record_is_not_rearmed_for_the_same_or_lower_retry(make_store: MakeStore) -> None:
    store = make_store()
    key = store.ensure_pending(task(retry_number=1)).key
    token = store.claim(key, "w", 30)
    assert token is not None
    store.finish(key, token, result(key, token, TaskState.FAILED))
    assert store.ensure_pending(task(retry_number=1)).state is TaskState.FAILED
    assert store.ensure_pending(task(retry_number=0)).state is TaskState.FAILED


def test_finish_rejects_a_result_of_another_claim(make_store: MakeStore) -> None:
    store = make_store()
    key = store.ensure_pending(task()).key
    token = store.claim(key, "w", 30)
    assert token is not None
    with pytest.raises(IdempotencyError, match="was given the result of"):
        store.finish(key, token, result(key, token + 1))


def test_records_for_run_and_expired_filter(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock=clock)
    for step in ("a", "b", "c"):
        store.ensure_pending(task(step, run_id="r1"))
        clock.advance(0.5)
    store.ensure_pending(task("a", run_id="r2"))
    assert [r.step_key for r in store.records_for_run("r1")] == ["a", "b", "c"]
    store.claim("r1:a", "w", 1)
    store.claim("r2:a", "w", 1)
    clock.advance(2)
    assert [r.key for r in store.expired(run_id="r1")] == ["r1:a"]
    assert {r.key for r in store.expired()} == {"r1:a", "r2:a"}


def test_database_clock_by_default(make_store: MakeStore) -> None:
    store = make_store()
    before = time.time()
    record = store.ensure_pending(task())
    token = store.claim(record.key, "w", 60)
    assert token is not None
    running = store.get(record.key)
    assert running is not None
    assert running.lease_until is not None
    # The database server runs on this machine: its clock agrees with ours to within seconds.
    assert before - 5 <= record.created_at <= time.time() + 5
    assert running.lease_until == pytest.approx(running.updated_at + 60)


def test_schema_is_created_once_with_its_version(make_store: MakeStore) -> None:
    prefix = unique_prefix()
    first = make_store(table_prefix=prefix)
    first.ensure_pending(task())
    second = make_store(table_prefix=prefix)  # same tables: creation is idempotent
    assert second.get("run-1:op_a") is not None
    with first.engine.connect() as conn:
        version = conn.execute(sa.text(f"SELECT version FROM {prefix}schema_version")).scalar_one()
    assert version == SCHEMA_VERSION


def test_newer_schema_version_is_refused(make_store: MakeStore) -> None:
    prefix = unique_prefix()
    store = make_store(table_prefix=prefix)
    store.ensure_pending(task())
    with store.engine.connect() as conn:
        conn.execute(sa.text(f"UPDATE {prefix}schema_version SET version = 99"))
    other = make_store(table_prefix=prefix)
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        other.get("run-1:op_a")


def test_table_prefix_is_validated() -> None:
    with pytest.raises(IdempotencyError, match="table_prefix"):
        SqlIdempotencyStore("sqlite://", table_prefix="drop table;")


def test_lease_must_be_positive(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(IdempotencyError, match="lease_seconds"):
        store.claim("r:s", "w", 0)


async def test_async_facade_does_the_same(make_store: MakeStore) -> None:
    store = AsyncIdempotencyStore(make_store())
    t = task()
    assert (await store.ensure_pending(t)).state is TaskState.PENDING
    token = await store.claim(t.idempotency_key, "w", 30)
    assert token == 1
    assert await store.heartbeat(t.idempotency_key, token, 30)
    assert await store.finish(t.idempotency_key, token, result(t.idempotency_key, token))
    record = await store.get(t.idempotency_key)
    assert record is not None
    assert record.state is TaskState.COMPLETED
    assert [r.key for r in await store.records_for_run("run-1")] == [t.idempotency_key]
    assert await store.expired() == []


# --- URLs, drivers and failures ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql://", "postgresql+psycopg://", "postgres://"])
def test_postgres_url_forms(scheme: str) -> None:
    require_postgres()
    url = scheme + POSTGRES_URL.split("://", 1)[1]
    store = SqlIdempotencyStore(url, table_prefix=unique_prefix())
    try:
        assert store.engine.dialect.driver == "psycopg"
        assert store.ensure_pending(task()).state is TaskState.PENDING
    finally:
        drop_store_tables(store)
        store.close()


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(IdempotencyError, match="backend 'mysql' is not supported"):
        SqlIdempotencyStore("mysql://root:pw@localhost/db")


def test_unreachable_database_names_the_url_with_password_masked() -> None:
    store = SqlIdempotencyStore(
        "postgresql://postgres:s3cret-pw@127.0.0.1:9/test",
        retry=RetryBudget(attempts=3, initial_delay=0.01, max_delay=0.02, timeout=5),
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        store.claim("r:s", "w", 10)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "postgresql+psycopg://postgres:***@127.0.0.1:9/test" in message
    assert "3 attempts" in message
    assert "s3cret-pw" not in repr(store)


def test_a_transient_error_is_retried_with_the_retried_flag_and_logged(
    make_store: MakeStore,
) -> None:
    store = make_store()
    locked = sa.exc.OperationalError(
        "UPDATE ...", {}, sqlite3.OperationalError("database is locked")
    )
    seen: list[bool] = []

    def op(conn: sa.Connection, retried: bool) -> str:
        seen.append(retried)
        if len(seen) == 1:
            raise locked
        return "done"

    with capture_logs() as logs:
        assert store._call("claim", op) == "done"
    assert seen == [False, True]  # the retry may find the first try's committed effect
    (retry,) = [log for log in logs if log["event"] == "store_retry"]
    assert retry["operation"] == "claim"
    assert retry["store"] == store.masked_url
    assert retry["attempt"] == 1
    assert retry["error"] == "OperationalError: database is locked"  # no statement, no params


def test_store_retry_is_a_deprecated_alias_of_a_retry_budget(store_url: str) -> None:
    with pytest.warns(DeprecationWarning, match="StoreRetry is deprecated"):
        old = StoreRetry(attempts=3, timeout=5, wait_initial=0.01, wait_max=0.02)
    assert isinstance(old, RetryBudget)
    assert (old.initial_delay, old.max_delay, old.jitter) == (0.01, 0.02, 0.25)
    assert (old.wait_initial, old.wait_max, old.wait_jitter) == (0.01, 0.02, 0.25)
    store = SqlIdempotencyStore(store_url, table_prefix=unique_prefix(), retry=old)
    assert store.retry is old
    store.close()
    with (
        pytest.warns(DeprecationWarning, match="StoreRetry"),
        pytest.raises(IdempotencyError, match=r"StoreRetry.attempts must be >= 1"),
    ):
        StoreRetry(attempts=0)
    default = SqlIdempotencyStore("sqlite://")
    assert default.retry is DEFAULT_STORE_RETRY
    default.close()


def test_connection_killed_mid_use_is_retried() -> None:
    require_postgres()
    app = f"dt-kill-{uuid.uuid4().hex[:8]}"
    store = SqlIdempotencyStore(
        POSTGRES_URL,
        table_prefix=unique_prefix(),
        engine_options={"connect_args": {"application_name": app}},
    )
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        key = store.ensure_pending(task()).key
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :app"
                ),
                {"app": app},
            ).scalar_one()
        assert killed >= 1
        # The pooled connection is dead; the claim is retried on a new one and succeeds once.
        assert store.claim(key, "w", 30) == 1
        assert store.claim(key, "w2", 30) is None
    finally:
        drop_store_tables(store)
        store.close()
        admin.dispose()


def test_outcome_version_changes_when_an_outcome_is_recorded_and_only_then(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    before = store.outcome_version("run-1")
    key = store.ensure_pending(task()).key
    token = store.claim(key, "w", 5)
    assert token is not None
    clock.advance(1)
    store.heartbeat(key, token, 5)
    assert store.outcome_version("run-1") == before  # pending, claim, heartbeat: no outcome
    clock.advance(1)
    store.finish(key, token, result(key, token, TaskState.FAILED))
    failed = store.outcome_version("run-1")
    assert failed != before
    # A RetryPolicy retry re-arms the record (no outcome any more), then records its own.
    store.ensure_pending(task(retry_number=1))
    assert store.outcome_version("run-1") == before
    token = store.claim(key, "w", 5, retry_number=1)
    assert token is not None
    store.finish(key, token, result(key, token))  # same clock reading as the failure
    assert store.outcome_version("run-1") not in (before, failed)
    assert store.outcome_version("other-run") == (0, 0, 0.0)


def test_run_snapshot_reads_records_and_expired_leases_by_the_store_clock(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    short, long_ = (store.ensure_pending(task(name)).key for name in ("short", "long"))
    store.ensure_pending(task("waiting"))
    assert store.claim(short, "w", 5) is not None
    assert store.claim(long_, "w", 60) is not None
    snapshot = store.run_snapshot("run-1")
    assert sorted(r.step_key for r in snapshot.records) == ["long", "short", "waiting"]
    assert snapshot.expired == frozenset()
    clock.advance(10)
    snapshot = store.run_snapshot("run-1")
    assert snapshot.expired == {short}
    assert snapshot.expired == {r.key for r in store.expired(run_id="run-1")}
    assert store.run_snapshot("other-run").records == ()
