"""moto's server, in this process on a free loopback port (starts in milliseconds).

Known deviations from AWS (see docs/testing.md): a FIFO deduplication id is forgotten once its
message is deleted, a duplicate send gets a new MessageId, ``DeduplicationScope=messageGroup``
is accepted but not honoured, and several server-side validations are missing.
"""

from __future__ import annotations

import logging
from typing import Any

from dagster_taskiq_testing._errors import ServerUnavailableError
from dagster_taskiq_testing.servers._base import boto3_client


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
