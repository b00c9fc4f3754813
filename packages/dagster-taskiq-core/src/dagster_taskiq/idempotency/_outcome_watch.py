"""How a run's executor learns that a step outcome was recorded, without polling PostgreSQL.

* :class:`PostgresOutcomeWatch`: the store's ``finish`` sends ``pg_notify`` on the run's channel
  in the same statement as the outcome, delivered when it commits; the watch holds one
  connection that LISTENs on that channel and sleeps in ``select`` until a notification comes.
  A waiting run then asks nothing of the database. A lost connection (server restart,
  ``pg_terminate_backend``) is noticed, re-made with back-off, and reported as "may have
  missed one" so that the executor looks; while it cannot be re-made the executor's
  once-a-second reconciliation still finds every outcome (a run is slower, never stuck).
* :class:`PollingOutcomeWatch`: any other store (SQLite, one machine): polls the run's
  outcome version, every 5 ms while outcomes are coming, backing off to 50 ms when they are not.
  On SQLite it first asks ``PRAGMA data_version`` (a counter in the database's shared memory
  that moves when another connection commits; microseconds, no table read) every millisecond,
  and reads the outcome version only when that moved.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import structlog

from dagster_taskiq.idempotency._protocol import OutcomeVersion

_log = structlog.get_logger("dagster_taskiq.idempotency")

FAST_POLL = 0.005
"""Seconds between outcome-version polls while outcomes are coming."""
PROBE_POLL = 0.001
"""Seconds between looks at a cheap change probe (SQLite's data_version), when there is one."""
SLOW_POLL = 0.05
"""The longest interval the SQLite poll backs off to."""
FAST_FOR = 0.5
"""Seconds after an outcome during which the SQLite poll stays at ``FAST_POLL``."""
RECONNECT_WAIT_MAX = 5.0
"""The longest wait between attempts to re-make a lost LISTEN connection."""


CHANNEL_PREFIX = "dagster_taskiq_"
CHANNEL_DIGEST_CHARS = 32


def outcome_channel(table_prefix: str, run_id: str) -> str:
    """The PostgreSQL NOTIFY channel of one run's outcomes (a valid, unquoted identifier).

    The store's ``finish`` computes the same name in SQL from the row's run id."""
    digest = hashlib.sha256(f"{table_prefix}:{run_id}".encode()).hexdigest()
    return f"{CHANNEL_PREFIX}{digest[:CHANNEL_DIGEST_CHARS]}"


class DataVersionProbe:
    """SQLite's ``PRAGMA data_version`` on a connection of its own: has anyone committed?"""

    def __init__(self, connection: Any) -> None:
        self._conn = connection
        self._last = self._read()

    def _read(self) -> int:
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def changed(self) -> bool:
        """True if another connection committed to the database since the last call."""
        current = self._read()
        if current == self._last:
            return False
        self._last = current
        return True

    def close(self) -> None:
        self._conn.close()


class PollingOutcomeWatch:
    """Polls ``version()`` (the run's outcome version) until it changes, with back-off; with a
    ``probe``, only when the probe says the database changed (the probe is polled every
    ``PROBE_POLL`` seconds while outcomes are coming)."""

    def __init__(
        self,
        version: Callable[[], OutcomeVersion],
        *,
        probe: DataVersionProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._version = version
        self._probe = probe
        self._clock = clock
        self._sleep = sleep
        self._seen = version()  # before any step is sent: nothing can be missed before this
        self._changed_at = clock()

    def interval(self) -> float:
        """The current poll interval: fast just after an outcome, slower as time passes."""
        quiet_for = self._clock() - self._changed_at
        if quiet_for < FAST_FOR:
            return PROBE_POLL if self._probe is not None else FAST_POLL
        return min(SLOW_POLL, FAST_POLL * (1 + (quiet_for - FAST_FOR) / FAST_FOR) ** 2)

    def wait(self, timeout: float) -> bool:
        deadline = self._clock() + timeout
        while (left := deadline - self._clock()) > 0:
            self._sleep(min(self.interval(), left))
            if self._probe is not None and not self._probe.changed():
                continue
            current = self._version()
            if current != self._seen:
                self._seen = current
                self._changed_at = self._clock()
                return True
        return False

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()


class PostgresOutcomeWatch:
    """LISTENs on one run's channel over its own psycopg 3 connection (``connect()``)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        *,
        masked_url: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._masked_url = masked_url
        self._clock = clock
        self._sleep = sleep
        self._conn: Any = None
        self._failures = 0
        self._retry_at = 0.0
        self._listen()  # before any step is sent: nothing can be missed before this

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def _listen(self) -> None:
        conn = self._connect()
        try:
            conn.autocommit = True
            conn.execute(f'LISTEN "{self.channel}"')
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._failures = 0

    def wait(self, timeout: float) -> bool:
        if self._conn is None:
            return self._relisten(timeout)
        try:
            return self._notified(timeout)
        except Exception as exc:  # the connection is gone: notifications may have been lost
            self._lost(exc)
            return True

    def _notified(self, timeout: float) -> bool:
        got = False
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            got = True
        if got:  # take what else is queued, without waiting, so one wake covers it all
            for _ in self._conn.notifies(timeout=0):
                pass
        return got

    def _relisten(self, timeout: float) -> bool:
        wait = self._retry_at - self._clock()
        if wait > 0:
            self._sleep(min(wait, timeout))
            if wait > timeout:
                return False
        try:
            self._listen()
        except Exception as exc:
            self._failures += 1
            delay = min(RECONNECT_WAIT_MAX, 0.1 * 2**self._failures)
            self._retry_at = self._clock() + delay
            _log.warning(
                "outcome_watch_reconnect_failed",
                channel=self.channel,
                store=self._masked_url,
                retry_in=delay,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        _log.info("outcome_watch_reconnected", channel=self.channel, store=self._masked_url)
        return True  # outcomes may have been recorded while we were not listening

    def _lost(self, exc: Exception) -> None:
        _log.warning(
            "outcome_watch_lost",
            channel=self.channel,
            store=self._masked_url,
            error=f"{type(exc).__name__}: {exc}",
        )
        self.close()
        self._retry_at = self._clock()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # already broken: nothing left to release
                _log.debug("outcome_watch_close_failed", error=repr(exc))
