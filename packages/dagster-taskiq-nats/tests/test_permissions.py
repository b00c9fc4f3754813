"""The NATS permissions of ``docs/security.md``, read from that page, on a NATS server of this
test's own (JetStream, the page's ``authorization`` block): the run process's user sends steps
and reads dead letters, the worker's user receives and acks them, and cannot publish a step."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from dagster_taskiq_nats import NatsJetStreamBroker, NatsSettings
from dagster_taskiq_testing.broker_helpers import StartedBrokers, deliver_and_dead_letter
from dagster_taskiq_testing.servers._base import free_port, listening, wait_until

SECURITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"


def documented_authorization() -> str:
    """The ``authorization { ... }`` block of the page."""
    found = re.search(r"^authorization \{\n.*?\n\}$", SECURITY_DOC.read_text(), re.S | re.M)
    assert found, "docs/security.md has no NATS authorization block"
    return found.group(0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A NATS server with JetStream and the documented users; their URLs by user."""
    binary = shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed")
    passwords = {"RUN_PASSWORD": secrets.token_hex(12), "WORKER_PASSWORD": secrets.token_hex(12)}
    config = documented_authorization()
    for placeholder, password in passwords.items():
        config = config.replace(placeholder, password)
    (tmp_path / "nats.conf").write_text(config)
    port = free_port()
    log = open(tmp_path / "nats.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            binary,
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(tmp_path / "js"),
            "-c",
            str(tmp_path / "nats.conf"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: listening(port),
            timeout=30,
            what="nats-server",
            alive=lambda: process.poll() is None,
        )
        yield {
            "dagster-run": f"nats://dagster-run:{passwords['RUN_PASSWORD']}@127.0.0.1:{port}",
            "dagster-worker": (
                f"nats://dagster-worker:{passwords['WORKER_PASSWORD']}@127.0.0.1:{port}"
            ),
        }
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
async def brokers() -> AsyncIterator[StartedBrokers]:
    started = StartedBrokers()
    yield started
    await started.close()


def _settings(url: str, **overrides: Any) -> NatsSettings:
    """The documented names (the settings' defaults) on the test's server."""
    values: dict[str, Any] = {
        "servers": url,
        "storage": "memory",
        "visibility_timeout": 1.0,
        "fetch_timeout": 0.3,
        "max_deliveries": 1,
        "retry_attempts": 3,
        "retry_initial_delay": 0.05,
        "retry_max_delay": 0.2,
        "retry_timeout": 5.0,
    }
    return NatsSettings(**{**values, **overrides})


async def test_the_documented_permissions_send_receive_ack_and_dead_letter(
    server: dict[str, str], brokers: StartedBrokers
) -> None:
    run = await brokers.start(NatsJetStreamBroker(_settings(server["dagster-run"])))
    worker = await brokers.start(
        NatsJetStreamBroker(_settings(server["dagster-worker"], heartbeat_enabled=False))
    )
    await deliver_and_dead_letter(run, worker)


async def test_the_worker_user_cannot_publish_a_step(
    server: dict[str, str], brokers: StartedBrokers
) -> None:
    run = await brokers.start(NatsJetStreamBroker(_settings(server["dagster-run"])))
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    worker = await nats.connect(server["dagster-worker"], error_cb=on_error)
    try:
        await worker.publish(NatsSettings().subject, b"forged")
        await worker.flush()
        await asyncio.sleep(0.5)
    finally:
        await worker.close()
    assert any("permissions violation" in str(e).lower() for e in errors), errors
    info = await run.js.stream_info(NatsSettings().stream)
    assert info.state.messages == 0
