"""Tail a run's event log."""

from __future__ import annotations

import math
from typing import Any

from dagster import DagsterEventType, DagsterInstance

from dagster_taskiq._dagster_compat import (
    DagsterEvent,
    EventLogCursor,
    pooled_event_log_storage,
)

_POP_LIMIT = 1000


class EventTail:
    """New Dagster events of one run since the last call, each exactly once.

    As Dagster's ``StepDelegatingExecutor`` does, the cursor is moved back by the storage's
    tailer offset (PostgreSQL may commit a lower storage id after a higher one), and events
    already returned are filtered out by storage id. On a database server (PostgreSQL) the tail
    reads through a storage of its own that keeps its connection open (``close`` it).
    """

    def __init__(self, instance: DagsterInstance, run_id: str) -> None:
        self._pooled = pooled_event_log_storage(instance)
        self._reader: Any = self._pooled or instance
        self._run_id = run_id
        self._cursor: str | None = None
        self._seen: set[int] = set()
        self._offset = int(instance.event_log_storage.default_run_scoped_event_tailer_offset())

    def close(self) -> None:
        """Close the tail's own connection to the event log, if it has one."""
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            pooled.dispose()

    @property
    def cursor(self) -> str | None:
        """Where the tail is: every event stored (not only committed) after this moment will
        be after this cursor, so :meth:`pop_since` from it finds them all."""
        return self._cursor

    def pop(self) -> list[DagsterEvent]:
        events: list[DagsterEvent] = []
        while True:
            batch, full = self._pop_batch()
            events.extend(batch)
            if not full:
                return events

    def pop_since(self, cursor: str | None) -> list[DagsterEvent]:
        """Like :meth:`pop`, but read again from ``cursor`` (None: the run's first event).

        PostgreSQL hands out storage ids when an event is inserted and makes it visible when it
        commits: a step's event can become visible after a later event the tail has already
        moved past (dagster-postgres sets no tailer offset), and :meth:`pop` would never return
        it. The executor reads again from where the tail was when it launched the step whose
        outcome it has not seen; events already returned are not returned twice."""
        resume = self._cursor
        self._cursor = cursor
        try:
            return self.pop()
        finally:
            self._cursor = _later(resume, self._cursor)

    def _pop_batch(self) -> tuple[list[DagsterEvent], bool]:
        conn = self._reader.get_records_for_run(
            self._run_id, self._cursor, of_type=set(DagsterEventType), limit=_POP_LIMIT
        )
        fresh = [r for r in conn.records if r.storage_id not in self._seen]
        events = [r.event_log_entry.dagster_event for r in fresh if r.event_log_entry.dagster_event]
        ids = {r.storage_id for r in conn.records}
        if not self._offset:
            self._cursor = conn.cursor
        elif len(ids) == _POP_LIMIT and ids <= self._seen:
            middle = conn.records[math.ceil(_POP_LIMIT / 2) - 1].storage_id
            self._cursor = EventLogCursor.from_storage_id(middle).to_string()
        elif conn.records:
            current = EventLogCursor.parse(self._cursor).storage_id() if self._cursor else 0
            newest = EventLogCursor.parse(conn.cursor).storage_id()
            self._cursor = EventLogCursor.from_storage_id(
                max(current, newest - self._offset)
            ).to_string()
        self._seen |= ids
        return events, len(conn.records) == _POP_LIMIT and bool(fresh)


def _later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if EventLogCursor.parse(a).storage_id() >= EventLogCursor.parse(b).storage_id() else b
