"""What every real SQS server offers the tests: an endpoint, clients, start and stop."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from dagster_taskiq_testing._errors import ServerUnavailableError

DEFAULT_REGION = "us-east-1"


class SqsServer(Protocol):
    """A running SQS-compatible server."""

    name: str

    @property
    def endpoint_url(self) -> str: ...

    def stop(self) -> None: ...


def boto3_client(endpoint_url: str, region_name: str = DEFAULT_REGION) -> Any:
    """A boto3 SQS client for a local server (dummy credentials, no retries)."""
    # boto3 is only needed when a real server is used.
    import boto3  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415
    from botocore.config import Config  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415

    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - emulators accept any credentials
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], bool] | None = None
) -> None:
    """Poll ``check`` until it is true; ``ServerUnavailableError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise ServerUnavailableError(f"{what}: the process exited")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.1)
    raise ServerUnavailableError(f"{what}: not ready after {timeout:.0f} s")


def http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        body: bytes = response.read()
        return body


def end_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM ``process`` if it runs, SIGKILL it if it has not exited after ``timeout`` s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
