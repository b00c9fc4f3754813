"""Helpers shared by the core package's tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from dagster_taskiq.idempotency import SqlIdempotencyStore

POSTGRES_URL = os.environ.get(
    "DAGSTER_TASKIQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"


class FakeClock:
    """A settable clock (Unix seconds) for lease tests; starts at an exact binary float."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
