"""Where a step's milliseconds go, before and after: CPU per step by process, hand-off parts.

    uv run nox -s bench -- profile [--repeat N] [--baseline-ref REF] [--localstack]
                                   [--dagster-storage sqlite|postgres] [--py-spy DIR]

Two builds side by side, the baseline (``--baseline-ref``, default the build before issue 13's
changes, checked out in a temporary worktree, see ``benchmarks._runs``) and this checkout. Each
build gets a *driver*: a process of that build (this file, ``--driver``) with its own Dagster
home (telemetry off; SQLite or PostgreSQL storage with the idempotency store beside it), its own
queue on the shared SQS server (moto's, its own process; LocalStack with ``--localstack``) and
its own two ``dagster-taskiq worker`` processes (concurrency 2). A driver is the run process:
it runs the example project's ``chain_20`` and ``fan_out_50`` on ``taskiq_executor`` and on
``in_process_executor`` (Dagster's floor) when told to. After one warm-up round per driver,
``--repeat`` rounds follow, the drivers taking turns within every round.

Per run, the driver measures:

* CPU per step, by process (``/proc/<pid>/stat``): the run process, the workers, the SQS server
  and, on PostgreSQL, the server's processes; against ``in_process_executor``'s (which is all
  in the run process);
* on the chain, each hand-off in four parts, from the event log and the store: (1) the worker,
  from its STEP_SUCCESS event to recording the outcome (``finished_at``); (2) the executor's
  reaction, to the successor's record (``created_at``, just before the send); (3) the send, the
  queue and the claim (the successor's ``started_at``); (4) the worker, from the claim to the
  successor's STEP_START; against ``in_process_executor``'s gap from one STEP_SUCCESS to the
  next STEP_START;
* event-log rows per run.

With ``--py-spy DIR``, py-spy records the workers and the run process of each build during the
timed rounds (``DIR/<build>-<process>.txt``, raw stacks, for ``py-spy``'s own viewers).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    STORAGES,
    ConditionsWatch,
    add_localstack_argument,
    dagster_home,
    postgres_cpu_seconds,
    postgres_database,
    sqs_server,
    timed_run,
)
from benchmarks._runs import (
    BASELINE_REF,
    Build,
    baseline_build,
    current_build,
)

JOBS = ("chain_20", "fan_out_50")
STEPS = {"chain_20": 20, "fan_out_50": 52}
ERRORS_ONLY = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
PARTS = (
    "1 worker: success event -> outcome recorded",
    "2 executor: outcome -> successor's record",
    "3 send, queue, claim",
    "4 worker: claim -> STEP_START",
)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--driver"]:
        return _driver(argv[1:])
    parser = argparse.ArgumentParser(prog="nox -s bench -- profile", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--dagster-storage", choices=STORAGES, default="sqlite")
    parser.add_argument("--py-spy", type=Path, default=None, help="record py-spy stacks here")
    add_localstack_argument(parser)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    with (
        sqs_server("localstack" if args.localstack else "moto") as server,
        baseline_build(args.baseline_ref) as baseline,
        contextlib.ExitStack() as stack,
    ):
        builds = [baseline, current_build()]
        drivers = [
            stack.enter_context(
                _Driver(b, server.endpoint_url, server_pid(server), args.dagster_storage)
            )
            for b in builds
        ]
        for driver in drivers:
            print(f"{driver.build.label}: warm-up", flush=True)
            driver.round(spy=None)
        watch = ConditionsWatch.settle()
        for n in range(1, args.repeat + 1):
            for driver in drivers:
                result = driver.round(spy=args.py_spy)
                print(f"{driver.build.label}: round {n}/{args.repeat} {_brief(result)}", flush=True)
                results.setdefault(driver.build.label, []).append(result)
        conditions = watch.stop()
    _report(results, args.dagster_storage, args.repeat)
    for line in conditions.lines():
        print(line)
    return 0


def server_pid(server: Any) -> int:
    pid = getattr(server, "pid", None)
    if pid is None:
        raise SystemExit(f"{server!r} has no process id to measure")
    return int(pid)


class _Driver:
    """One build's driver process, told what to run line by line on its stdin."""

    def __init__(self, build: Build, endpoint: str, sqs_pid: int, storage: str) -> None:
        self.build = build
        self.command = [
            sys.executable,
            "-m",
            "benchmarks",
            "profile",
            "--driver",
            "--endpoint",
            endpoint,
            "--sqs-pid",
            str(sqs_pid),
            "--storage",
            storage,
        ]
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Driver:
        self.process = subprocess.Popen(
            self.command,
            env=self.build.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        return self

    def round(self, spy: Path | None) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        spy_dir = f"{spy}/{self.build.name}" if spy else ""
        self.process.stdin.write(json.dumps({"spy": spy_dir}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith("ROUND "):
                result: dict[str, Any] = json.loads(line.removeprefix("ROUND "))
                return result
        raise SystemExit(f"{self.build.label}: the driver ended (exit {self.process.wait()})")

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _brief(result: dict[str, Any]) -> str:
    return "  ".join(
        f"{job} {result['taskiq'][job]['wall']:.2f} s / {result['in_process'][job]['wall']:.2f} s"
        for job in JOBS
    )


# --- the driver (a process of the build being measured) ------------------------------------


def _driver(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench profile --driver")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--sqs-pid", type=int, required=True)
    parser.add_argument("--storage", choices=STORAGES, required=True)
    args = parser.parse_args(argv)
    # Results go to the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from dagster import DagsterInstance  # noqa: PLC0415

    from dagster_taskiq.logs import configure_logging  # noqa: PLC0415
    from dagster_taskiq_examples._cluster import DemoQueue, WorkerPool  # noqa: PLC0415

    configure_logging("console", "WARNING")
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        dagster_home(Path(tmp_name), args.storage),
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        if args.storage == "postgres":
            database = stack.enter_context(postgres_database())
            store_url = f"postgresql://postgres@127.0.0.1:5432/{database}"
        else:
            store_url = f"sqlite:///{tmp / 'store.db'}"
        queue = DemoQueue(endpoint_url=args.endpoint, region="us-east-1")
        taskiq = {
            "execution": {
                "config": {
                    "broker": {"backend": "sqs", "settings": queue.broker_settings()},
                    "store_url": store_url,
                    "visibility_timeout": float(queue.visibility_timeout),
                }
            },
            **ERRORS_ONLY,
        }
        instance = stack.enter_context(DagsterInstance.get())
        pool = stack.enter_context(
            WorkerPool(queue, store_url, count=2, concurrency=2, log_dir=tmp / "logs")
        )
        pool.wait_ready()
        roles = {
            "run": [os.getpid()],
            "workers": [p.pid for p in pool.processes],
            "sqs": [args.sqs_pid],
        }
        for line in sys.stdin:
            request = json.loads(line)
            with _spying(request.get("spy") or "", roles):
                result = {
                    "taskiq": {
                        job: _run(instance, "taskiq", job, taskiq, roles, store_url) for job in JOBS
                    },
                    "in_process": {
                        job: _run(instance, "in_process", job, ERRORS_ONLY, roles, store_url)
                        for job in JOBS
                    },
                }
            out.write("ROUND " + json.dumps(result) + "\n")
    return 0


@contextlib.contextmanager
def _spying(directory: str, roles: dict[str, list[int]]) -> Any:
    spy = shutil.which("py-spy")
    if not directory or spy is None:
        yield
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    spies: list[subprocess.Popen[bytes]] = []
    targets = [("run", roles["run"][0])] + [
        (f"worker-{n}", pid) for n, pid in enumerate(roles["workers"], start=1)
    ]
    for name, pid in targets:
        path = Path(directory) / f"{name}.txt"
        command = [spy, "record", "--pid", str(pid), "--format", "raw", "-o", str(path)]
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    time.sleep(1.0)
    try:
        yield
    finally:
        for process in spies:
            process.send_signal(signal.SIGINT)
        for process in spies:
            process.wait(30)


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _run(  # noqa: PLR0917 - a private helper of the driver loop
    instance: Any,
    executor: str,
    job: str,
    config: dict[str, Any],
    roles: dict[str, list[int]],
    store_url: str,
) -> dict[str, Any]:
    from dagster_taskiq.code_locations import job_in_module  # noqa: PLC0415

    if executor == "taskiq":
        target = job_in_module("dagster_taskiq_examples.definitions", job)
    else:
        target = job_in_module(
            "dagster_taskiq_examples.bench_jobs", f"{job}_in_process", attribute="bench_defs"
        )
    before = {role: _cpu(pids) for role, pids in roles.items()}
    postgres = postgres_cpu_seconds()
    wall, result = timed_run(target, instance, config, f"{executor} {job}")
    cpu = {role: _cpu(pids) - before[role] for role, pids in roles.items()}
    cpu["postgres"] = postgres_cpu_seconds() - postgres
    logs = instance.all_logs(result.run_id)
    outcome: dict[str, Any] = {"wall": wall, "cpu": cpu, "rows": len(logs)}
    if job == "chain_20":
        outcome["parts"] = _hand_offs(logs, executor, store_url, result.run_id)
    return outcome


def _hand_offs(logs: Any, executor: str, store_url: str, run_id: str) -> dict[str, list[float]]:
    from dagster import DagsterEventType  # noqa: PLC0415

    times: dict[str, dict[Any, float]] = {}
    for entry in logs:
        event = entry.dagster_event
        if event is not None and event.event_type in (
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
        ):
            times.setdefault(event.step_key, {})[event.event_type] = entry.timestamp
    steps = sorted(times, key=lambda k: times[k][DagsterEventType.STEP_START])
    start, success = DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS
    if executor != "taskiq":
        gaps = [times[b][start] - times[a][success] for a, b in itertools.pairwise(steps)]
        return {"in_process: success -> next start": gaps}
    from dagster_taskiq import SqlIdempotencyStore  # noqa: PLC0415

    store = SqlIdempotencyStore(store_url)
    try:
        records = {r.step_key: r for r in store.records_for_run(run_id)}
    finally:
        store.close()
    parts: dict[str, list[float]] = {name: [] for name in PARTS}
    for a, b in itertools.pairwise(steps):
        done, succ = records[a].result, records[b].result
        assert done is not None
        assert succ is not None
        parts[PARTS[0]].append(done.finished_at - times[a][success])
        parts[PARTS[1]].append(records[b].created_at - done.finished_at)
        parts[PARTS[2]].append(succ.started_at - records[b].created_at)
        parts[PARTS[3]].append(times[b][start] - succ.started_at)
    return parts


# --- the report ----------------------------------------------------------------------------


def _report(results: dict[str, list[dict[str, Any]]], storage: str, repeat: int) -> None:
    print(
        f"\n{storage} storage (and store): medians of {repeat} round(s); CPU in ms per step, "
        "by process; hand-off parts in ms (p50) on chain_20"
    )
    roles = ("run", "workers", "sqs", "postgres")
    print(
        "| build | executor | job | wall | vs in_process | rows | "
        + " | ".join(f"CPU {r}" for r in roles)
        + " | CPU total |"
    )
    print("|---" * (7 + len(roles)) + "|")
    for label, rounds in results.items():
        for executor in ("taskiq", "in_process"):
            for job in JOBS:
                runs = [r[executor][job] for r in rounds]
                wall = statistics.median(r["wall"] for r in runs)
                base = statistics.median(r["in_process"][job]["wall"] for r in rounds)
                cpu = {
                    role: statistics.median(r["cpu"][role] for r in runs) * 1000 / STEPS[job]
                    for role in roles
                }
                cells = [
                    label,
                    executor,
                    job,
                    f"{wall:.2f} s",
                    f"{wall / base:.2f}x",
                    f"{statistics.median(r['rows'] for r in runs):.0f}",
                    *(f"{cpu[role]:.1f}" for role in roles),
                    f"{sum(cpu.values()):.1f}",
                ]
                print("| " + " | ".join(cells) + " |")
    print("\n| build | hand-off part (chain_20) | p50 | p95 |\n|---|---|---|---|")
    for label, rounds in results.items():
        for executor in ("taskiq", "in_process"):
            merged: dict[str, list[float]] = {}
            for r in rounds:
                for name, values in r[executor]["chain_20"]["parts"].items():
                    merged.setdefault(name, []).extend(values)
            for name, values in merged.items():
                ms = sorted(v * 1000 for v in values)
                p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
                print(f"| {label} | {name} | {statistics.median(ms):.1f} ms | {p95:.1f} ms |")
