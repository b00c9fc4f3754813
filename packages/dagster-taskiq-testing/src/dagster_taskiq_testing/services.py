"""The services the broker backends' tests need running: Redis, NATS JetStream, RabbitMQ.

They are started outside the tests (the servers the tests start themselves, moto and LocalStack,
are in ``servers/``). Each is where ``DAGSTER_TASKIQ_TEST_<SERVICE>_URL`` says, or on its usual
local port. ``require_redis()`` and the others skip the calling test when the service does not
answer, or fail it under ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1`` (CI), naming the service and
where it was looked for. The checks speak plain TCP, so this module imports no client library.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from typing import NoReturn

import pytest

__all__ = [
    "NATS_URL",
    "RABBITMQ_URL",
    "REDIS_URL",
    "REQUIRE_SERVICES",
    "port_of",
    "require_nats",
    "require_rabbitmq",
    "require_redis",
    "unavailable",
]

REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
NATS_URL = os.environ.get("DAGSTER_TASKIQ_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get(
    "DAGSTER_TASKIQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
_DEFAULT_PORTS = {"redis": 6379, "nats": 4222, "amqp": 5672}
_TIMEOUT = 2.0


def port_of(url: str) -> int:
    """The TCP port of a service URL (the scheme's usual one when the URL names none)."""
    parts = urllib.parse.urlsplit(url)
    return parts.port or _DEFAULT_PORTS[parts.scheme]


def _host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or "127.0.0.1"


def unavailable(message: str) -> NoReturn:
    """Skip the test with ``message``, or fail it under ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1``."""
    if REQUIRE_SERVICES:
        pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _greeting(url: str, send: bytes = b"") -> bytes:
    """What the service says first (after ``send``), or ``b""`` when it does not answer."""
    try:
        with socket.create_connection((_host_of(url), port_of(url)), timeout=_TIMEOUT) as conn:
            if send:
                conn.sendall(send)
            return conn.recv(4096)
    except OSError:
        return b""


def _where(url: str) -> str:
    return f"{_host_of(url)}:{port_of(url)}"


def require_redis() -> None:
    """Redis answers ``PING`` at ``REDIS_URL`` (or asks for the password the URL holds)."""
    answer = _greeting(REDIS_URL, b"PING\r\n")
    if not answer.startswith((b"+PONG", b"-NOAUTH")):
        unavailable(f"Redis is not reachable at {_where(REDIS_URL)}: {answer[:100]!r}")


def require_nats() -> None:
    """NATS, with JetStream enabled, greets at ``NATS_URL``."""
    answer = _greeting(NATS_URL)
    if b'"jetstream":true' not in answer:
        unavailable(f"NATS with JetStream is not reachable at {_where(NATS_URL)}: {answer[:200]!r}")


def require_rabbitmq() -> None:
    """RabbitMQ accepts a TCP connection at ``RABBITMQ_URL`` (credentials are not shown)."""
    try:
        socket.create_connection(
            (_host_of(RABBITMQ_URL), port_of(RABBITMQ_URL)), timeout=_TIMEOUT
        ).close()
    except OSError as exc:
        unavailable(f"RabbitMQ is not reachable at {_where(RABBITMQ_URL)}: {exc}")
