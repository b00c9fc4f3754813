"""What the benchmarks share: an SQS server in its own process, the load average, a Dagster home.

* ``sqs_server(kind)``: moto's server (``python -m moto.server``) or LocalStack, each in its own
  process as real SQS is, never in the benchmark's (where it would take CPU from the run
  process being measured);
* ``load_average(when)``, ``load_line``, ``is_noisy``, ``load_verdict``, ``aim_verdict``: the
  load average printed before and after every table; a 1-minute figure above ``NOISY_LOAD``
  (before or after) makes the run noisy, not comparable, never a result;
* ``dagster_home(tmp, storage)``: a temporary ``DAGSTER_HOME`` whose ``dagster.yaml`` turns
  telemetry off and keeps Dagster's storage in SQLite (the embedded default) or PostgreSQL
  (dagster-postgres on a fresh database of 127.0.0.1:5432, user postgres, dropped at the end:
  the storage production uses; ``postgres_port`` puts another port, a proxy's, in the yaml);
* ``event_log_rows(instance, run_id)``: every event-log row a run wrote, plain log records too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster_taskiq_testing.servers import LocalStackServer, MotoProcessServer

SQS_SERVERS = ("moto", "localstack")
STORAGES = ("sqlite", "postgres")
NOISY_LOAD = 1.5
NOISY = (
    f"NOISY, NOT COMPARABLE: load average above {NOISY_LOAD}; do not use these figures as a result"
)
QUIET = f"quiet (load <= {NOISY_LOAD})"

DAGSTER_YAML = "telemetry:\n  enabled: false\n"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POSTGRES_STORAGE_YAML = """storage:
  postgres:
    postgres_db:
      scheme: postgresql+psycopg2
      hostname: 127.0.0.1
      port: {port}
      username: postgres
      password: ""
      db_name: {db_name}
"""

LoadFigures = tuple[float, float, float]


def add_localstack_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--localstack",
        action="store_true",
        help="SQS on LocalStack (its own env and process) instead of moto's server",
    )


@contextlib.contextmanager
def sqs_server(kind: str) -> Iterator[MotoProcessServer | LocalStackServer]:
    """A started SQS server in its own process: ``moto`` or ``localstack``; stopped after."""
    from dagster_taskiq_testing.servers import LocalStackServer, MotoProcessServer  # noqa: PLC0415

    if kind not in SQS_SERVERS:
        raise SystemExit(f"unknown SQS server {kind!r}; choose from {', '.join(SQS_SERVERS)}")
    server: MotoProcessServer | LocalStackServer = (
        MotoProcessServer() if kind == "moto" else LocalStackServer()
    )
    with server:
        print(f"SQS: {kind} at {server.endpoint_url} (its own process)", flush=True)
        yield server


def load_average(when: str) -> tuple[LoadFigures, str]:
    """``os.getloadavg()`` and its line, ``load average 0.42 0.31 0.20 (before)``."""
    figures = os.getloadavg()
    return figures, load_line(figures, when)


def load_line(figures: LoadFigures, when: str) -> str:
    return f"load average {figures[0]:.2f} {figures[1]:.2f} {figures[2]:.2f} ({when})"


def is_noisy(*loads: LoadFigures) -> bool:
    """Whether any 1-minute figure is above ``NOISY_LOAD``."""
    return any(load[0] > NOISY_LOAD for load in loads)


def load_verdict(noisy: bool) -> str:
    return NOISY if noisy else QUIET


def aim_verdict(met: bool, noisy: bool) -> str:
    """``(met)`` / ``(not met)``, followed by ``(noisy run: not a result)`` on a noisy run."""
    verdict = "(met)" if met else "(not met)"
    return f"{verdict} (noisy run: not a result)" if noisy else verdict


def add_storage_argument(parser: argparse.ArgumentParser, *, both: bool) -> None:
    choices = (*STORAGES, "both") if both else STORAGES
    parser.add_argument(
        "--dagster-storage",
        choices=choices,
        default="both" if both else "sqlite",
        help="the Dagster instance's storage (postgres: a fresh database on 127.0.0.1:5432)",
    )


def storages(choice: str) -> tuple[str, ...]:
    return STORAGES if choice == "both" else (choice,)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for Dagster's storage, dropped afterwards."""
    import sqlalchemy as sa  # noqa: PLC0415

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dagster_taskiq_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def dagster_home(tmp: Path, storage: str, *, postgres_port: int = 5432) -> Iterator[Path]:
    """``tmp/home`` with its ``dagster.yaml``, as ``DAGSTER_HOME`` (worker processes inherit it).

    ``postgres_port``: the port ``dagster.yaml`` names for PostgreSQL storage (e.g. a counting
    proxy's in front of 127.0.0.1:5432, where the database is created).

    Create the instance (``DagsterInstance.get()``) before any worker opens it: processes that
    create a fresh SQLite instance at once can stamp two alembic heads.
    """
    if storage not in STORAGES:
        raise SystemExit(f"unknown Dagster storage {storage!r}; choose from {', '.join(STORAGES)}")
    home = tmp / "home"
    home.mkdir()
    with contextlib.ExitStack() as stack:
        yaml = DAGSTER_YAML
        if storage == "postgres":
            db_name = stack.enter_context(postgres_database())
            yaml += POSTGRES_STORAGE_YAML.format(db_name=db_name, port=postgres_port)
        (home / "dagster.yaml").write_text(yaml)
        with env("DAGSTER_HOME", str(home)):
            yield home


@contextlib.contextmanager
def env(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block, the previous value (or none) restored after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def event_log_rows(instance: Any, run_id: str) -> int:
    """Every row the run wrote to the event log (Dagster events and plain log records)."""
    return len(instance.all_logs(run_id))
