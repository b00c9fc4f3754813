"""examples/dagster.yaml: a Dagster instance on PostgreSQL running the example job on workers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterInstance, execute_job

from dagster_taskiq import SqlIdempotencyStore, TaskState
from dagster_taskiq.code_locations import job_in_module
from example_support import executor_config

EXAMPLES = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.sqs_server]


def test_dagster_yaml_runs_the_example_job_with_postgres_storage(
    postgres_database: sa.URL,
    workers_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(EXAMPLES / "dagster.yaml", home / "dagster.yaml")
    url = postgres_database
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    store_url = url.render_as_string(hide_password=False)
    queue = workers_factory(store_url)  # workers inherit the DAGSTER_PG_* environment

    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        with execute_job(
            job_in_module("dagster_taskiq_examples.definitions", "orders_pipeline"),
            instance,
            run_config={
                "execution": {"config": executor_config(queue, store_url)},
                "resources": {"knobs": {"config": {"step_seconds": 0.0}}},
            },
        ) as result:
            assert result.success
            report = result.output_for_node("publish_report")
        assert report.startswith("revenue across 6 regions")
        # Workers wrote the step events into the same PostgreSQL event log.
        successes = instance.get_records_for_run(
            result.run_id, of_type=DagsterEventType.STEP_SUCCESS
        ).records
        assert len(successes) == 9

    engine = sa.create_engine(url.set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"runs", "event_logs"} <= tables  # Dagster's storage is in this database

    store = SqlIdempotencyStore(store_url)
    try:
        records = store.records_for_run(result.run_id)
    finally:
        store.close()
    assert len(records) == 9
    assert all(r.state is TaskState.COMPLETED and r.attempt == 1 for r in records)
