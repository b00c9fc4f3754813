"""``dagster-taskiq demo``: the example job end to end on real workers, with no services needed.

By default it starts everything itself: a Dagster home on SQLite in a temporary directory, the
SQLite idempotency store there, moto's SQS server in this process, and two
``dagster-taskiq worker`` processes. It shows each step as it is queued, run and finished, and
ends with a summary (steps, wall time, per-step overhead p50/p95, exactly-once check). The exit
code is 0 only if the run succeeded and the check held. Options point it at LocalStack or AWS
SQS and at PostgreSQL instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import click
from dagster import (
    BetaWarning,
    DagsterInstance,
    DagsterRunStatus,
    PreviewWarning,
    RunsFilter,
    execute_job,
)
from rich.console import Console

from dagster_taskiq import IdempotencyRecord, SqlIdempotencyStore
from dagster_taskiq.code_locations import job_in_module
from dagster_taskiq.logs import configure_logging
from dagster_taskiq_examples._cluster import (
    CODE_LOCATION,
    DemoQueue,
    WorkerPool,
    WorkerStartError,
    sqs_endpoint,
)
from dagster_taskiq_examples._progress import StepProgress
from dagster_taskiq_examples._summary import RunSummary, summarize

JOBS = ("orders_pipeline", "daily_orders_job", "chain_20", "fan_out_50")
DEMO_TAG = "dagster-taskiq/demo"
DEFAULT_PARTITION = "2026-11-01"


@click.command()
@click.option("--job", "job_name", type=click.Choice(JOBS), default=JOBS[0], show_default=True)
@click.option(
    "--partition",
    default=DEFAULT_PARTITION,
    show_default=True,
    help="The day daily_orders_job materializes (YYYY-MM-DD).",
)
@click.option("--fail-step", default="", metavar="OP", help="Make this op of orders_pipeline fail.")
@click.option(
    "--step-seconds",
    type=click.FloatRange(0, 60),
    default=0.2,
    show_default=True,
    help="How long each op of orders_pipeline works.",
)
@click.option("--workers", type=click.IntRange(1, 32), default=2, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Steps each worker runs at once.",
)
@click.option(
    "--endpoint-url",
    default=None,
    metavar="URL",
    help="An SQS endpoint to use instead of starting moto's (LocalStack: http://localhost:4566).",
)
@click.option(
    "--aws",
    is_flag=True,
    help="Use Amazon SQS itself (AWS credential chain and --region) instead of starting moto's.",
)
@click.option("--region", default="us-east-1", show_default=True, help="SQS region.")
@click.option(
    "--queue-name", default=None, help="FIFO queue to create/use (default: a fresh demo queue)."
)
@click.option(
    "--store-url",
    default=None,
    metavar="URL",
    help="Idempotency store, e.g. postgresql://postgres@127.0.0.1:5432/test "
    "(default: SQLite in the Dagster home).",
)
@click.option(
    "--dagster-home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dagster home (its dagster.yaml is used if present; default: a temporary one).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds before the run is interrupted.",
)
@click.option(
    "--verbose", is_flag=True, help="Also show Dagster's event log and the executor's debug log."
)
def demo(
    job_name: str,
    partition: str,
    fail_step: str,
    step_seconds: float,
    workers: int,
    concurrency: int,
    endpoint_url: str | None,
    aws: bool,
    region: str,
    queue_name: str | None,
    store_url: str | None,
    dagster_home: Path | None,
    timeout: float,
    verbose: bool,
) -> None:
    """Run an example job on dagster-taskiq workers and check every step completed once."""
    console = Console()
    configure_logging("console", "DEBUG" if verbose else "WARNING")
    if not verbose:
        _quiet_dagster_notices()
    if aws and endpoint_url:
        raise click.UsageError("--aws and --endpoint-url exclude each other: pick one")
    job = job_in_module(CODE_LOCATION, job_name)
    ops = [node.name for node in job.get_definition().nodes_in_topological_order]
    if fail_step and fail_step not in ops:
        raise click.BadParameter(
            f"{fail_step!r} is not an op of {job_name}; its ops: {', '.join(ops)}",
            param_hint="--fail-step",
        )
    with contextlib.ExitStack() as stack:
        home = dagster_home or _temporary_home(stack)
        home.mkdir(parents=True, exist_ok=True)
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        store_url = store_url or f"sqlite:///{home / 'dagster_taskiq.db'}"
        if aws:
            console.print(f"SQS: Amazon SQS in {region}")
            endpoint = None
        else:
            if not endpoint_url:
                console.print("SQS: starting moto's SQS server in this process")
            endpoint = stack.enter_context(sqs_endpoint(endpoint_url))
            console.print(f"SQS: {endpoint}")
        queue = DemoQueue(endpoint_url=endpoint, region=region)
        if queue_name:
            queue = DemoQueue(endpoint_url=endpoint, region=region, queue_name=queue_name)
        store = SqlIdempotencyStore(store_url)
        stack.callback(store.close)
        console.print(f"Dagster home: {home}\nidempotency store: {store.masked_url}")
        console.print(f"starting {workers} worker processes serving {CODE_LOCATION}")
        pool = stack.enter_context(
            WorkerPool(
                queue, store_url, count=workers, concurrency=concurrency, log_dir=home / "logs"
            )
        )
        try:
            pool.wait_ready()
        except WorkerStartError as exc:
            raise click.ClickException(str(exc)) from exc
        summary = _run(
            console,
            instance,
            store,
            pool,
            job_name=job_name,
            run_config=_run_config(
                queue,
                store_url=store_url,
                job_name=job_name,
                fail_step=fail_step,
                step_seconds=step_seconds,
                verbose=verbose,
            ),
            tags=_tags(job_name, partition),
            planned=len(ops),
            timeout=timeout,
        )
    console.print(summary.table())
    if not summary.success:
        failed = ", ".join(summary.failed) or "no step failed; see the log above"
        raise click.ClickException(f"run {summary.run_id} failed: failed steps: {failed}")
    if summary.violations:
        raise click.ClickException(f"exactly-once check failed: {'; '.join(summary.violations)}")


def _run_config(
    queue: DemoQueue,
    *,
    store_url: str,
    job_name: str,
    fail_step: str,
    step_seconds: float,
    verbose: bool,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "ERROR"}}},
        "execution": {
            "config": {
                "broker": {"backend": "sqs", "settings": queue.broker_settings()},
                "store_url": store_url,
                "visibility_timeout": float(queue.visibility_timeout),
                "signing_key": queue.signing_key,
            }
        },
    }
    if job_name == "orders_pipeline":
        knobs = {"step_seconds": step_seconds, "fail_step": fail_step}
        config["resources"] = {"knobs": {"config": knobs}}
    return config


def _quiet_dagster_notices() -> None:
    """Dagster's notices on the beta APIs the example uses are not the demo's output."""
    for notice in (BetaWarning, PreviewWarning):
        warnings.filterwarnings("ignore", category=notice)


def _temporary_home(stack: contextlib.ExitStack) -> Path:
    """A Dagster home removed at the end, with telemetry off (no notice from Dagster in the
    middle of the demo's output)."""
    home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagster-taskiq-demo-")))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def _tags(job_name: str, partition: str) -> dict[str, str]:
    tags = {DEMO_TAG: uuid.uuid4().hex}
    if job_name == "daily_orders_job":
        tags["dagster/partition"] = partition
    return tags


def _run(
    console: Console,
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    pool: WorkerPool,
    *,
    job_name: str,
    run_config: dict[str, Any],
    tags: dict[str, str],
    planned: int,
    timeout: float,
) -> RunSummary:
    run_ids: list[str] = []

    def records() -> list[IdempotencyRecord]:
        if not run_ids:
            run_ids.extend(instance.get_run_ids(RunsFilter(tags={DEMO_TAG: tags[DEMO_TAG]})))
        return list(store.records_for_run(run_ids[0])) if run_ids else []

    done = threading.Event()
    progress = StepProgress(console, planned)
    follower = threading.Thread(target=progress.follow, args=(records, done), daemon=True)
    watchdog = threading.Thread(
        target=_watch, args=(console, pool, done, timeout), daemon=True, name="demo-watchdog"
    )
    console.print(f"running {job_name}: {planned} steps")
    started = time.monotonic()
    follower.start()
    watchdog.start()
    try:
        result = execute_job(
            job_in_module(CODE_LOCATION, job_name), instance, run_config=run_config, tags=tags
        )
    except KeyboardInterrupt:
        result = None
    finally:
        wall = time.monotonic() - started
        done.set()
        follower.join()
    run_id = result.run_id if result is not None else (run_ids[0] if run_ids else "?")
    run = instance.get_run_by_id(run_id) if run_id != "?" else None
    success = run is not None and run.status is DagsterRunStatus.SUCCESS
    return summarize(
        instance,
        run_id,
        records(),
        planned_steps=planned,
        wall_seconds=wall,
        success=success,
    )


def _watch(console: Console, pool: WorkerPool, done: threading.Event, timeout: float) -> None:
    """Interrupt the run if every worker died (nothing would run its steps) or on timeout."""
    deadline = time.monotonic() + timeout
    while not done.wait(0.5):
        reason = None
        if len(pool.dead()) == pool.count:
            reason = "every worker process exited"
        elif time.monotonic() > deadline:
            reason = f"the run took longer than --timeout {timeout:.0f} s"
        if reason:
            console.print(f"[red]{reason}: interrupting the run[/]\n{pool.log_tail()}")
            os.kill(os.getpid(), signal.SIGINT)
            return
