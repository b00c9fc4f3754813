"""A TCP proxy in front of a server, for fault tests: cut every connection, or hold requests.

Stopping moto's werkzeug server leaves its keep-alive connections serving, so a client would
never notice; ``kill()`` here closes the proxy's port and resets every open connection, which is
what a crashed server or a network cut does to a client. ``start()`` serves again (optionally in
front of another port). The same proxy in front of PostgreSQL makes the database unreachable for
one client without touching anyone else's connections.

``hold(marker)`` makes the proxy stop forwarding any client request whose bytes contain
``marker`` (e.g. ``b"AmazonSQS.DeleteMessage"``, the ``X-Amz-Target`` of an SQS delete): the
request waits until ``release()``, so a test can act at the precise moment between a client's
decision and its effect. ``held()`` lists the client-side ports of the held connections. The
marker may also be a compiled ``re.Pattern[bytes]`` (searched in each chunk a client sends),
for a request no fixed bytes single out (a JetStream ack: an empty ``PUB $JS.ACK.<...>`` with a
reply subject).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading

from dagster_taskiq_testing.servers._base import free_port

__all__ = ["EndpointProxy"]


class EndpointProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._hold_marker: bytes | re.Pattern[bytes] | None = None
        self._released = threading.Event()
        self._released.set()
        self._held: list[int] = []
        self._held_changed = threading.Condition(self._lock)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self, target_port: int | None = None) -> EndpointProxy:
        if target_port is not None:
            self.target_port = target_port
        if self._listener is not None:
            return self
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def kill(self) -> None:
        """Close the port and reset every open connection (both sides)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:  # reset, not a graceful close; shutdown wakes the pumps
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    # --- holding requests ----------------------------------------------------------------

    def hold(self, marker: bytes | re.Pattern[bytes]) -> None:
        """From now on, hold every client request containing ``marker`` (bytes, or a pattern
        found by ``search``) until ``release()``."""
        with self._lock:
            self._hold_marker = marker
            self._held = []
            self._released.clear()

    def release(self) -> None:
        """Forward the held requests whose clients are still connected (drop the others), and
        stop holding."""
        with self._lock:
            self._hold_marker = None
            self._released.set()

    def held(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for a held request; the client ports of those held so far."""
        with self._held_changed:
            self._held_changed.wait_for(lambda: bool(self._held), timeout=timeout)
            return list(self._held)

    # --- pumping -------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, address = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update({client, upstream})
            client_port = int(address[1])
            threading.Thread(
                target=self._pump, args=(client, upstream, client_port), daemon=True
            ).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, client_port: int | None) -> None:
        try:
            while data := source.recv(65536):
                if client_port is not None and not self._maybe_hold(source, data, client_port):
                    return  # the client went away while its request was held: drop it
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (source, sink):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._connections.discard(conn)

    def _maybe_hold(self, client: socket.socket, data: bytes, client_port: int) -> bool:
        """Hold ``data`` if it matches; False if its client closed meanwhile (drop it)."""
        with self._lock:
            marker = self._hold_marker
            if marker is None:
                return True
            if isinstance(marker, re.Pattern):
                if marker.search(data) is None:
                    return True
            elif marker not in data:
                return True
            self._held.append(client_port)
            self._held_changed.notify_all()
        self._released.wait()
        try:
            return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True  # open, nothing more sent
        except OSError:
            return False
