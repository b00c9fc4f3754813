"""``PgCountingProxy``: exact round trips (simple queries and Syncs) and connections, through
psycopg against the local PostgreSQL; SSL and GSS encryption requests answered ``N``."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from dagster_taskiq_testing.servers import PgCountingProxy, PgCounts
from dagster_taskiq_testing.servers.pg_counter import GSSENC_REQUEST_CODE, SSL_REQUEST_CODE

psycopg = pytest.importorskip("psycopg")

REQUIRE_SERVICES = os.environ.get("DAGSTER_TASKIQ_REQUIRE_SERVICES") == "1"


@pytest.fixture
def proxy() -> Iterator[PgCountingProxy]:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        message = "PostgreSQL is not reachable at 127.0.0.1:5432"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (DAGSTER_TASKIQ_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    with PgCountingProxy() as started:
        yield started


def _eventually(proxy: PgCountingProxy, check: Callable[[PgCounts], bool]) -> PgCounts:
    deadline = time.monotonic() + 5
    while not check(counts := proxy.snapshot()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return counts


def test_counts_simple_and_extended_round_trips_exactly(proxy: PgCountingProxy) -> None:
    with psycopg.connect(proxy.url("test"), autocommit=True) as conn:
        start = proxy.snapshot()
        assert start.connections_opened == 1
        assert start.open_connections == 1
        conn.execute("SELECT 1")  # no parameters: simple query
        conn.execute("SELECT 1; SELECT 2")  # one message, one round trip
        for n in range(3):
            assert conn.execute("SELECT %s::int", (n,)).fetchone() == (n,)  # Parse..Sync
        conn.execute("SELECT %s::text, %s::int", ("a", 1))
        counts = proxy.snapshot().since(start)
        assert (counts.simple_queries, counts.syncs, counts.round_trips) == (2, 4, 6)
        assert counts.connections_opened == 0

    closed = _eventually(proxy, lambda c: c.open_connections == 0)
    assert closed.open_connections == 0
    assert closed.round_trips == start.round_trips + 6  # Terminate is not a round trip


def test_a_transaction_costs_begin_and_commit(proxy: PgCountingProxy) -> None:
    with psycopg.connect(proxy.url("test")) as conn:
        before = proxy.snapshot()
        conn.execute("SELECT %s::int", (1,))  # BEGIN (simple), then the statement (Sync)
        conn.commit()  # COMMIT (simple)
        counts = proxy.snapshot().since(before)
    assert (counts.simple_queries, counts.syncs) == (2, 1)


def test_max_open_counts_concurrent_connections(proxy: PgCountingProxy) -> None:
    with psycopg.connect(proxy.url("test"), autocommit=True) as first:
        with psycopg.connect(proxy.url("test"), autocommit=True) as second:
            first.execute("SELECT 1")
            second.execute("SELECT 2")
            both = proxy.snapshot(reset_peak=True)
        assert (both.connections_opened, both.open_connections, both.max_open) == (2, 2, 2)
        one = _eventually(proxy, lambda c: c.open_connections == 1)
        assert one.open_connections == 1
        assert one.max_open == 2  # the peak since the reset, when both were still open
        assert proxy.snapshot(reset_peak=True).max_open == 2
    after = _eventually(proxy, lambda c: c.open_connections == 0)
    assert after.max_open == 1  # since the last reset: only the first was open
    assert after.round_trips == 2


@pytest.mark.parametrize("code", [SSL_REQUEST_CODE, GSSENC_REQUEST_CODE], ids=["ssl", "gssenc"])
def test_encryption_requests_are_refused_by_the_proxy(proxy: PgCountingProxy, code: int) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
        raw.sendall(struct.pack("!ii", 8, code))
        assert raw.recv(1) == b"N"
        # Then the startup message, forwarded: the server asks for nothing (trust) and is ready.
        params = b"user\x00postgres\x00database\x00test\x00\x00"
        raw.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        reply = b""
        while not reply.endswith(b"Z\x00\x00\x00\x05I"):
            chunk = raw.recv(65536)
            assert chunk, f"server closed the connection: {reply!r}"
            reply += chunk
        assert reply.startswith(b"R")  # AuthenticationOk
        query = b"SELECT 1\x00"
        raw.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
        reply = b""
        while not reply.endswith(b"Z\x00\x00\x00\x05I"):
            chunk = raw.recv(65536)
            assert chunk, f"server closed the connection: {reply!r}"
            reply += chunk
        assert reply.startswith(b"T")  # RowDescription, then DataRow, CommandComplete
    assert proxy.snapshot().simple_queries == 1


def test_psycopg_sslmode_prefer_goes_on_in_plain_text(proxy: PgCountingProxy) -> None:
    url = proxy.url("test") + "?sslmode=prefer"
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.pgconn.ssl_in_use is False
    assert proxy.snapshot().round_trips == 1
