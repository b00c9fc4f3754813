"""``dagster-taskiq demo`` end to end (moto, two worker processes), and ``status`` after it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dagster_taskiq import SqlIdempotencyStore

pytestmark = pytest.mark.sqs_server

STEPS = [
    "extract_orders",
    *(f"clean_{r}" for r in ("emea", "apac", "amer", "latam", "anz", "nordics")),
    "combine",
    "publish_report",
]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagster_taskiq.cli", *args],
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_runs_the_example_job_and_status_shows_every_step(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _cli("demo", "--step-seconds", "0.05", "--dagster-home", str(home))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "SUCCESS" in output
    assert "9 planned, 9 completed, 0 failed, 0 not run" in output
    assert "ok: each step started once and has one outcome" in output
    assert re.search(r"per-step overhead\s*│\s*p50 \d+ ms, p95 \d+ ms", output), output[-2000:]
    for step in STEPS:  # the progress display showed each step's moves
        assert re.search(rf"completed {step}\b", output), step
    run_id = re.search(r"demo: run ([0-9a-f-]{36})", output)
    assert run_id, output[-2000:]

    store_url = f"sqlite:///{home / 'dagster_taskiq.db'}"
    status = _cli("status", run_id.group(1), "--store-url", store_url)
    assert status.returncode == 0, status.stderr
    for step in STEPS:
        assert re.search(rf"{step}\s*│\s*COMPLETED", status.stdout), (step, status.stdout)


def test_demo_with_a_failing_step_exits_non_zero_and_names_it() -> None:
    done = _cli("demo", "--step-seconds", "0", "--fail-step", "clean_apac")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-4000:]
    assert "FAILURE" in output
    assert "failed steps: clean_apac" in output
    assert "op 'clean_apac' failed on purpose" in output  # the progress line shows the error
    assert "9 planned, 6 completed, 1 failed, 2 not run" in output  # combine, publish_report
    # its own temporary Dagster home: only the demo's output, no notice of Dagster's
    assert "Warning" not in output
    assert "telemetry" not in output.lower()


def test_demo_refuses_an_unknown_step_and_lists_the_ops() -> None:
    done = _cli("demo", "--fail-step", "no_such_op", timeout=120)
    assert done.returncode == 2
    assert "'no_such_op' is not an op of orders_pipeline" in done.stderr
    assert "clean_apac" in done.stderr


def test_the_demo_command_is_listed_by_dagster_taskiq() -> None:
    done = _cli("--help", timeout=60)
    assert done.returncode == 0
    assert re.search(r"^\s+demo\s+Run an example job", done.stdout, re.MULTILINE), done.stdout


@pytest.mark.postgres
def test_demo_runs_the_partitioned_assets_with_a_postgres_store(
    postgres_database: sa.URL,
) -> None:
    store_url = postgres_database.render_as_string(hide_password=False)
    done = _cli(
        "demo", "--job", "daily_orders_job", "--partition", "2026-11-02", "--store-url", store_url
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "3 planned, 3 completed, 0 failed, 0 not run" in output
    assert "idempotency store: postgresql+psycopg://postgres@127.0.0.1" in output
    store = SqlIdempotencyStore(store_url)
    try:
        run_id = re.search(r"demo: run ([0-9a-f-]{36})", output)
        assert run_id
        records = store.records_for_run(run_id.group(1))
    finally:
        store.close()
    assert sorted(r.step_key for r in records) == [
        "daily_orders",
        "daily_revenue",
        "daily_revenue_revenue_is_not_negative",
    ]
