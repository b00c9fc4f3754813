"""What every real SQS server offers the tests: an endpoint, clients, start and stop."""

from __future__ import annotations

import atexit
import contextlib
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Protocol, Self

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


def unacked_messages(endpoint_url: str, queue_name: str) -> int:
    """Messages in a queue of a local SQS server not yet deleted (visible or not)."""
    sqs = boto3_client(endpoint_url)
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


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


class ServerProcess:
    """A server in a process of its own on a free loopback port, its output in a log file of a
    temporary directory (the log's tail is in the error when it does not start). A subclass
    writes ``start``: :meth:`_prepare`, then :meth:`_launch` with its command and readiness
    check. ``stop()`` terminates the process (kills it after ``stop_timeout`` seconds) and so
    frees the port; the server's state dies with it."""

    name: str
    title: str
    """The server's name in errors (``"moto's server"``)."""

    def __init__(self, *, start_timeout: float, stop_timeout: float) -> None:
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None

    def _prepare(self) -> tuple[pathlib.Path, int]:
        """A fresh working directory and a free port for the server."""
        self._workdir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        self._port = free_port()
        return pathlib.Path(self._workdir.name), self._port

    def _launch(
        self,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: pathlib.Path | None = None,
    ) -> None:
        """Start ``argv`` and wait until ``ready()``; ServerUnavailableError with the log's tail
        (the server stopped) if it is not within the start timeout."""
        atexit.register(self.stop)  # no orphaned server if the session ends abruptly
        self._log = open(self._log_path(), "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            list(argv),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the caller, whose stop() ends the server
        )
        try:
            wait_until(
                ready, timeout=self._start_timeout, what=self.title, alive=lambda: self.running
            )
        except ServerUnavailableError as exc:
            tail = self.log_tail()
            self.stop()
            raise ServerUnavailableError(f"{exc}; log tail:\n{tail}") from exc

    def _log_path(self) -> pathlib.Path:
        assert self._workdir is not None
        return pathlib.Path(self._workdir.name) / f"{self.name}.log"

    def log_tail(self, lines: int = 30) -> str:
        if self._workdir is None:
            return ""
        with contextlib.suppress(OSError):
            text = self._log_path().read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    @property
    def endpoint_url(self) -> str:
        if self._port is None:
            raise ServerUnavailableError(f"{self.title} was not started")
        return f"http://127.0.0.1:{self._port}"

    def client(self) -> Any:
        return boto3_client(self.endpoint_url)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Terminate the process (kill it if it lingers); the port then refuses connections."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        end_process(process, self._stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError
