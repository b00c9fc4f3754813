"""moto's server on a free loopback port: in this process, or in its own process as real SQS is.

``MotoServer`` runs ``ThreadedMotoServer`` in this process (starts in milliseconds; restartable
with its state kept, as the outage tests need). ``MotoProcessServer`` runs ``python -m
moto.server`` as a child process (under a second to start), so serving SQS takes no CPU from
the process being measured: what the benchmarks use.

Known deviations from AWS (see docs/testing.md): a FIFO deduplication id is forgotten once its
message is deleted, a duplicate send gets a new MessageId, ``DeduplicationScope=messageGroup``
is accepted but not honoured, and several server-side validations are missing.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import pathlib
import subprocess
import sys
import tempfile
from typing import IO, Any

from dagster_taskiq_testing._errors import ServerUnavailableError
from dagster_taskiq_testing.servers._base import (
    boto3_client,
    end_process,
    free_port,
    http_get,
    wait_until,
)


class MotoServer:
    """``moto.server.ThreadedMotoServer`` on 127.0.0.1 and a free port (or ``port``).

    ``stop()`` closes the listening socket, so ``start()`` (or ``restart()``) can serve again on
    the same port. moto keeps its state in this process: queues and messages survive a restart,
    as they survive an SQS outage. Keep-alive connections already accepted are still answered
    by their handler threads after a stop; put an ``EndpointProxy`` in front to cut them too.
    """

    name = "moto"

    def __init__(self, port: int | None = None) -> None:
        self._server: Any = None
        self._endpoint_url: str | None = None
        self.port = port

    def start(self) -> MotoServer:
        try:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional dependency
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ServerUnavailableError(
                "moto's server is not installed: pip install 'moto[server]'"
            ) from exc
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        if self._server is not None:
            return self
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port or 0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.port = port
        self._endpoint_url = f"http://{host}:{port}"
        return self

    @property
    def endpoint_url(self) -> str:
        """The endpoint; known before ``start()`` only for a server given a fixed ``port``."""
        if self.port is None:
            raise ServerUnavailableError("moto's server was not started")
        return self._endpoint_url or f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3_client(self.endpoint_url)

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        """Stop serving and close the port (the endpoint refuses connections until started)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            # ThreadedMotoServer.stop() leaves the socket listening: close it, so the port
            # refuses connections and can be bound again by a restart.
            server._server.server_close()

    def restart(self) -> MotoServer:
        """Stop, then serve again on the same port (state kept)."""
        self.stop()
        return self.start()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MotoProcessServer:
    """``python -m moto.server`` as a child process on 127.0.0.1 and a free port.

    Its output goes to a log file in a temporary directory (its tail is in the error when it
    does not start). ``stop()`` terminates the process (kills it after ``stop_timeout``
    seconds) and so frees the port; moto's state dies with it.
    """

    name = "moto"

    def __init__(self, *, start_timeout: float = 30.0, stop_timeout: float = 10.0) -> None:
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> MotoProcessServer:
        if self._process is not None:
            return self
        self._workdir = tempfile.TemporaryDirectory(prefix="moto-")
        self._port = port = free_port()
        atexit.register(self.stop)  # no orphaned server if the session ends abruptly
        self._log = open(self._log_path(), "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the caller, whose stop() ends the server
        )
        try:
            wait_until(
                lambda: http_get(f"{self.endpoint_url}/moto-api/data.json") is not None,
                timeout=self._start_timeout,
                what="moto's server",
                alive=lambda: self._process is not None and self._process.poll() is None,
            )
        except ServerUnavailableError as exc:
            tail = self.log_tail()
            self.stop()
            raise ServerUnavailableError(f"{exc}; log tail:\n{tail}") from exc
        return self

    def _log_path(self) -> pathlib.Path:
        assert self._workdir is not None
        return pathlib.Path(self._workdir.name) / "moto.log"

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
            raise ServerUnavailableError("moto's server was not started")
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

    def __enter__(self) -> MotoProcessServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
