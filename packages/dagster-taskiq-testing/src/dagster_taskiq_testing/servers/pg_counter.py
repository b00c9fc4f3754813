"""A TCP proxy in front of PostgreSQL that counts what its clients ask of the database.

``PgCountingProxy`` forwards 127.0.0.1:``port`` to a PostgreSQL server (127.0.0.1:5432 by
default) and reads the frontend protocol of every client connection as it passes, exactly:

* ``round_trips``: statements sent, counted as round trips to the server: one per simple-query
  message (``Q``: ``cursor.execute`` without parameters, psycopg2's every statement, ``BEGIN``,
  ``COMMIT``, ``LISTEN``; a ``Q`` holding ``a; b`` is one) and one per extended-protocol
  ``Sync`` (``S``: ends one Parse/Bind/Execute sequence, psycopg 3's parameterised statements;
  a pipeline of several executes before one ``Sync`` is one), also available apart as
  ``simple_queries`` and ``syncs``;
* ``connections_opened``: client connections accepted (a CancelRequest is one too);
* ``open_connections`` now, and ``max_open``: the most open at once since the proxy started or
  since the last ``snapshot(reset_peak=True)``.

``snapshot()`` returns the counters; ``later.since(earlier)`` is the difference (the cumulative
counters subtracted, the open figures ``later``'s), so a window is
``before = proxy.snapshot(reset_peak=True)`` ... ``proxy.snapshot().since(before)``.

The startup phase is handled as a server would see it: the client's first message has no type
byte (an int32 length, itself included, then an int32 code). An SSLRequest (code 80877103) or a
GSSENCRequest (80877104) is answered by the proxy itself with one ``N`` byte, so that the
client goes on in plain text, and is not forwarded; the StartupMessage (or a CancelRequest) is
forwarded, and from then on every message is a type byte, an int32 length (itself included)
and the body. The server's bytes are forwarded unparsed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
from types import TracebackType

from dagster_taskiq_testing.servers._base import free_port

__all__ = ["PgCountingProxy", "PgCounts"]

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
_MAX_STARTUP_LENGTH = 10_000
"""A startup packet longer than this is not PostgreSQL's: forwarded as is, never parsed."""

_SIMPLE_QUERY = ord("Q")
_SYNC = ord("S")


@dataclasses.dataclass(frozen=True)
class PgCounts:
    """What a proxy's clients asked of the database (see the module docstring)."""

    simple_queries: int = 0
    """Simple-query (``Q``) messages: one round trip each."""
    syncs: int = 0
    """Extended-protocol ``Sync`` (``S``) messages: one round trip each."""
    connections_opened: int = 0
    open_connections: int = 0
    max_open: int = 0
    """The most connections open at once since the start or the last peak reset."""

    @property
    def round_trips(self) -> int:
        """Statements sent, as round trips: simple queries plus extended-protocol Syncs."""
        return self.simple_queries + self.syncs

    def since(self, earlier: PgCounts) -> PgCounts:
        """The counts from ``earlier`` to these (open figures: these)."""
        return PgCounts(
            simple_queries=self.simple_queries - earlier.simple_queries,
            syncs=self.syncs - earlier.syncs,
            connections_opened=self.connections_opened - earlier.connections_opened,
            open_connections=self.open_connections,
            max_open=self.max_open,
        )


class _MessageCounter:
    """Splits a client's byte stream (after startup) into messages and counts round trips."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> tuple[int, int]:
        """``(simple queries, syncs)`` among the messages whose header is in ``data``."""
        queries = syncs = 0
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                continue
            chunk = data[i : i + 5 - len(self._header)]
            self._header += chunk
            i += len(chunk)
            if len(self._header) < 5:
                break
            kind = self._header[0]
            length = int.from_bytes(self._header[1:5], "big")
            self._header.clear()
            if kind == _SIMPLE_QUERY:
                queries += 1
            elif kind == _SYNC:
                syncs += 1
            self._skip = max(0, length - 4)
        return queries, syncs


class PgCountingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``, counting (module doc)."""

    def __init__(
        self, target_port: int = 5432, *, target_host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.target_host = target_host
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._simple_queries = 0
        self._syncs = 0
        self._opened = 0
        self._open = 0
        self._max_open = 0

    def url(self, database: str, *, user: str = "postgres", scheme: str = "postgresql") -> str:
        """``scheme://user@127.0.0.1:port/database`` (no password: trust auth)."""
        return f"{scheme}://{user}@127.0.0.1:{self.port}/{database}"

    def snapshot(self, *, reset_peak: bool = False) -> PgCounts:
        """The counters now; with ``reset_peak``, ``max_open`` restarts from the open count."""
        with self._lock:
            counts = PgCounts(
                simple_queries=self._simple_queries,
                syncs=self._syncs,
                connections_opened=self._opened,
                open_connections=self._open,
                max_open=self._max_open,
            )
            if reset_peak:
                self._max_open = self._open
        return counts

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> PgCountingProxy:
        if self._listener is None:
            listener = socket.create_server(("127.0.0.1", self.port))
            self._listener = listener
            threading.Thread(
                target=self._accept, args=(listener,), name="pg-counter-accept", daemon=True
            ).start()
        return self

    def stop(self) -> None:
        """Close the port and every connection (both sides)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> PgCountingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- pumping ---------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.target_host, self.target_port))
            except OSError:
                client.close()
                continue
            for conn in (client, upstream):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.update({client, upstream})
                self._opened += 1
                self._open += 1
                self._max_open = max(self._max_open, self._open)
            threading.Thread(target=self._client_side, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._server_side, args=(upstream, client), daemon=True).start()

    def _client_side(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            if self._startup(client, upstream):
                counter = _MessageCounter()
                while data := client.recv(65536):
                    queries, syncs = counter.feed(data)
                    if queries or syncs:
                        with self._lock:
                            self._simple_queries += queries
                            self._syncs += syncs
                    upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)
            with self._lock:
                self._open -= 1

    def _startup(self, client: socket.socket, upstream: socket.socket) -> bool:
        """Answer SSL/GSS encryption requests, forward the startup packet; False at EOF."""
        while True:
            header = _recv_exact(client, 8)
            if header is None:
                return False
            length, code = struct.unpack("!ii", header)
            if length == 8 and code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
                client.sendall(b"N")  # not supported: go on in plain text
                continue
            if not 8 <= length <= _MAX_STARTUP_LENGTH:
                upstream.sendall(header)  # not PostgreSQL's protocol: pass it on, uncounted
                while data := client.recv(65536):
                    upstream.sendall(data)
                return False
            body = _recv_exact(client, length - 8)
            if body is None:
                return False
            upstream.sendall(header + body)
            return True

    def _server_side(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._close(upstream, client)

    def _close(self, *conns: socket.socket) -> None:
        """Shut both sides down (which wakes the other pump) and close them."""
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._connections.discard(conn)
            conn.close()


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``conn``, or None if it closed first."""
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
