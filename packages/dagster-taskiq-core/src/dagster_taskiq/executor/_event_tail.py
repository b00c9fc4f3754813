"""Tail a run's event log."""

from __future__ import annotations

import math

from dagster import DagsterEventType, DagsterInstance

from dagster_taskiq._dagster_compat import DagsterEvent, EventLogCursor

_POP_LIMIT = 1000


class EventTail:
    """New Dagster events of one run since the last call, each exactly once.

    As Dagster's ``StepDelegatingExecutor`` does, the cursor is moved back by the storage's
    tailer offset (PostgreSQL may commit a lower storage id after a higher one), and events
    already returned are filtered out by storage id.
    """

    def __init__(self, instance: DagsterInstance, run_id: str) -> None:
        self._instance = instance
        self._run_id = run_id
        self._cursor: str | None = None
        self._seen: set[int] = set()
        self._offset = int(instance.event_log_storage.default_run_scoped_event_tailer_offset())

    def pop(self) -> list[DagsterEvent]:
        events: list[DagsterEvent] = []
        while True:
            batch, full = self._pop_batch()
            events.extend(batch)
            if not full:
                return events

    def _pop_batch(self) -> tuple[list[DagsterEvent], bool]:
        conn = self._instance.get_records_for_run(
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
