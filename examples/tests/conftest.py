"""Fixtures of the example project's tests: PostgreSQL databases and worker pools over moto."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dagster_taskiq_examples._cluster import CODE_LOCATION, DemoQueue, WorkerPool

POSTGRES_URL = os.environ.get(
    "DAGSTER_TASKIQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )


@pytest.fixture
def postgres_database() -> Iterator[sa.URL]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    admin = _engine(POSTGRES_URL)
    name = f"dagster_taskiq_example_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def workers_factory(sqs_server: Any, tmp_path: Path) -> Iterator[Any]:
    """Start two example workers on a fresh queue of the test SQS server, for a store URL."""
    pools: list[WorkerPool] = []

    def start(store_url: str, code: tuple[str, ...] = ("-m", CODE_LOCATION)) -> DemoQueue:
        queue = DemoQueue(endpoint_url=sqs_server.endpoint_url, region="us-east-1")
        pool = WorkerPool(
            queue,
            store_url,
            count=2,
            concurrency=2,
            log_dir=tmp_path / f"logs-{len(pools)}",
            code=code,
        )
        pools.append(pool.__enter__())
        pool.wait_ready()
        return queue

    yield start
    for pool in pools:
        pool.__exit__(None, None, None)
