"""The worker's metrics and health endpoints (``--metrics-port``): a real worker process is
scraped while a run goes through it; a taken port is refused before the worker starts."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from dagster_taskiq.cli import main
from dagster_taskiq.worker._health import Health, MetricsServer
from dagster_taskiq.worker._metrics import WorkerMetrics
from dagster_taskiq_testing.servers._base import free_port, listening
from support import job_shapes
from support.worker_processes import one_sqs_worker


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(port: int) -> dict[str, float]:
    """Every sample of the scrape, by name and labels: ``name{label="v"}`` -> value."""
    status, text = _get(port, "/metrics")
    assert status == 200
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def _wait_for(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert check()


@pytest.mark.sqs_server
def test_a_worker_is_scraped_while_a_run_goes_through_it(sqs_server: Any, tmp_path: Path) -> None:
    port = free_port()
    claimed: list[float] = []
    with one_sqs_worker(sqs_server.endpoint_url, tmp_path, "--metrics-port", str(port)) as cluster:
        _wait_for(lambda: listening(port))
        _wait_for(lambda: _get(port, "/readyz")[0] == 200)  # broker and store looked at
        assert _get(port, "/healthz")[0] == 200
        before = _samples(port)
        done = threading.Event()

        def scrape() -> None:
            while not done.is_set():
                claimed.append(_samples(port)["dagster_taskiq_steps_claimed_total"])
                time.sleep(0.05)

        scraper = threading.Thread(target=scrape)
        scraper.start()
        try:
            report = cluster.run(job_shapes.chain)
        finally:
            done.set()
            scraper.join()
        after = _samples(port)
        assert _get(port, "/nowhere")[0] == 404
    assert report.success
    assert before["dagster_taskiq_steps_claimed_total"] == 0
    assert claimed == sorted(claimed)  # it only goes up, step by step as the run goes
    assert claimed[-1] == after["dagster_taskiq_steps_claimed_total"] == 6
    assert after["dagster_taskiq_steps_completed_total"] == 6
    assert after["dagster_taskiq_steps_failed_total"] == 0
    assert after["dagster_taskiq_messages_received_total"] >= 6
    assert after["dagster_taskiq_steps_in_flight"] == 0
    assert after["dagster_taskiq_step_duration_seconds_count"] == 6
    assert after["dagster_taskiq_handoff_seconds_count"] == 6
    assert f'dagster_taskiq_queue_depth{{queue="{cluster.target.queue_name}"}}' in after
    assert "dagster_taskiq_heartbeat_failures_total" in after
    assert "dagster_taskiq_lease_losses_total" in after


def test_readiness_and_liveness_say_what_is_wrong() -> None:
    now = [100.0]
    health = Health(clock=lambda: now[0])
    server = MetricsServer(0, WorkerMetrics(), health, host="127.0.0.1").start()
    try:
        status, body = _get(server.port, "/readyz")
        assert (status, body) == (503, "not ok: starting: broker and store not checked yet\n")
        health.problem = None
        assert _get(server.port, "/readyz") == (200, "ok: broker and store reachable\n")
        health.problem = "store: StoreUnavailableError('...')"
        assert _get(server.port, "/readyz")[0] == 503
        assert _get(server.port, "/healthz") == (200, "ok: event loop last ran 0.0 s ago\n")
        now[0] += 31  # the event loop has not run for 31 s: stuck
        assert _get(server.port, "/healthz") == (503, "not ok: event loop last ran 31.0 s ago\n")
    finally:
        server.close()


def test_a_taken_metrics_port_is_refused_before_the_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # all interfaces, as the worker binds
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            [
                "worker",
                "--backend",
                "memory",
                "-m",
                "support.job_shapes",
                "--store-url",
                f"sqlite:///{tmp_path / 's.db'}",
                "--metrics-port",
                str(port),
            ],
        )
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 0.0.0.0:{port}" in result.output
    assert "--metrics-port" in result.output
