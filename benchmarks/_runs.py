"""Run processes, worker processes and builds for the benchmarks that run many runs at once.

* ``Build``: which dagster-taskiq a process runs. ``current_build()`` is this checkout (only the
  repository root on ``PYTHONPATH``, the editable installs for the packages);
  ``baseline_build(ref)`` checks ``ref`` out in a temporary ``git worktree`` (removed at the
  end) and puts its packages' ``src`` directories first on ``PYTHONPATH``, ahead of the
  editable installs (path entries in ``.pth`` files, which ``PYTHONPATH`` precedes); it checks
  that ``dagster_taskiq`` and the others then import from the worktree. The repository root
  comes last in both, for ``benchmarks`` (the jobs and ``benchmarks._run_job``).
* ``RunProcesses``: ``count`` processes of ``python -m benchmarks._run_job`` started at once
  (in production every run is its own process), each logging to its own file; ``wait()``
  collects each one's ``RunOutcome`` (run id, success, CPU seconds, end time) and fails loudly,
  with the log's tail, if a run failed or a process died.
* ``Workers``: ``count`` ``dagster-taskiq worker`` processes of a build, each logging (JSON) to
  its own file; ``wait_ready()`` until each logged ``worker_started``.
* ``fresh_database(prefix)``: a database ``<prefix><hex>`` on 127.0.0.1:5432, dropped at the end;
  ``warn_if_few_connections(expected)``: a warning when ``max_connections`` leaves too little.
* ``TableConditions``: ``benchmarks._common.ConditionsWatch`` with the local PostgreSQL
  server's CPU reported (it counts as the benchmark's own in every table's conditions);
* ``cpu_seconds(pid)``: user + system CPU of a live process, from ``/proc/<pid>/stat``;
  ``parse_runs``: the ``--runs 1,8,32`` argument.

Processes are stopped on exit, even on failure or Ctrl-C: SIGTERM, then SIGKILL after a grace
period; under ``interrupt_once()`` a second Ctrl-C does not cut that clean-up short.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from benchmarks._common import Conditions, ConditionsWatch
from benchmarks._run_job import RESULT_PREFIX
from dagster_taskiq.cli import worker_command

ROOT = Path(__file__).resolve().parent.parent
BASELINE_REF = "65e49e3"
"""The build before the executor waited on LISTEN/NOTIFY (it polled the store every 5 ms)."""

PACKAGE_SOURCES = (
    "packages/dagster-taskiq-core/src",
    "packages/dagster-taskiq-sqs/src",
    "packages/dagster-taskiq-redis/src",
    "packages/dagster-taskiq-nats/src",
    "packages/dagster-taskiq-testing/src",
    "examples/src",
)
SHADOWED_MODULES = ("dagster_taskiq", "dagster_taskiq_sqs", "dagster_taskiq_examples")
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ERRORS_ONLY = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
"""Run config: the run process's console log at ERROR (events are stored all the same)."""


class BenchProcessError(RuntimeError):
    """A run or worker process failed; the message carries its output's tail."""


@dataclasses.dataclass(frozen=True)
class Build:
    """Which dagster-taskiq a process imports: ``name`` (baseline, current) at ``ref``."""

    name: str
    ref: str
    pythonpath: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.ref})"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """This process's environment with the build's ``PYTHONPATH`` (and ``extra``)."""
        return {**os.environ, **(extra or {}), "PYTHONPATH": self.pythonpath}


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], check=False, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchProcessError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def current_build() -> Build:
    return Build("current", _git("rev-parse", "--short", "HEAD"), str(ROOT))


@contextlib.contextmanager
def baseline_build(ref: str) -> Iterator[Build]:
    """``ref`` checked out in a temporary worktree, its packages first on ``PYTHONPATH``."""
    tmp = Path(tempfile.mkdtemp(prefix="dagster-taskiq-baseline-"))
    tree = tmp / "tree"
    print(f"baseline: git worktree add {tree} {ref}", flush=True)
    try:
        _git("worktree", "add", "--detach", str(tree), ref)
        pythonpath = os.pathsep.join([*(str(tree / p) for p in PACKAGE_SOURCES), str(ROOT)])
        build = Build("baseline", _git("-C", str(tree), "rev-parse", "--short", "HEAD"), pythonpath)
        _check_imports_from(build, tree)
        yield build
    finally:
        if tree.exists():
            with contextlib.suppress(BenchProcessError):
                _git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(BenchProcessError):
            _git("worktree", "prune")
        print(f"baseline: worktree {tree} removed", flush=True)


def _check_imports_from(build: Build, tree: Path) -> None:
    code = (
        "import importlib\n"
        f"for name in {SHADOWED_MODULES!r}:\n"
        "    print(importlib.import_module(name).__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=build.env(),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    paths = done.stdout.split()
    strays = [p for p in paths if not Path(p).resolve().is_relative_to(tree.resolve())]
    if len(paths) != len(SHADOWED_MODULES) or strays:
        raise BenchProcessError(
            f"the baseline's PYTHONPATH does not shadow the editable installs: {paths}"
        )
    print(f"baseline {build.ref}: dagster_taskiq from {paths[0]}", flush=True)


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new database ``<prefix><hex>`` on the local PostgreSQL, dropped (forced) at the end."""
    import psycopg  # noqa: PLC0415

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def interrupt_once() -> Iterator[None]:
    """The first SIGINT (Ctrl-C) raises ``KeyboardInterrupt``; later ones are ignored, so that
    the clean-up it starts (processes, databases, the worktree) runs to its end."""

    def interrupted(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ninterrupted: stopping processes, dropping databases", flush=True)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def warn_if_few_connections(expected: int) -> None:
    """Print a warning if the local PostgreSQL's ``max_connections`` leaves less room than the
    ``expected`` connections (a run that cannot connect fails the benchmark)."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    assert row is not None
    limit, reserved, in_use = (int(x) for x in row)
    room = limit - reserved - in_use
    if expected > room:
        print(
            f"WARNING: PostgreSQL max_connections is {limit} ({in_use} in use, {reserved} "
            f"reserved): room for {room}, and this benchmark may hold about {expected} at once "
            "at its largest N; a run that cannot connect fails it (ALTER SYSTEM SET "
            "max_connections = 300, then restart PostgreSQL)",
            flush=True,
        )


def parse_runs(text: str) -> list[int]:
    """``--runs 1,8,32``: the concurrencies, each >= 1."""
    try:
        runs = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,8,32") from None
    if not runs or min(runs) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: concurrencies must be >= 1")
    return runs


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of live process ``pid`` (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold " "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class TableConditions:
    """``ConditionsWatch`` (``benchmarks._common``), whose conditions count the local
    PostgreSQL server's CPU as this benchmark's: ``stop()`` gives them and the cores PostgreSQL
    used on average meanwhile."""

    def __init__(self) -> None:
        self._watch = ConditionsWatch.settle()

    def stop(self) -> tuple[Conditions, float]:
        conditions = self._watch.stop()
        return conditions, conditions.database_cores


def _stop(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every live process, then SIGKILL those still alive after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
    return f"--- {path}\n" + "\n".join(text)


# --- run processes ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """One run process's result line, and when this process saw it exit."""

    run_id: str
    success: bool
    cpu_seconds: float
    started_at: float
    finished_at: float
    exited_at: float
    """``time.monotonic()`` in the benchmark's process when the run process was seen exited."""


class _Processes:
    """``count`` processes of ``build`` running ``command``, each logging to
    ``log_dir/<kind>-<n>.log``; stopped (SIGTERM, then SIGKILL after ``grace`` s) on exit."""

    kind = "process"
    grace = 10.0

    build: Build
    command: list[str]
    count: int
    log_dir: Path

    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]
    _files: list[IO[bytes]]

    def _start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for n in range(1, self.count + 1):
                path = self.log_dir / f"{self.kind}-{n}.log"
                log = open(path, "wb")  # noqa: SIM115 - closed in __exit__
                self._files.append(log)
                self.logs.append(path)
                self.processes.append(
                    subprocess.Popen(
                        self.command,
                        env=self.build.env(),
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        except BaseException:
            self.__exit__()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def check_alive(self) -> None:
        """Raise, with its output's tail, if one of the processes has exited."""
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                raise BenchProcessError(
                    f"{self.kind} process {process.pid} exited early with status "
                    f"{process.returncode}:\n{_tail(log)}"
                )

    def __exit__(self, *exc: object) -> None:
        _stop(self.processes, grace=self.grace)
        for log in self._files:
            log.close()


class RunProcesses(_Processes):
    """``count`` ``python -m benchmarks._run_job`` processes of ``build``, started at once."""

    kind = "run"

    def __init__(
        self,
        build: Build,
        target: str,
        run_config: Mapping[str, Any],
        *,
        count: int,
        log_dir: Path,
        attribute: str = "defs",
    ) -> None:
        self.build = build
        self.command = [
            sys.executable,
            "-m",
            "benchmarks._run_job",
            target,
            "--attribute",
            attribute,
            "--config",
            json.dumps(run_config),
        ]
        self.count = count
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._files: list[IO[bytes]] = []
        self.started_at = 0.0
        """``time.monotonic()`` when the first process was started."""

    def __enter__(self) -> RunProcesses:
        self.started_at = time.monotonic()
        self._start()
        return self

    def wait(self, timeout: float) -> list[RunOutcome]:
        """Wait for every run process; each one's outcome. Raises if one failed or hung."""
        deadline = time.monotonic() + timeout
        exited: dict[int, float] = {}
        while len(exited) < len(self.processes):
            for n, process in enumerate(self.processes):
                if n not in exited and process.poll() is not None:
                    exited[n] = time.monotonic()
            if time.monotonic() > deadline:
                stuck = [p.pid for n, p in enumerate(self.processes) if n not in exited]
                raise BenchProcessError(
                    f"{len(stuck)} run process(es) still running after {timeout:.0f} s: {stuck}"
                )
            time.sleep(0.02)
        outcomes = []
        for n, (process, log) in enumerate(zip(self.processes, self.logs, strict=True)):
            self._files[n].flush()
            result = _result_line(log)
            if process.returncode != 0 or result is None or not result["success"]:
                raise BenchProcessError(
                    f"run process {process.pid} ended with status {process.returncode} "
                    f"(result: {result}):\n{_tail(log)}"
                )
            outcomes.append(
                RunOutcome(
                    run_id=str(result["run_id"]),
                    success=bool(result["success"]),
                    cpu_seconds=float(result["cpu_seconds"]),
                    started_at=float(result["started_at"]),
                    finished_at=float(result["finished_at"]),
                    exited_at=exited[n],
                )
            )
        return outcomes


def _result_line(log: Path) -> dict[str, Any] | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return result
    return None


# --- worker processes ------------------------------------------------------------------------


class Workers(_Processes):
    """``count`` ``dagster-taskiq worker`` processes of ``build`` serving ``module``."""

    kind = "worker"
    grace = 20.0

    def __init__(
        self,
        build: Build,
        *,
        broker_settings: Mapping[str, Any],
        store_url: str,
        module: str,
        count: int,
        concurrency: int,
        visibility_timeout: float,
        log_dir: Path,
        backend: str = "sqs",
    ) -> None:
        self.build = build
        self.command = worker_command(
            backend=backend,
            broker_settings=broker_settings,
            store_url=store_url,
            code=("-m", module),
            concurrency=concurrency,
            visibility_timeout=visibility_timeout,
            grace_period=10,
        )
        self.count = count
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._files: list[IO[bytes]] = []

    def __enter__(self) -> Workers:
        self._start()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every worker has logged ``worker_started``."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            ready = sum('"worker_started"' in p.read_text(errors="replace") for p in self.logs)
            if ready >= self.count:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(_tail(p) for p in self.logs)
                raise BenchProcessError(
                    f"{self.count - ready} of {self.count} workers not started after "
                    f"{timeout:.0f} s:\n{tails}"
                )
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU seconds of the workers so far (all must be alive)."""
        self.check_alive()
        return sum(cpu_seconds(p.pid) for p in self.processes)
