"""Fixtures of the core package's tests: store URLs on SQLite and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from dagster_taskiq.idempotency import SqlIdempotencyStore
from dagster_taskiq.retrying import RetryBudget
from dagster_taskiq_testing import FakeClock
from support import job_shapes
from support.store import (
    POSTGRES_URL,
    drop_store_tables,
    require_postgres,
    unique_prefix,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a store on SQLite (a temp file) or on the real PostgreSQL."""
    if request.param == "postgresql":
        require_postgres()
        return POSTGRES_URL
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance in a home of its own (SQLite storage), as a run's and its workers'."""
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        yield instance


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlIdempotencyStore]:
    """An idempotency store on SQLite (a temp file), closed afterwards."""
    store = SqlIdempotencyStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield store
    store.close()


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The side-effect ledger's directory (``job_shapes.LEDGER_ENV``): each op body run of the
    jobs in ``support.job_shapes`` appends a line to its run's file there."""
    directory = tmp_path / "ledger"
    directory.mkdir()
    monkeypatch.setenv(job_shapes.LEDGER_ENV, str(directory))
    return directory


@pytest.fixture
def clock() -> FakeClock:
    """The store's injected clock (``clock=``): the testing package's ``FakeClock``, at 1e6 s."""
    return FakeClock(start=1_000_000.0)


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[..., SqlIdempotencyStore]]:
    """Factory of stores on ``store_url``, each with its own table prefix, dropped afterwards."""
    made: list[SqlIdempotencyStore] = []

    def factory(**kwargs: object) -> SqlIdempotencyStore:
        kwargs.setdefault("table_prefix", unique_prefix())
        kwargs.setdefault(
            "retry", RetryBudget(attempts=3, initial_delay=0.01, max_delay=2.0, timeout=5)
        )
        store = SqlIdempotencyStore(store_url, **kwargs)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield factory
    for store in made:
        drop_store_tables(store)
        store.close()
