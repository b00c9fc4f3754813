"""The broker as others find and run it: entry points, ``taskiq worker``, LocalStack setups."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import uuid

import pytest
from structlog.testing import capture_logs
from taskiq.kicker import AsyncKicker

from dagster_taskiq.backends import available_backends, create_broker
from dagster_taskiq_sqs import LocalStackSqsBroker, SqsSettings, SqsSettingsError
from dagster_taskiq_testing import InMemorySqs, InMemorySqsBroker
from dagster_taskiq_testing.broker import shared_sqs

pytestmark = pytest.mark.usefixtures("debug_logs")

TESTS = pathlib.Path(__file__).parent


def test_both_backends_are_registered() -> None:
    assert {"sqs", "memory"} <= set(available_backends())


def test_sqs_backend_builds_the_broker_from_settings_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_TASKIQ_SQS_REGION", "eu-west-1")
    broker = create_broker("sqs", {"queue_name": "work.fifo", "max_messages": 4})
    assert type(broker) is LocalStackSqsBroker
    assert broker.settings.queue == "work.fifo"
    assert broker.settings.max_messages == 4
    assert broker.settings.region == "eu-west-1"


def test_sqs_backend_refuses_invalid_settings_with_their_names() -> None:
    with pytest.raises(SqsSettingsError, match=r"max_messages \(DAGSTER_TASKIQ_SQS_MAX_MESSAGES\)"):
        create_broker("sqs", {"max_messages": 50})


async def test_memory_backend_brokers_share_one_account(kick) -> None:
    queue = f"shared-{uuid.uuid4().hex[:8]}.fifo"
    executor_side = create_broker("memory", {"queue_name": queue})
    worker_side = create_broker("memory", {"queue_name": queue})
    assert isinstance(executor_side, InMemorySqsBroker)
    assert isinstance(worker_side, InMemorySqsBroker)
    assert executor_side.sqs is worker_side.sqs is shared_sqs()
    await executor_side.startup()
    await worker_side.startup()
    try:
        await kick(executor_side, "run-1", "a")
        message = await anext(worker_side.listen())
        await message.ack()
        assert shared_sqs().messages(queue) == []
    finally:
        await executor_side.shutdown()
        await worker_side.shutdown()


def test_in_memory_broker_defaults() -> None:
    broker = InMemorySqsBroker()
    assert broker.settings.create_queues_if_missing
    assert isinstance(broker.sqs, InMemorySqs)
    with pytest.raises(ValueError, match="either sqs or clock"):
        InMemorySqsBroker(sqs=InMemorySqs(), clock=broker.sqs.clock)


@pytest.mark.sqs_server
async def test_taskiq_worker_runs_the_broker(moto_sqs_server, tmp_path) -> None:
    ledger = tmp_path / "ledger.txt"
    queue = f"cli-{uuid.uuid4().hex[:8]}.fifo"
    environment = {
        **os.environ,
        "DAGSTER_TASKIQ_SQS_QUEUE_NAME": queue,
        "DAGSTER_TASKIQ_SQS_ENDPOINT_URL": moto_sqs_server.endpoint_url,
        "DAGSTER_TASKIQ_SQS_AWS_ACCESS_KEY_ID": "test",
        "DAGSTER_TASKIQ_SQS_AWS_SECRET_ACCESS_KEY": "test",
        "DAGSTER_TASKIQ_SQS_CREATE_QUEUES_IF_MISSING": "true",
        "DAGSTER_TASKIQ_SQS_WAIT_TIME_SECONDS": "1",
        "SQS_WORKER_APP_LEDGER": str(ledger),
    }
    settings = SqsSettings(
        queue_name=queue,
        endpoint_url=moto_sqs_server.endpoint_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        create_queues_if_missing=True,
    )
    sender = LocalStackSqsBroker(settings)
    await sender.startup()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "apps.sqs_worker_app:create_app_broker",
            "--workers",
            "1",
            "--app-dir",
            str(TESTS),
            "--shutdown-timeout",
            "10",
        ],
        env=environment,
        cwd=TESTS,
    )
    try:
        kicker: AsyncKicker[[str], None] = AsyncKicker(
            task_name="tests.write_line", broker=sender, labels={}
        )
        values = [f"value-{n}" for n in range(5)]
        for value in values:
            await kicker.kiq(value)
        for _ in range(300):
            if ledger.exists() and len(ledger.read_text().splitlines()) >= len(values):
                break
            assert worker.poll() is None, "taskiq worker exited"
            await asyncio.sleep(0.1)
        assert sorted(ledger.read_text().splitlines()) == values
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(30)
        finally:
            worker.kill()
            await sender.shutdown()


@pytest.mark.sqs_server
async def test_localstack_style_queue_url_and_no_credentials(
    moto_sqs_server, monkeypatch: pytest.MonkeyPatch, kick
) -> None:
    """A LocalStack queue URL (unresolvable host) and no credentials anywhere: dummy ones."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    name = f"ls-{uuid.uuid4().hex[:8]}.fifo"
    url = f"http://sqs.us-east-1.localhost.localstack.cloud:4566/123456789012/{name}"
    settings = SqsSettings(
        queue_name=url,
        endpoint_url=moto_sqs_server.endpoint_url,
        create_queues_if_missing=True,
        wait_time_seconds=1,
    )
    broker = LocalStackSqsBroker(settings)
    with capture_logs() as logs:
        await broker.startup()
    try:
        assert broker.queue_info.url == f"{moto_sqs_server.endpoint_url}/123456789012/{name}"
        assert any(entry["event"] == "sqs_dummy_credentials" for entry in logs)
        await kick(broker, "run-1", "a")
        message = await anext(broker.listen())
        await message.ack()
    finally:
        await broker.shutdown()
