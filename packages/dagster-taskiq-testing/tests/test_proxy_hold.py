"""``EndpointProxy.hold``: a request matching the marker (bytes or a pattern) waits for
``release()``; other requests pass."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from dagster_taskiq_testing.servers import EndpointProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server that echoes every chunk back."""
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    server.close()


def _answered(client: socket.socket, data: bytes, timeout: float) -> bool:
    client.settimeout(timeout)
    client.sendall(data)
    try:
        return client.recv(65536) == data
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "marker",
    [b"+ACK", re.compile(rb"PUB \$JS\.ACK\.\S+ _INBOX\.\S+ 0\r\n")],
    ids=["bytes", "pattern"],
)
def test_hold_matching_requests_until_release(echo_port: int, marker: object) -> None:
    proxy = EndpointProxy(echo_port).start()
    try:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        proxy.hold(marker)  # type: ignore[arg-type]
        assert _answered(client, b"PUB $JS.ACK.S.C.1 4\r\n+WPI\r\n", 2)
        held = b"PUB $JS.ACK.S.C.1 _INBOX.a.b 0\r\n\r\n+ACK"
        assert not _answered(client, held, 0.5)
        assert proxy.held(timeout=1) == [client.getsockname()[1]]
        proxy.release()
        client.settimeout(2)
        assert client.recv(65536) == held
        client.close()
    finally:
        proxy.kill()
