"""The ``dagster-taskiq`` command: ``worker``, ``status``, and commands other packages add.

Other packages add subcommands through the ``dagster_taskiq.commands`` entry-point group (a
``click.Command`` per entry): ``demo`` comes from dagster-taskiq-examples. They are loaded only
when named or listed, so a broken plugin cannot stop ``worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

import click
import structlog
from rich.console import Console

from dagster_taskiq.backends import create_listener
from dagster_taskiq.brokers import WeightedQueue
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.errors import DagsterTaskIQError, SigningKeyError
from dagster_taskiq.idempotency import DEFAULT_TABLE_PREFIX, SqlIdempotencyStore
from dagster_taskiq.logs import LogFormat, configure_logging
from dagster_taskiq.reports import records_table, runs_table
from dagster_taskiq.signing import (
    KEY_ENV,
    KEY_FILE_ENV,
    MessageVerifier,
    SigningKey,
    keys_from_file,
    keys_from_text,
)
from dagster_taskiq.worker import StepRunner, SubprocessStepRunner, Worker, WorkerOptions
from dagster_taskiq.worker._health import MetricsServer
from dagster_taskiq.worker._recycling import resident_mib

COMMANDS_GROUP = "dagster_taskiq.commands"
"""Entry-point group of subcommands contributed by other packages."""

_KNOWN_PLUGINS = {
    "demo": "dagster-taskiq-examples (run it from a clone of the repository: "
    "`uv run dagster-taskiq demo`)",
}


class _PluginGroup(click.Group):
    """A click group that also offers the commands of the ``dagster_taskiq.commands`` group."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(ep.name for ep in entry_points(group=COMMANDS_GROUP))
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in entry_points(group=COMMANDS_GROUP, name=cmd_name):
            loaded = ep.load()
            if not isinstance(loaded, click.Command):
                raise click.ClickException(
                    f"entry point {ep.value!r} ({COMMANDS_GROUP}) is not a click command"
                )
            return loaded
        if cmd_name in _KNOWN_PLUGINS:
            raise click.UsageError(
                f"'dagster-taskiq {cmd_name}' comes with {_KNOWN_PLUGINS[cmd_name]}", ctx
            )
        return None


@click.group(cls=_PluginGroup)
@click.version_option(
    package_name="dagster-taskiq-core", prog_name="dagster-taskiq", message="%(prog)s %(version)s"
)
def main() -> None:
    """dagster-taskiq: run every step of a Dagster job on long-lived TaskIQ workers."""


def _parse_settings(pairs: tuple[str, ...]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--broker-setting")
        settings[key.strip()] = value
    return settings


@main.command()
@click.option("--backend", default="sqs", show_default=True, help="Broker backend name.")
@click.option(
    "--broker-setting",
    "broker_settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of the backend (repeatable), e.g. queue_name=steps.fifo.",
)
@click.option(
    "--store-url",
    envvar="DAGSTER_TASKIQ_STORE_URL",
    help="Idempotency store URL (same as the executor's). Default: SQLite in $DAGSTER_HOME.",
)
@click.option("--table-prefix", default=DEFAULT_TABLE_PREFIX, show_default=True)
@click.option("-m", "--module", "modules", multiple=True, help="Code location: a module.")
@click.option(
    "-f", "--python-file", "python_files", multiple=True, help="Code location: a Python file."
)
@click.option(
    "-d",
    "--working-directory",
    default=None,
    help="Directory added to sys.path to import the code locations (default: current).",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME[:WEIGHT]",
    help="A queue to read (repeatable; default: the one the backend's settings name). With "
    "several, each gets its WEIGHT's share of the messages while they all have some "
    "(default weight 1), and none is starved: --queue urgent.fifo:4 --queue steps.fifo.",
)
@click.option("--concurrency", type=int, default=os.cpu_count() or 1, show_default=True)
@click.option(
    "--visibility-timeout",
    "visibility_timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Step lease and message visibility, seconds (the executor's visibility_timeout).",
)
@click.option(
    "--heartbeat-interval",
    type=float,
    default=None,
    help="Default: a third of the visibility timeout.",
)
@click.option(
    "--grace-period",
    type=float,
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds the steps in flight get to finish before they are released.",
)
@click.option(
    "--interrupt-grace",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds a step interrupted because its run is cancelled or its timeout "
    "(op tag dagster-taskiq/timeout) passed gets to end before the worker gives it up and "
    "frees its slot.",
)
@click.option(
    "--isolation",
    type=click.Choice(["thread", "subprocess"]),
    default="thread",
    show_default=True,
    help="thread: steps run on threads of this long-lived process (fast; each step's "
    "sys.stdout/sys.stderr go to its compute logs). subprocess: each step in a fresh process "
    "(isolated, all its output captured, killable; slower).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve /metrics (Prometheus), /healthz (liveness: the event loop runs) and /readyz "
    "(readiness: broker and store reachable) on this port, all interfaces. See "
    "docs/operations.md.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Recycle after this many steps: take no more messages, finish the steps running, "
    "exit 0 for the supervisor to start a fresh worker (celery's max-tasks-per-child).",
)
@click.option(
    "--max-memory",
    type=click.FloatRange(min=1),
    default=None,
    metavar="MIB",
    help="Recycle once this process's resident memory passes MIB mebibytes (checked after "
    "each step and every 5 s), as --max-steps does.",
)
@click.option(
    "--signing-key",
    "signing_keys",
    multiple=True,
    metavar="KEY_ID:SECRET",
    help="A key whose signature this worker accepts (repeatable, for a rotation: old and new). "
    f"Prefer --signing-key-file or {KEY_ENV} (keys separated by commas): a command line is "
    "visible to other users of the machine.",
)
@click.option(
    "--signing-key-file",
    "signing_key_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    envvar=KEY_FILE_ENV,
    help="A file of accepted keys, KEY_ID:SECRET one a line (repeatable).",
)
@click.option(
    "--require-signed",
    is_flag=True,
    envvar="DAGSTER_TASKIQ_REQUIRE_SIGNED",
    help="Refuse to start without a signing key (with a key, unsigned messages are always "
    "refused): a deployment that lost its key fails at start instead of running unsigned "
    "messages.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
)
@click.option("--log-level", default="INFO", show_default=True)
def worker(
    backend: str,
    broker_settings: tuple[str, ...],
    store_url: str | None,
    table_prefix: str,
    modules: tuple[str, ...],
    python_files: tuple[str, ...],
    working_directory: str | None,
    queues: tuple[str, ...],
    concurrency: int,
    visibility_timeout: float,
    heartbeat_interval: float | None,
    grace_period: float,
    interrupt_grace: float,
    isolation: str,
    metrics_port: int | None,
    max_steps: int | None,
    max_memory: float | None,
    signing_keys: tuple[str, ...],
    signing_key_files: tuple[str, ...],
    require_signed: bool,
    log_format: LogFormat,
    log_level: str,
) -> None:
    """Run steps received from the broker until SIGTERM / SIGINT."""
    configure_logging(log_format, log_level)
    verifier = _verifier(signing_keys, signing_key_files, require_signed)
    if max_memory is not None and (size := resident_mib()) >= max_memory:
        raise click.BadParameter(
            f"{max_memory:g} MiB is below this worker's size at start ({size:.0f} MiB, before "
            f"any step): give a mark above it with room for the steps, e.g. "
            f"{max(2 * size, size + 512):.0f}",
            param_hint="--max-memory",
        )
    if not modules and not python_files:
        raise click.UsageError(
            "name the code this worker serves with -m/--module or -f/--python-file "
            "(payloads naming any other code are refused)"
        )
    try:
        weighted = WeightedQueue.parse_all(queues)
    except DagsterTaskIQError as exc:
        raise click.BadParameter(str(exc), param_hint="--queue") from None
    directory = os.path.abspath(working_directory or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    locations = CodeLocations(
        [CodeLocation(module=m) for m in modules]
        + [CodeLocation(python_file=os.path.join(directory, f)) for f in python_files]
    )
    store = SqlIdempotencyStore(store_url or _default_store_url(), table_prefix=table_prefix)
    broker = create_listener(backend, _parse_settings(broker_settings), weighted)
    options = WorkerOptions(
        concurrency=concurrency,
        visibility_timeout=visibility_timeout,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        interrupt_grace=interrupt_grace,
        max_steps=max_steps,
        max_memory=max_memory,
    )
    try:
        runner = (
            SubprocessStepRunner(locations) if isolation == "subprocess" else StepRunner(locations)
        )
        steps_worker = Worker(broker, store, runner, options, verifier=verifier)
        with contextlib.ExitStack() as stack:
            if metrics_port is not None:
                stack.callback(_metrics_server(metrics_port, steps_worker).close)
            asyncio.run(run_worker(steps_worker))
    finally:
        store.close()


def _metrics_server(port: int, worker: Worker) -> MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` of ``worker`` on ``port``, serving; a usage
    error (before any message is taken) if the port cannot be bound."""
    try:
        server = MetricsServer(port, worker.metrics, worker.health).start()
    except DagsterTaskIQError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics-port") from None
    structlog.get_logger("dagster_taskiq.worker").info("metrics_serving", port=server.port)
    return server


def worker_command(
    *,
    backend: str,
    broker_settings: Mapping[str, Any],
    store_url: str,
    code: Sequence[str],
    concurrency: int,
    visibility_timeout: float,
    grace_period: float,
    extra: Sequence[str] = (),
) -> list[str]:
    """The argv of a ``dagster-taskiq worker`` process (this Python, ``-m dagster_taskiq.cli``,
    JSON logs) with these settings: ``code`` is ``("-m", MODULE)`` or ``("-f", FILE)`` (or
    several), ``extra`` more options. What the demo and the test and benchmark harnesses start."""
    command = [sys.executable, "-m", "dagster_taskiq.cli", "worker", "--backend", backend]
    for key, value in broker_settings.items():
        text = value if isinstance(value, str) else json.dumps(value)
        command += ["--broker-setting", f"{key}={text}"]
    return [
        *command,
        "--store-url",
        store_url,
        *code,
        "--concurrency",
        str(concurrency),
        "--visibility-timeout",
        f"{visibility_timeout:g}",
        "--grace-period",
        f"{grace_period:g}",
        "--log-format",
        "json",
        *extra,
    ]


def _verifier(
    texts: tuple[str, ...], files: tuple[str, ...], required: bool
) -> MessageVerifier | None:
    """The worker's signature check from its options and ``DAGSTER_TASKIQ_SIGNING_KEY``."""
    try:
        keys = [SigningKey.parse(text, source="--signing-key") for text in texts]
        keys += [key for path in files for key in keys_from_file(path)]
        keys += keys_from_text(os.environ.get(KEY_ENV, ""), source=KEY_ENV)
        if not keys:
            if required:
                raise click.UsageError(
                    "--require-signed: no signing key given; give the executor's signing_key "
                    f"with --signing-key-file or {KEY_ENV}"
                )
            return None
        return MessageVerifier(keys)
    except SigningKeyError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.argument("run_id", required=False)
@click.option(
    "--store-url",
    envvar="DAGSTER_TASKIQ_STORE_URL",
    help="Idempotency store URL (as the executor's). Default: SQLite in $DAGSTER_HOME.",
)
@click.option("--table-prefix", default=DEFAULT_TABLE_PREFIX, show_default=True)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Without RUN_ID: how many runs to list.",
)
def status(run_id: str | None, store_url: str | None, table_prefix: str, limit: int) -> None:
    """Show the idempotency records of RUN_ID: state, attempts, owner and lease of each step.
    Without RUN_ID: the runs changed last, with their steps by state."""
    store = SqlIdempotencyStore(store_url or _default_store_url(), table_prefix=table_prefix)
    try:
        if run_id is None:
            runs = store.recent_runs(limit)
            if not runs:
                raise click.ClickException(f"no runs in {store.masked_url}")
            Console().print(runs_table(runs, now=time.time()))
            return
        records = store.records_for_run(run_id)
    finally:
        store.close()
    if not records:
        raise click.ClickException(f"no idempotency records for run {run_id} in {store.masked_url}")
    Console().print(records_table(run_id, records, now=time.time()))


async def run_worker(worker: Worker) -> None:
    """Run ``worker`` until SIGTERM or SIGINT (a second signal exits at once)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            os._exit(1)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await worker.run(stop)


def _default_store_url() -> str:
    from dagster import DagsterInstance  # noqa: PLC0415 - needs DAGSTER_HOME only in this case

    from dagster_taskiq.instances import default_store_url  # noqa: PLC0415

    return default_store_url(DagsterInstance.get())


if __name__ == "__main__":
    main()
