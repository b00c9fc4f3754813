"""What the benchmarks share: an SQS server in its own process, the load average, a Dagster home.

* ``sqs_server(kind)``: moto's server (``python -m moto.server``) or LocalStack, each in its own
  process as real SQS is, never in the benchmark's (where it would take CPU from the run
  process being measured);
* ``ConditionsWatch.settle()`` / ``.stop()`` -> ``Conditions``: each table waits for the load
  average to settle, then records it before and after and the CPU other processes used while
  it ran; a table that started above load ``NOISY_LOAD``, or during which other processes used
  more than ``NOISY_OTHER_CORES`` cores, is noisy, not comparable, never a result
  (``aim_verdict`` says so next to every aim);
* ``dagster_home(tmp, storage)``: a temporary ``DAGSTER_HOME`` whose ``dagster.yaml`` turns
  telemetry off and keeps Dagster's storage in SQLite (the embedded default) or PostgreSQL
  (dagster-postgres on a fresh database of 127.0.0.1:5432, user postgres, dropped at the end:
  the storage production uses; ``postgres_port`` puts another port, a proxy's, in the yaml);
* ``event_log_rows(instance, run_id)``: every event-log row a run wrote, plain log records too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
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
    """A fresh database on the local PostgreSQL (Dagster's storage, a store), dropped after."""
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


def timed_run(target: Any, instance: Any, run_config: dict[str, Any], label: str) -> Any:
    """``dagster.execute_job(target)``: its wall seconds and its result; SystemExit naming
    ``label`` if the run failed (a benchmark of a failed run measures nothing)."""
    from dagster import execute_job  # noqa: PLC0415 - imported when a benchmark runs

    started = time.perf_counter()
    result = execute_job(target, instance, run_config=run_config)
    wall = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"{label}: run {result.run_id} failed")
    return wall, result


def event_log_rows(instance: Any, run_id: str) -> int:
    """Every row the run wrote to the event log (Dagster events and plain log records)."""
    return len(instance.all_logs(run_id))


NOISY_OTHER_CORES = 0.5
"""Cores' worth of CPU that other processes may use during a table before it is noisy."""
SETTLE_TIMEOUT = 180.0
"""Seconds a table waits for the machine's load to fall to ``NOISY_LOAD`` before it starts."""


@dataclasses.dataclass(frozen=True)
class Conditions:
    """What the machine did while one table was measured, and whether that makes it noisy.

    The load average after a table counts the benchmark's own processes (a run process, its
    workers, the SQS server: one or two cores' worth on this machine), so it is printed but
    does not decide: the table is noisy when the load was above ``NOISY_LOAD`` as it started,
    or when other processes (everything but this process and its descendants) used more than
    ``NOISY_OTHER_CORES`` cores on average while it ran."""

    before: LoadFigures
    after: LoadFigures
    other_cores: float
    seconds: float
    database_cores: float = 0.0
    """Cores the local PostgreSQL server used meanwhile: counted as the benchmark's own (the
    benchmarks that use it talk to it; nothing else on this machine does)."""

    @property
    def noisy(self) -> bool:
        return self.before[0] > NOISY_LOAD or self.other_cores > NOISY_OTHER_CORES

    def lines(self) -> list[str]:
        reasons = []
        if self.before[0] > NOISY_LOAD:
            reasons.append(f"the load average was above {NOISY_LOAD} as the table started")
        if self.other_cores > NOISY_OTHER_CORES:
            reasons.append(f"other processes used more than {NOISY_OTHER_CORES} cores")
        verdict = (
            f"NOISY, NOT COMPARABLE: {'; '.join(reasons)}; do not use these figures as a result"
            if reasons
            else QUIET
        )
        return [
            load_line(self.before, "before"),
            load_line(self.after, "after, this benchmark's own processes included"),
            f"other processes used {self.other_cores:.2f} cores on average during the "
            f"{self.seconds:.0f} s of the table (noisy above {NOISY_OTHER_CORES}); the local "
            f"PostgreSQL server {self.database_cores:.2f} (counted as the benchmark's)",
            verdict,
        ]


class ConditionsWatch:
    """Starts a table once the load has settled (``settle``), then measures ``Conditions``."""

    def __init__(self) -> None:
        self.before = os.getloadavg()
        self._busy = _busy_cpu_seconds()
        self._ours = _own_cpu_seconds()
        self._database = postgres_cpu_seconds()
        self._started = time.monotonic()

    @classmethod
    def settle(cls, timeout: float = SETTLE_TIMEOUT) -> ConditionsWatch:
        """Wait up to ``timeout`` seconds for the 1-minute load to fall to ``NOISY_LOAD``
        (printing it every 15 s), then start watching (a table that starts above it is noisy)."""
        deadline = time.monotonic() + timeout
        said = 0.0
        while (load := os.getloadavg()[0]) > NOISY_LOAD and time.monotonic() < deadline:
            if time.monotonic() - said >= 15:
                print(f"waiting for the load average to fall to {NOISY_LOAD} (now {load:.2f})")
                said = time.monotonic()
            time.sleep(1)
        return cls()

    def stop(self) -> Conditions:
        seconds = max(time.monotonic() - self._started, 1e-6)
        busy = _busy_cpu_seconds() - self._busy
        ours = _own_cpu_seconds() - self._ours
        database = postgres_cpu_seconds() - self._database
        return Conditions(
            before=self.before,
            after=os.getloadavg(),
            other_cores=max(0.0, busy - ours - database) / seconds,
            seconds=seconds,
            database_cores=database / seconds,
        )


def _busy_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its descendants, those that ended and were waited for
    included (they count in their parent's children times; ``/proc/<pid>/stat``)."""
    stats = _process_stats()
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[pid][1] for pid in tree if pid in stats) / _TICKS


_TICKS = os.sysconf("SC_CLK_TCK")


def _process_stats() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, utime + stime + cutime + cstime in ticks) of every process."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return stats


def postgres_cpu_seconds() -> float:
    """CPU seconds of the local PostgreSQL server so far: every ``postgres`` process (the
    postmaster's children times hold the backends that have ended)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS
