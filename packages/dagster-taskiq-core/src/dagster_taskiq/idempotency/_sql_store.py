"""The SQLAlchemy implementation of :class:`IdempotencyStore` (PostgreSQL and SQLite).

Each state transition is one conditional ``UPDATE ... WHERE ... RETURNING`` (or ``INSERT ... ON
CONFLICT DO NOTHING``) in autocommit mode: one round trip, atomic on its own, no read-then-write
in Python and no SERIALIZABLE isolation. See ``docs/idempotency.md``.

Transient database errors are retried by :class:`dagster_taskiq.retrying.Retrying` (stamina's
jittered exponential backoff within a :class:`~dagster_taskiq.retrying.RetryBudget`, the helper
the broker backends use too). A retried statement may already have committed before the
connection broke; each operation therefore knows how to recognise its own committed effect on a
retry (the ``retried`` flag), so that a lost reply never turns a success into a reported failure.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from dagster_taskiq.errors import IdempotencyError, SchemaVersionError, StoreUnavailableError
from dagster_taskiq.idempotency._outcome_watch import (
    CHANNEL_DIGEST_CHARS,
    CHANNEL_PREFIX,
    DataVersionProbe,
    PollingOutcomeWatch,
    PostgresOutcomeWatch,
    outcome_channel,
)
from dagster_taskiq.idempotency._protocol import (
    Clock,
    OutcomeVersion,
    OutcomeWatch,
    RunSnapshot,
    RunSummary,
)
from dagster_taskiq.idempotency._schema import (
    SCHEMA_COMPONENT,
    SCHEMA_VERSION,
    StoreTables,
    make_tables,
)
from dagster_taskiq.idempotency._sql_clock import db_epoch
from dagster_taskiq.idempotency._url import mask_url, normalize_store_url
from dagster_taskiq.payloads import (
    ExecutionResult,
    IdempotencyRecord,
    OpExecutionTask,
    TaskState,
)
from dagster_taskiq.retrying import RetryBudget, Retrying

_T = TypeVar("_T")

DEFAULT_TABLE_PREFIX = "dagster_taskiq_"

_log = structlog.get_logger("dagster_taskiq.idempotency")


DEFAULT_STORE_RETRY = RetryBudget(
    attempts=10, initial_delay=0.05, max_delay=2.0, timeout=30.0, jitter=0.25
)
"""The store's retry budget for transient database errors unless ``retry`` is given: ten tries
(the first included) within 30 s; the jitter spreads the workers that lost one database."""


class StoreRetry(RetryBudget):
    """Deprecated: pass a :class:`~dagster_taskiq.retrying.RetryBudget` as the store's ``retry``.

    The store's retry budget under its former names, kept working: ``wait_initial`` is
    ``initial_delay``, ``wait_max`` is ``max_delay`` and ``wait_jitter`` is ``jitter``; the
    defaults are :data:`DEFAULT_STORE_RETRY`'s. Making one warns (``DeprecationWarning``);
    a bad value raises :class:`~dagster_taskiq.errors.IdempotencyError` as it always did.
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        attempts: int = DEFAULT_STORE_RETRY.attempts,
        timeout: float = DEFAULT_STORE_RETRY.timeout,
        wait_initial: float = DEFAULT_STORE_RETRY.initial_delay,
        wait_max: float = DEFAULT_STORE_RETRY.max_delay,
        wait_jitter: float = DEFAULT_STORE_RETRY.jitter,
    ) -> None:
        warnings.warn(
            "StoreRetry is deprecated: pass retry=RetryBudget(attempts=..., initial_delay=..., "
            "max_delay=..., timeout=...) (dagster_taskiq.retrying) to SqlIdempotencyStore",
            DeprecationWarning,
            stacklevel=2,
        )
        try:
            super().__init__(
                attempts=attempts,
                initial_delay=wait_initial,
                max_delay=wait_max,
                timeout=timeout,
                jitter=wait_jitter,
            )
        except ValueError as exc:
            raise IdempotencyError(str(exc).replace("RetryBudget.", "StoreRetry.")) from None

    @property
    def wait_initial(self) -> float:
        """Deprecated name of ``initial_delay``."""
        return self.initial_delay

    @property
    def wait_max(self) -> float:
        """Deprecated name of ``max_delay``."""
        return self.max_delay

    @property
    def wait_jitter(self) -> float:
        """Deprecated name of ``jitter``."""
        return self.jitter


class SqlIdempotencyStore:
    """:class:`IdempotencyStore` on PostgreSQL (psycopg 3) or SQLite (WAL mode).

    Created from a URL (``postgresql://``, ``postgresql+psycopg://`` or ``sqlite:///path``);
    the tables ``{table_prefix}idempotency`` and ``{table_prefix}schema_version`` are created on
    first use. Lease times come from the database's clock unless ``clock`` is given (tests).
    Transient database errors are retried within ``retry`` (:data:`DEFAULT_STORE_RETRY` unless
    given), each retry logged as ``store_retry``; then :class:`StoreUnavailableError`.
    Thread-safe: one instance may be shared by all threads of a process.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        clock: Clock | None = None,
        retry: RetryBudget | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = normalize_store_url(url)
        self.masked_url = mask_url(self._url)
        self.table_prefix = table_prefix
        self._tables: StoreTables = make_tables(table_prefix)
        self._clock = clock
        self._retrying = Retrying(
            budget=retry or DEFAULT_STORE_RETRY,
            is_transient=_is_transient,
            logger=_log,
            event_prefix="store",
            target={"store": self.masked_url},
            unreachable=f"idempotency store {self.masked_url} unreachable",
            error=StoreUnavailableError,
            budget_hint="the store's retry budget",
            describe=_describe_db_error,
        )
        options = dict(engine_options or {})
        self._engine = _create_engine(self._url, self.masked_url, options)
        self._connect_args: dict[str, Any] = dict(options.get("connect_args") or {})
        self._dialect = self._engine.dialect.name
        self._sql = _Statements(
            self._tables.records,
            self._dialect,
            table_prefix=table_prefix,
            injected_clock=clock is not None,
        )
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"SqlIdempotencyStore({self.masked_url!r}, table_prefix={self.table_prefix!r})"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (autocommit), e.g. for benchmarks against the same pool."""
        return self._engine

    @property
    def records_table(self) -> sa.Table:
        return self._tables.records

    # --- operations -----------------------------------------------------------------------

    def ensure_pending(self, task: OpExecutionTask) -> IdempotencyRecord:
        sql = self._sql
        params = {
            "p_key": task.idempotency_key,
            "p_run_id": task.run_id,
            "p_step_key": task.step_key,
            "p_retry_number": task.retry_number,
            "p_enqueue_attempt": task.enqueue_attempt,
        }

        def op(conn: Connection, retried: bool) -> IdempotencyRecord:
            row = conn.execute(sql.insert_pending, self._params(params)).first()
            if row is None and task.retry_number > 0:
                row = conn.execute(sql.rearm, self._params(params)).first()
            if row is None:
                row = conn.execute(sql.select_one, params).one()
            return self._record(row)

        return self._run("ensure_pending", op)

    def get(self, key: str) -> IdempotencyRecord | None:
        def op(conn: Connection, retried: bool) -> IdempotencyRecord | None:
            row = conn.execute(self._sql.select_one, {"p_key": key}).first()
            return None if row is None else self._record(row)

        return self._run("get", op)

    def records_for_run(self, run_id: str) -> list[IdempotencyRecord]:
        def op(conn: Connection, retried: bool) -> list[IdempotencyRecord]:
            rows = conn.execute(self._sql.select_run, {"p_run_id": run_id})
            return [self._record(row) for row in rows]

        return self._run("records_for_run", op)

    def ping(self) -> None:
        """One round trip to the database (a worker's readiness); StoreUnavailableError if it
        stays unreachable within the retry budget."""
        self._run("ping", lambda conn, retried: conn.exec_driver_sql("SELECT 1").scalar())

    def recent_runs(self, limit: int = 20) -> list[RunSummary]:
        """The ``limit`` runs changed last, most recent first, with their steps by state."""

        def op(conn: Connection, retried: bool) -> list[RunSummary]:
            runs = conn.execute(self._sql.recent_runs, {"p_limit": limit}).all()
            steps: dict[str, dict[TaskState, int]] = {run.run_id: {} for run in runs}
            counts = conn.execute(self._sql.states_of_runs, {"p_run_ids": list(steps)})
            for row in counts:
                steps[row.run_id][TaskState(row.state)] = int(row.steps)
            return [
                RunSummary(run.run_id, steps[run.run_id], run.first_seen, run.last_change)
                for run in runs
            ]

        return self._run("recent_runs", op)

    def run_snapshot(self, run_id: str) -> RunSnapshot:
        def op(conn: Connection, retried: bool) -> RunSnapshot:
            rows = conn.execute(self._sql.snapshot_run, self._params({"p_run_id": run_id}))
            records, expired = [], set()
            for row in rows:
                record = self._record(row)
                records.append(record)
                if row.lease_expired:
                    expired.add(record.key)
            return RunSnapshot(records=tuple(records), expired=frozenset(expired))

        return self._run("run_snapshot", op)

    def outcome_version(self, run_id: str) -> OutcomeVersion:
        def op(conn: Connection, retried: bool) -> OutcomeVersion:
            row = conn.execute(self._sql.outcome_version, {"p_run_id": run_id}).one()
            return int(row[0] or 0), int(row[1] or 0), float(row[2] or 0.0)

        return self._run("outcome_version", op)

    @property
    def notifies(self) -> bool:
        """Whether ``finish`` notifies the run's watchers (PostgreSQL's LISTEN/NOTIFY)."""
        return self._dialect == "postgresql"

    def watch_outcomes(self, run_id: str) -> OutcomeWatch:
        """LISTEN/NOTIFY on PostgreSQL (its own connection); polling on SQLite."""
        self._ensure_schema()
        if self._dialect == "sqlite" and self._url.database not in (None, "", ":memory:"):
            probe = DataVersionProbe(self._own_connection())
            return PollingOutcomeWatch(lambda: self.outcome_version(run_id), probe=probe)
        if not self.notifies:
            return PollingOutcomeWatch(lambda: self.outcome_version(run_id))
        return PostgresOutcomeWatch(
            self._own_connection,
            outcome_channel(self.table_prefix, run_id),
            masked_url=self.masked_url,
        )

    def _own_connection(self) -> Any:
        """A new driver connection (psycopg, sqlite3) with the engine's connect arguments, not
        from its pool: a pooled one may be dead (the server restarted, the backend terminated)
        and the watch would only learn so when it tries to LISTEN on it."""
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        return dialect.connect(*cargs, **{**cparams, **self._connect_args})

    def claim(
        self, key: str, owner: str, lease_seconds: float, *, retry_number: int | None = None
    ) -> int | None:
        _check_lease(lease_seconds)
        sql = self._sql
        stmt = sql.claim if retry_number is None else sql.claim_retry
        params = {
            "p_key": key,
            "p_owner": owner,
            "p_lease": lease_seconds,
            "p_retry_number": retry_number,
        }

        def op(conn: Connection, retried: bool) -> int | None:
            token = conn.execute(stmt, self._params(params)).scalar_one_or_none()
            if token is None and retried:
                # Our first try may have committed before its reply was lost.
                row = conn.execute(sql.select_one, params).first()
                if row is not None and row.state == TaskState.RUNNING.value and row.owner == owner:
                    return int(row.attempt)
            return None if token is None else int(token)

        return self._run("claim", op)

    def heartbeat(self, key: str, token: int, lease_seconds: float) -> bool:
        _check_lease(lease_seconds)
        params = {"p_key": key, "p_token": token, "p_lease": lease_seconds}

        def op(conn: Connection, retried: bool) -> bool:
            return conn.execute(self._sql.heartbeat, self._params(params)).first() is not None

        return self._run("heartbeat", op)

    def finish(self, key: str, token: int, result: ExecutionResult) -> bool:
        if result.idempotency_key != key or result.attempt != token:
            raise IdempotencyError(
                f"finish({key!r}, token={token}) was given the result of "
                f"{result.idempotency_key!r} attempt {result.attempt}"
            )
        sql = self._sql
        payload = result.to_json()
        params = {
            "p_key": key,
            "p_token": token,
            "p_state": result.state.value,
            "p_result": payload,
        }

        def op(conn: Connection, retried: bool) -> bool:
            if conn.execute(sql.finish, self._params(params)).first() is not None:
                return True
            row = conn.execute(sql.select_one, params).first()
            if (
                row is not None
                and row.state == result.state.value
                and row.attempt == token
                and row.result == payload
            ):
                return True  # the same outcome is already recorded (e.g. a retried finish)
            _log.warning(
                "stale_finish_rejected",
                key=key,
                token=token,
                outcome=result.state.value,
                current_state=None if row is None else row.state,
                current_attempt=None if row is None else row.attempt,
                current_owner=None if row is None else row.owner,
            )
            return False

        return self._run("finish", op)

    def release(self, key: str, token: int) -> bool:
        params = {"p_key": key, "p_token": token}

        def op(conn: Connection, retried: bool) -> bool:
            if conn.execute(self._sql.release, self._params(params)).first() is not None:
                return True
            return retried and self._is_pending_at(conn, key, token)

        return self._run("release", op)

    def expired(self, *, run_id: str | None = None, limit: int = 1000) -> list[IdempotencyRecord]:
        sql = self._sql
        stmt = sql.expired if run_id is None else sql.expired_in_run
        params = {"p_run_id": run_id, "p_limit": limit}

        def op(conn: Connection, retried: bool) -> list[IdempotencyRecord]:
            return [self._record(row) for row in conn.execute(stmt, self._params(params))]

        return self._run("expired", op)

    def reclaim(self, key: str, token: int) -> IdempotencyRecord | None:
        sql = self._sql
        params = {"p_key": key, "p_token": token}

        def op(conn: Connection, retried: bool) -> IdempotencyRecord | None:
            row = conn.execute(sql.reclaim, self._params(params)).first()
            if row is None and retried and self._is_pending_at(conn, key, token):
                row = conn.execute(sql.select_one, params).first()
            return None if row is None else self._record(row)

        return self._run("reclaim", op)

    def close(self) -> None:
        self._engine.dispose()

    # --- machinery --------------------------------------------------------------------------

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Statement parameters, plus ``now`` when the clock is injected."""
        if self._clock is None:
            return params
        return {**params, "p_now": float(self._clock())}

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        return _dialect_insert(self._dialect, table)

    def _is_pending_at(self, conn: Connection, key: str, token: int) -> bool:
        row = conn.execute(self._sql.select_one, {"p_key": key}).first()
        return row is not None and row.state == TaskState.PENDING.value and row.attempt == token

    @staticmethod
    def _record(row: Row[Any]) -> IdempotencyRecord:
        m = row._mapping
        return IdempotencyRecord(
            key=m["key"],
            run_id=m["run_id"],
            step_key=m["step_key"],
            state=TaskState(m["state"]),
            attempt=m["attempt"],
            owner=m["owner"],
            lease_until=m["lease_until"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
            retry_number=m["retry_number"],
            enqueue_attempt=m["enqueue_attempt"],
            result=None if m["result"] is None else ExecutionResult.from_json(m["result"]),
        )

    @property
    def retry(self) -> RetryBudget:
        """The budget transient database errors are retried within."""
        return self._retrying.budget

    def _run(self, name: str, op: Callable[[Connection, bool], _T]) -> _T:
        self._ensure_schema()
        return self._call(name, op)

    def _call(self, name: str, op: Callable[[Connection, bool], _T]) -> _T:
        """``op`` on a pooled connection, retried on transient errors; ``retried`` tells it
        whether an earlier try may have committed before its reply was lost."""
        tries = 0

        def once() -> _T:
            nonlocal tries
            tries += 1
            with self._connection() as conn:
                return op(conn, tries > 1)

        return self._retrying.call_sync(name, once)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._call("create_schema", self._create_schema)
                self._schema_ready = True

    def _create_schema(self, conn: Connection, retried: bool) -> None:
        tables = self._tables
        for race in range(3):
            try:
                tables.metadata.create_all(conn, checkfirst=True)
                conn.execute(
                    self._insert(tables.schema_version)
                    .values(component=SCHEMA_COMPONENT, version=SCHEMA_VERSION)
                    .on_conflict_do_nothing(index_elements=[tables.schema_version.c.component])
                )
                break
            except sa.exc.DBAPIError as exc:
                if race == 2 or not _lost_creation_race(exc):
                    raise
        version = conn.execute(
            sa.select(tables.schema_version.c.version).where(
                tables.schema_version.c.component == SCHEMA_COMPONENT
            )
        ).scalar_one()
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"idempotency tables {tables.records.name!r} in {self.masked_url} are at schema "
                f"version {version}, this dagster-taskiq uses version {SCHEMA_VERSION}: use "
                "a matching release or another table_prefix"
            )


def _dialect_insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


class _Statements:
    """Every statement of the store, built once with bind parameters (fast to execute).

    ``now`` is the database's clock, or the bind parameter ``:now`` when a clock is injected.
    """

    def __init__(
        self, t: sa.Table, dialect: str, *, table_prefix: str, injected_clock: bool
    ) -> None:
        now: sa.ColumnElement[float] = (
            sa.bindparam("p_now", type_=sa.Double()) if injected_clock else db_epoch()
        )
        key = t.c.key == sa.bindparam("p_key")
        lease_until = now + sa.bindparam("p_lease", type_=sa.Double())
        current = sa.and_(
            key, t.c.attempt == sa.bindparam("p_token"), t.c.state == TaskState.RUNNING.value
        )
        released = {"state": TaskState.PENDING.value, "owner": None, "lease_until": None}

        self.select_one = sa.select(t).where(key)
        of_run = t.c.run_id == sa.bindparam("p_run_id")
        final = t.c.state.in_([TaskState.COMPLETED.value, TaskState.FAILED.value])
        # Reaching a final state sets updated_at; a re-armed retry leaves the final states and
        # comes back with a higher retry number: count, sum and max change on each.
        self.outcome_version = sa.select(
            sa.func.count(),
            sa.func.sum(t.c.attempt + t.c.retry_number),
            sa.func.max(t.c.updated_at),
        ).where(of_run, final)
        self.select_run = sa.select(t).where(of_run).order_by(t.c.created_at, t.c.key)
        last_change = sa.func.max(t.c.updated_at).label("last_change")
        self.recent_runs = (
            sa.select(t.c.run_id, sa.func.min(t.c.created_at).label("first_seen"), last_change)
            .group_by(t.c.run_id)
            .order_by(last_change.desc())
            .limit(sa.bindparam("p_limit"))
        )
        self.states_of_runs = (
            sa.select(t.c.run_id, t.c.state, sa.func.count().label("steps"))
            .where(t.c.run_id.in_(sa.bindparam("p_run_ids", expanding=True)))
            .group_by(t.c.run_id, t.c.state)
        )
        lease_expired = sa.and_(t.c.state == TaskState.RUNNING.value, t.c.lease_until < now)
        self.snapshot_run = (
            sa.select(t, sa.case((lease_expired, True), else_=False).label("lease_expired"))
            .where(of_run)
            .order_by(t.c.created_at, t.c.key)
        )
        self.insert_pending = (
            _dialect_insert(dialect, t)
            .values(
                key=sa.bindparam("p_key"),
                run_id=sa.bindparam("p_run_id"),
                step_key=sa.bindparam("p_step_key"),
                state=TaskState.PENDING.value,
                attempt=0,
                owner=None,
                lease_until=None,
                retry_number=sa.bindparam("p_retry_number"),
                enqueue_attempt=sa.bindparam("p_enqueue_attempt"),
                created_at=now,
                updated_at=now,
                result=None,
            )
            .on_conflict_do_nothing(index_elements=[t.c.key])
            .returning(*t.c)
        )
        self.rearm = (
            sa.update(t)
            .where(
                key,
                t.c.state == TaskState.FAILED.value,
                t.c.retry_number < sa.bindparam("p_retry_number"),
            )
            .values(
                **released,
                retry_number=sa.bindparam("p_retry_number"),
                enqueue_attempt=sa.bindparam("p_enqueue_attempt"),
                result=None,
                updated_at=now,
            )
            .returning(*t.c)
        )
        claimable = sa.and_(
            key,
            sa.or_(
                t.c.state == TaskState.PENDING.value,
                sa.and_(t.c.state == TaskState.RUNNING.value, t.c.lease_until < now),
            ),
        )
        claim_values = {
            "state": TaskState.RUNNING.value,
            "attempt": t.c.attempt + 1,
            "owner": sa.bindparam("p_owner"),
            "lease_until": lease_until,
            "updated_at": now,
        }
        self.claim = sa.update(t).where(claimable).values(claim_values).returning(t.c.attempt)
        self.claim_retry = (
            sa.update(t)
            .where(claimable, t.c.retry_number == sa.bindparam("p_retry_number"))
            .values(claim_values)
            .returning(t.c.attempt)
        )
        self.heartbeat = (
            sa.update(t)
            .where(current)
            .values(lease_until=lease_until, updated_at=now)
            .returning(t.c.attempt)
        )
        finish = (
            sa.update(t)
            .where(current)
            .values(
                state=sa.bindparam("p_state"),
                result=sa.bindparam("p_result"),
                lease_until=None,
                updated_at=now,
            )
            .returning(t.c.attempt)
        )
        self.finish: sa.Executable = finish
        if dialect == "postgresql":
            # The outcome and its notification commit together (one statement, autocommit).
            done = finish.returning(t.c.run_id).cte("done")
            self.finish = sa.select(
                done.c.attempt,
                sa.func.pg_notify(
                    _pg_outcome_channel(table_prefix, done.c.run_id),
                    sa.cast(done.c.attempt, sa.Text),
                ),
            ).select_from(done)
        self.release = (
            sa.update(t).where(current).values(**released, updated_at=now).returning(t.c.attempt)
        )
        self.reclaim = (
            sa.update(t)
            .where(current, t.c.lease_until < now)
            .values(**released, enqueue_attempt=t.c.enqueue_attempt + 1, updated_at=now)
            .returning(*t.c)
        )
        expired = (
            sa.select(t)
            .where(t.c.state == TaskState.RUNNING.value, t.c.lease_until < now)
            .order_by(t.c.lease_until)
            .limit(sa.bindparam("p_limit"))
        )
        self.expired = expired
        self.expired_in_run = expired.where(t.c.run_id == sa.bindparam("p_run_id"))


def _pg_outcome_channel(table_prefix: str, run_id: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """:func:`outcome_channel` computed by PostgreSQL from a row's run id."""
    digest = sa.func.encode(
        sa.func.sha256(sa.func.convert_to(sa.func.concat(f"{table_prefix}:", run_id), "UTF8")),
        "hex",
    )
    return sa.func.concat(CHANNEL_PREFIX, sa.func.left(digest, CHANNEL_DIGEST_CHARS))


def _lost_creation_race(exc: sa.exc.DBAPIError) -> bool:
    """Another process created the same table or row between our check and our CREATE."""
    return isinstance(exc, sa.exc.IntegrityError) or "already exists" in str(exc.orig)


def _check_lease(lease_seconds: float) -> None:
    if not lease_seconds > 0:
        raise IdempotencyError(f"lease_seconds must be > 0, got {lease_seconds}")


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _describe_db_error(exc: BaseException) -> str:
    """The driver's error and its first line (SQLAlchemy's text adds the statement and its
    parameters, which belong in no log)."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    return f"{type(orig).__name__}: {_first_line(orig)}"


# SQLSTATE classes that retrying cannot fix: 28 = invalid authorization, 3D = no such database.
_PERMANENT_SQLSTATE_CLASSES = ("28", "3D")


def _is_transient(exc: BaseException) -> bool:
    """Connection loss, server restart, refused connection, SQLite busy: worth retrying."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES:
        return False
    if exc.orig is not None and type(exc.orig).__module__.startswith("sqlite3"):
        message = str(exc.orig).lower()
        return "locked" in message or "busy" in message
    return True


def _create_engine(url: URL, masked: str, options: dict[str, Any]) -> Engine:
    options.setdefault("isolation_level", "AUTOCOMMIT")
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        connect_args = options.setdefault("connect_args", {})
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", 30.0)
        if database in ("", ":memory:"):
            options.setdefault("poolclass", StaticPool)
    try:
        engine = sa.create_engine(url, **options)
    except ModuleNotFoundError as exc:
        raise IdempotencyError(
            f"store URL {masked!r} needs the database driver {exc.name!r}: install "
            "'dagster-taskiq-core[postgres]' for PostgreSQL"
        ) from None
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()
