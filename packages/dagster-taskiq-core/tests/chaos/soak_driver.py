"""``nox -s soak``: load and soak runs on 4 worker processes, checked by the ledger.

    python packages/dagster-taskiq-core/tests/chaos/soak_driver.py
        [--only fan_out,concurrent,backlog] [--backlog-runs 100] [--sqs-server moto|localstack]

* ``fan_out``: one run of 1,000 trivial steps (``wide_1000``: a root and 999 leaves);
* ``concurrent``: 50 runs of a 20-step job started at once (run loops on 50 threads here);
* ``backlog``: 10,000 step messages (100 runs x 100 independent steps) enqueued before any
  worker starts, then 4 workers: every step runs exactly once.

``--sqs-server localstack`` runs the backlog on LocalStack 4.0.3 (its own virtualenv, built and
cached on first use) instead of moto: moto's FIFO queues stop answering past about 5,000 queued
messages on this machine (docs/reliability.md).

Every run is checked by ``chaos.ledger.check_run``; the workers' RSS (from /proc) is printed
after start-up, after the fan-out and after the concurrent runs. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests folder

import sqlalchemy as sa
import structlog
from dagster import reconstructable

from chaos import jobs as chaos_jobs
from chaos.cluster import Cluster, RunResult, cluster, rss_kib
from chaos.ledger import check_run, outcome_events
from dagster_taskiq import OpExecutionTask, TaskState, idempotency_key
from dagster_taskiq.backends import create_broker
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.executor._broker_thread import BrokerThread
from dagster_taskiq.instances import instance_ref_payload
from dagster_taskiq_testing.servers import LocalStackServer

TRIVIAL = (0.0, 0.0)
STEPS = 100
"""Steps per backlog run (``hundred_independent``)."""
failures: list[str] = []


def say(text: str) -> None:
    print(f"[soak] {text}", flush=True)


def rss(c: Cluster) -> str:
    assert c.workers is not None
    sizes = [rss_kib(pid) for pid in c.workers.pids]
    return ", ".join(f"{s / 1024:.0f} MiB" for s in sizes if s is not None)


def wait_workers_ready(c: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while c.logs().count('"worker_started"') < c.worker_count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.2)


def judge(name: str, result: RunResult) -> None:
    if not result.success or not result.check.ok:
        failures.append(f"{name}: {result.check.describe()} success={result.success}")


def fan_out_and_concurrent(only: set[str]) -> None:
    with cluster(workers=4, concurrency=2, visibility_timeout=10) as c:
        wait_workers_ready(c)
        say(f"workers up; RSS {rss(c)}")
        if "fan_out" in only:
            result = c.execute("wide_1000", step_seconds=TRIVIAL)
            judge("fan_out", result)
            say(
                f"fan_out: 1 run of {result.check.steps} steps, success={result.success}, "
                f"ledger ok={result.check.ok}, {result.check.executions} executions, "
                f"{result.seconds:.0f} s ({result.check.steps / result.seconds:.1f} steps/s); "
                f"RSS {rss(c)}"
            )
        if "concurrent" in only:
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                results = list(
                    pool.map(lambda _: c.execute("twenty_steps", step_seconds=TRIVIAL), range(50))
                )
            wall = time.monotonic() - started
            for r in results:
                judge("concurrent", r)
            steps = sum(r.check.steps for r in results)
            ok = sum(1 for r in results if r.success and r.check.ok)
            say(
                f"concurrent: 50 runs x 20 steps, {ok}/50 succeeded with a clean ledger, "
                f"{steps} steps, {sum(r.check.executions for r in results)} executions, "
                f"{wall:.0f} s ({steps / wall:.1f} steps/s); RSS {rss(c)}"
            )


class _ExternalSqs:
    """Stands in for the cluster's moto server when the queue lives on another SQS server."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def start(self) -> None:
        """The server is started (and stopped) by its owner."""

    def stop(self) -> None:
        """The server is started (and stopped) by its owner."""


@contextlib.contextmanager
def backlog_cluster(sqs_server: str) -> Iterator[Cluster]:
    """4 workers (not started yet), on moto (the cluster's own) or on LocalStack, unproxied."""
    kwargs: dict[str, Any] = {
        "workers": 4,
        "concurrency": 2,
        "visibility_timeout": 10,
        "start_workers": False,
    }
    if sqs_server == "moto":
        with cluster(**kwargs) as c:
            yield c
        return
    with (
        LocalStackServer() as server,
        tempfile.TemporaryDirectory(prefix="dagster-taskiq-soak-") as tmp,
    ):
        say(f"LocalStack at {server.endpoint_url}")
        made = Cluster(Path(tmp), **kwargs)
        made.moto = _ExternalSqs(server.endpoint_url)  # type: ignore[assignment]
        made.target = dataclasses.replace(made.target, endpoint_url=server.endpoint_url)
        with made as c:
            yield c


def backlog(runs: int, sqs_server: str) -> None:
    with backlog_cluster(sqs_server) as c:
        job = chaos_jobs.hundred_independent
        pointer = pointer_for_job(reconstructable(job))
        ref = instance_ref_payload(c.instance)
        broker = BrokerThread(create_broker("sqs", c.target.broker_settings()))
        started = time.monotonic()
        run_ids = []
        try:
            for _ in range(runs):
                run = c.create_run("hundred_independent", step_seconds=TRIVIAL)
                run_ids.append(run.run_id)
                tasks = [
                    OpExecutionTask(
                        run_id=run.run_id,
                        step_key=f"part_{n}",
                        idempotency_key=idempotency_key(run.run_id, f"part_{n}"),
                        code=pointer,
                        instance_ref=ref,
                        created_at=time.time(),
                    )
                    for n in range(STEPS)
                ]
                for task in tasks:
                    c.store.ensure_pending(task)
                broker.send(tasks)
                if len(run_ids) % 10 == 0:
                    elapsed = time.monotonic() - started
                    say(
                        f"backlog: {len(run_ids) * STEPS} of {runs * STEPS} enqueued "
                        f"({len(run_ids) * STEPS / elapsed:.1f}/s)"
                    )
        finally:
            broker.close()
        messages = STEPS * runs
        say(
            f"backlog: {messages} messages enqueued in {time.monotonic() - started:.0f} s, "
            f"queue depth {c.queue_depth()}; starting 4 workers"
        )
        started = time.monotonic()
        c.start_worker_processes()
        table = c.store.records_table
        count = sa.select(sa.func.count()).select_from(table).where(table.c.state == "COMPLETED")
        deadline = time.monotonic() + 3600
        done = 0
        last_report = started
        while done < messages and time.monotonic() < deadline:
            time.sleep(2)
            with c.store.engine.connect() as conn:
                done = int(conn.execute(count).scalar_one())
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                say(f"backlog: {done} of {messages} COMPLETED after {last_report - started:.0f} s")
        wall = time.monotonic() - started
        counts = c.ledger.per_run_step_counts()
        executed_twice = {k: n for k, n in counts.items() if n != 1}
        unrun = messages - len(counts)
        bad_events = 0
        for run_id in run_ids:
            events = outcome_events(c.instance, run_id)
            bad_events += sum(1 for n in range(STEPS) if events[f"part_{n}"]["success"] != 1)
        records_ok = sum(
            1
            for run_id in run_ids
            for r in c.store.records_for_run(run_id)
            if r.state is TaskState.COMPLETED
        )
        depth_deadline = time.monotonic() + 60
        while (depth := c.queue_depth()) and time.monotonic() < depth_deadline:
            time.sleep(0.5)  # the last acks in flight
        say(
            f"backlog: {done}/{messages} COMPLETED in {wall:.0f} s ({done / wall:.1f} steps/s); "
            f"bodies run twice: {len(executed_twice)}, never: {unrun}; outcome-event "
            f"violations: {bad_events}; COMPLETED records {records_ok}; queue depth {depth}; "
            f"RSS {rss(c)}"
        )
        if executed_twice or unrun or bad_events or records_ok != messages or depth:
            failures.append(
                f"backlog: twice {list(executed_twice)[:5]}, unrun {unrun}, "
                f"event violations {bad_events}, completed {records_ok}, depth {depth}"
            )
        # A few full checks, as for every other run.
        for run_id in run_ids[:5]:
            check = check_run(c.instance, c.store, c.ledger, run_id, expected_steps=STEPS)
            if not check.ok:
                failures.append(f"backlog: {check.describe()}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="fan_out,concurrent,backlog")
    parser.add_argument("--backlog-runs", type=int, default=100)
    parser.add_argument("--sqs-server", choices=("moto", "localstack"), default="moto")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("dagster").setLevel(logging.WARNING)
    only = {x.strip() for x in args.only.split(",")}
    say(f"started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    if only & {"fan_out", "concurrent"}:
        fan_out_and_concurrent(only)
    if "backlog" in only:
        backlog(args.backlog_runs, args.sqs_server)
    for failure in failures:
        say(f"FAILED {failure}")
    say("all clean" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
