"""The real-server fixtures and helpers."""

from __future__ import annotations

import os
import socket

import pytest

from dagster_taskiq_testing.servers import (
    MotoProcessServer,
    SqsServer,
    boto3_client,
    localstack_env_dir,
)


@pytest.mark.sqs_server
def test_sqs_server_fixture_is_a_running_server(sqs_server: SqsServer) -> None:
    sqs = boto3_client(sqs_server.endpoint_url)
    url = sqs.create_queue(QueueName="fixture-check")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"] == "m"
    sqs.delete_queue(QueueUrl=url)


@pytest.mark.sqs_server
def test_moto_process_server_serves_from_its_own_process_and_frees_its_port() -> None:
    with MotoProcessServer() as server:
        assert server.running
        assert server.pid not in {None, os.getpid()}
        port = int(server.endpoint_url.rsplit(":", 1)[1])
        sqs = server.client()
        url = sqs.create_queue(QueueName="process-check")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="m")
        received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in received] == ["m"]
    assert not server.running
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_localstack_env_dir_is_keyed_by_the_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_TASKIQ_LOCALSTACK_ENV", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    path = localstack_env_dir()
    assert str(path).startswith("/cache/dagster-taskiq-testing/localstack-")
    monkeypatch.setenv("DAGSTER_TASKIQ_LOCALSTACK_ENV", "/elsewhere")
    assert str(localstack_env_dir()) == "/elsewhere"
