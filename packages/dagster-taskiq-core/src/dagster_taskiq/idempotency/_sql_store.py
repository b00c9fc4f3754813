"""The SQLAlchemy implementation of :class:`IdempotencyStore` (PostgreSQL and SQLite).

Each state transition is one conditional ``UPDATE ... WHERE ... RETURNING`` (or ``INSERT ... ON
CONFLICT DO NOTHING``) in autocommit mode: one round trip, atomic on its own, no read-then-write
in Python and no SERIALIZABLE isolation. See ``docs/idempotency.md``.

Transient database errors are retried with stamina's jittered exponential backoff. A retried
statement may already have committed before the connection broke; each operation therefore
knows how to recognise its own committed effect on a retry (the ``retried`` flag), so that a
lost reply never turns a success into a reported failure.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
import stamina
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.pool import StaticPool

from dagster_taskiq.errors import IdempotencyError, SchemaVersionError, StoreUnavailableError
from dagster_taskiq.idempotency._protocol import Clock
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

_T = TypeVar("_T")

DEFAULT_TABLE_PREFIX = "dagster_taskiq_"

_log = structlog.get_logger("dagster_taskiq.idempotency")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreRetry:
    """Retry budget for transient database errors (stamina's jittered exponential backoff)."""

    attempts: int = 10
    """Tries per operation, the first included."""
    timeout: float = 30.0
    """Give up after this many seconds in total, whatever the attempts left."""
    wait_initial: float = 0.05
    wait_max: float = 2.0
    wait_jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise IdempotencyError(f"StoreRetry.attempts must be >= 1, got {self.attempts}")
        for name in ("timeout", "wait_initial", "wait_max", "wait_jitter"):
            if getattr(self, name) < 0:
                raise IdempotencyError(f"StoreRetry.{name} must be >= 0")


class SqlIdempotencyStore:
    """:class:`IdempotencyStore` on PostgreSQL (psycopg 3) or SQLite (WAL mode).

    Created from a URL (``postgresql://``, ``postgresql+psycopg://`` or ``sqlite:///path``);
    the tables ``{table_prefix}idempotency`` and ``{table_prefix}schema_version`` are created on
    first use. Lease times come from the database's clock unless ``clock`` is given (tests).
    Thread-safe: one instance may be shared by all threads of a process.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        clock: Clock | None = None,
        retry: StoreRetry | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = normalize_store_url(url)
        self.masked_url = mask_url(self._url)
        self.table_prefix = table_prefix
        self._tables: StoreTables = make_tables(table_prefix)
        self._clock = clock
        self._retry = retry or StoreRetry()
        self._engine = _create_engine(self._url, self.masked_url, dict(engine_options or {}))
        self._dialect = self._engine.dialect.name
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
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> IdempotencyRecord:
            now = self._now()
            insert = (
                self._insert(t)
                .values(
                    key=task.idempotency_key,
                    run_id=task.run_id,
                    step_key=task.step_key,
                    state=TaskState.PENDING.value,
                    attempt=0,
                    owner=None,
                    lease_until=None,
                    retry_number=task.retry_number,
                    enqueue_attempt=task.enqueue_attempt,
                    created_at=now,
                    updated_at=now,
                    result=None,
                )
                .on_conflict_do_nothing(index_elements=[t.c.key])
                .returning(*t.c)
            )
            row = conn.execute(insert).first()
            if row is None and task.retry_number > 0:
                rearm = (
                    sa.update(t)
                    .where(
                        t.c.key == task.idempotency_key,
                        t.c.state == TaskState.FAILED.value,
                        t.c.retry_number < task.retry_number,
                    )
                    .values(
                        state=TaskState.PENDING.value,
                        retry_number=task.retry_number,
                        enqueue_attempt=task.enqueue_attempt,
                        owner=None,
                        lease_until=None,
                        result=None,
                        updated_at=now,
                    )
                    .returning(*t.c)
                )
                row = conn.execute(rearm).first()
            if row is None:
                row = conn.execute(sa.select(t).where(t.c.key == task.idempotency_key)).one()
            return self._record(row)

        return self._run("ensure_pending", op)

    def get(self, key: str) -> IdempotencyRecord | None:
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> IdempotencyRecord | None:
            row = conn.execute(sa.select(t).where(t.c.key == key)).first()
            return None if row is None else self._record(row)

        return self._run("get", op)

    def records_for_run(self, run_id: str) -> list[IdempotencyRecord]:
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> list[IdempotencyRecord]:
            query = sa.select(t).where(t.c.run_id == run_id).order_by(t.c.created_at, t.c.key)
            return [self._record(row) for row in conn.execute(query)]

        return self._run("records_for_run", op)

    def claim(
        self, key: str, owner: str, lease_seconds: float, *, retry_number: int | None = None
    ) -> int | None:
        _check_lease(lease_seconds)
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> int | None:
            now = self._now()
            stmt = sa.update(t).where(
                t.c.key == key,
                sa.or_(
                    t.c.state == TaskState.PENDING.value,
                    sa.and_(t.c.state == TaskState.RUNNING.value, t.c.lease_until < now),
                ),
            )
            if retry_number is not None:
                stmt = stmt.where(t.c.retry_number == retry_number)
            stmt = stmt.values(
                state=TaskState.RUNNING.value,
                attempt=t.c.attempt + 1,
                owner=owner,
                lease_until=now + lease_seconds,
                updated_at=now,
            ).returning(t.c.attempt)
            token = conn.execute(stmt).scalar_one_or_none()
            if token is None and retried:
                # Our first try may have committed before its reply was lost.
                row = conn.execute(
                    sa.select(t.c.state, t.c.owner, t.c.attempt).where(t.c.key == key)
                ).first()
                if row is not None and row.state == TaskState.RUNNING.value and row.owner == owner:
                    return int(row.attempt)
            return token

        return self._run("claim", op)

    def heartbeat(self, key: str, token: int, lease_seconds: float) -> bool:
        _check_lease(lease_seconds)
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> bool:
            now = self._now()
            stmt = (
                sa.update(t)
                .where(
                    t.c.key == key,
                    t.c.attempt == token,
                    t.c.state == TaskState.RUNNING.value,
                )
                .values(lease_until=now + lease_seconds, updated_at=now)
                .returning(t.c.attempt)
            )
            return conn.execute(stmt).first() is not None

        return self._run("heartbeat", op)

    def finish(self, key: str, token: int, result: ExecutionResult) -> bool:
        if result.idempotency_key != key or result.attempt != token:
            raise IdempotencyError(
                f"finish({key!r}, token={token}) was given the result of "
                f"{result.idempotency_key!r} attempt {result.attempt}"
            )
        t = self._tables.records
        payload = result.to_json()

        def op(conn: Connection, retried: bool) -> bool:
            now = self._now()
            stmt = (
                sa.update(t)
                .where(
                    t.c.key == key,
                    t.c.attempt == token,
                    t.c.state == TaskState.RUNNING.value,
                )
                .values(state=result.state.value, result=payload, lease_until=None, updated_at=now)
                .returning(t.c.attempt)
            )
            if conn.execute(stmt).first() is not None:
                return True
            row = conn.execute(
                sa.select(t.c.state, t.c.attempt, t.c.owner, t.c.result).where(t.c.key == key)
            ).first()
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
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> bool:
            now = self._now()
            stmt = (
                sa.update(t)
                .where(
                    t.c.key == key,
                    t.c.attempt == token,
                    t.c.state == TaskState.RUNNING.value,
                )
                .values(state=TaskState.PENDING.value, owner=None, lease_until=None, updated_at=now)
                .returning(t.c.attempt)
            )
            if conn.execute(stmt).first() is not None:
                return True
            return retried and self._is_pending_at(conn, key, token)

        return self._run("release", op)

    def expired(self, *, run_id: str | None = None, limit: int = 1000) -> list[IdempotencyRecord]:
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> list[IdempotencyRecord]:
            query = sa.select(t).where(
                t.c.state == TaskState.RUNNING.value, t.c.lease_until < self._now()
            )
            if run_id is not None:
                query = query.where(t.c.run_id == run_id)
            query = query.order_by(t.c.lease_until).limit(limit)
            return [self._record(row) for row in conn.execute(query)]

        return self._run("expired", op)

    def reclaim(self, key: str, token: int) -> IdempotencyRecord | None:
        t = self._tables.records

        def op(conn: Connection, retried: bool) -> IdempotencyRecord | None:
            now = self._now()
            stmt = (
                sa.update(t)
                .where(
                    t.c.key == key,
                    t.c.attempt == token,
                    t.c.state == TaskState.RUNNING.value,
                    t.c.lease_until < now,
                )
                .values(
                    state=TaskState.PENDING.value,
                    owner=None,
                    lease_until=None,
                    enqueue_attempt=t.c.enqueue_attempt + 1,
                    updated_at=now,
                )
                .returning(*t.c)
            )
            row = conn.execute(stmt).first()
            if row is None and retried and self._is_pending_at(conn, key, token):
                row = conn.execute(sa.select(t).where(t.c.key == key)).first()
            return None if row is None else self._record(row)

        return self._run("reclaim", op)

    def close(self) -> None:
        self._engine.dispose()

    # --- machinery --------------------------------------------------------------------------

    def _now(self) -> sa.ColumnElement[float]:
        if self._clock is None:
            return db_epoch()
        return sa.literal(float(self._clock()), sa.Double())

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _is_pending_at(self, conn: Connection, key: str, token: int) -> bool:
        t = self._tables.records
        row = conn.execute(sa.select(t.c.state, t.c.attempt).where(t.c.key == key)).first()
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

    def _run(self, name: str, op: Callable[[Connection, bool], _T]) -> _T:
        self._ensure_schema()
        return self._retrying(name, op)

    def _retrying(self, name: str, op: Callable[[Connection, bool], _T]) -> _T:
        r = self._retry
        try:
            for attempt in stamina.retry_context(
                on=_is_transient,
                attempts=r.attempts,
                timeout=r.timeout,
                wait_initial=r.wait_initial,
                wait_max=r.wait_max,
                wait_jitter=r.wait_jitter,
            ):
                with attempt:
                    if attempt.num > 1:
                        _log.warning(
                            "store_retry", op=name, attempt=attempt.num, store=self.masked_url
                        )
                    with self._connection() as conn:
                        return op(conn, attempt.num > 1)
        except sa.exc.DBAPIError as exc:
            if _is_transient(exc):
                _log.error("store_unavailable", op=name, store=self.masked_url, error=str(exc.orig))
                raise StoreUnavailableError(
                    f"idempotency store {self.masked_url} is unavailable: {name} failed after "
                    f"the retry budget ({r.attempts} attempts, {r.timeout:g} s): "
                    f"{type(exc.orig).__name__}: {_first_line(exc.orig)}"
                ) from exc
            raise
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._retrying("create_schema", self._create_schema)
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


def _lost_creation_race(exc: sa.exc.DBAPIError) -> bool:
    """Another process created the same table or row between our check and our CREATE."""
    return isinstance(exc, sa.exc.IntegrityError) or "already exists" in str(exc.orig)


def _check_lease(lease_seconds: float) -> None:
    if not lease_seconds > 0:
        raise IdempotencyError(f"lease_seconds must be > 0, got {lease_seconds}")


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# SQLSTATE classes that retrying cannot fix: 28 = invalid authorization, 3D = no such database.
_PERMANENT_SQLSTATE_CLASSES = ("28", "3D")


def _is_transient(exc: Exception) -> bool:
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
