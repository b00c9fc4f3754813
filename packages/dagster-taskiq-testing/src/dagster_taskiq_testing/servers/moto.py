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

import logging
import sys
from typing import Any

from dagster_taskiq_testing._errors import ServerUnavailableError
from dagster_taskiq_testing.servers._base import (
    ServerProcess,
    boto3_client,
    http_get,
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


class MotoProcessServer(ServerProcess):
    """``python -m moto.server`` as a child process on 127.0.0.1 and a free port.

    Its output goes to a log file in a temporary directory (its tail is in the error when it
    does not start). ``stop()`` terminates the process (kills it after ``stop_timeout``
    seconds) and so frees the port; moto's state dies with it.
    """

    name = "moto"
    title = "moto's server"

    def __init__(self, *, start_timeout: float = 30.0, stop_timeout: float = 10.0) -> None:
        super().__init__(start_timeout=start_timeout, stop_timeout=stop_timeout)

    def start(self) -> MotoProcessServer:
        if self._process is not None:
            return self
        _, port = self._prepare()
        self._launch(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            ready=lambda: http_get(f"{self.endpoint_url}/moto-api/data.json") is not None,
        )
        return self
