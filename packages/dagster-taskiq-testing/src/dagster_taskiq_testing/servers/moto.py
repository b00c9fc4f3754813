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
    """``moto.server.ThreadedMotoServer`` on 127.0.0.1 and a free port."""

    name = "moto"

    def __init__(self) -> None:
        self._server: Any = None
        self._endpoint_url: str | None = None

    def start(self) -> MotoServer:
        try:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional dependency
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ServerUnavailableError(
                "moto's server is not installed: pip install 'moto[server]'"
            ) from exc
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        return self

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise ServerUnavailableError("moto's server was not started")
        return self._endpoint_url

    def client(self) -> Any:
        return boto3_client(self.endpoint_url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
