"""Tail a run's event log, and wake the executor as soon as something is written to it."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import structlog
from dagster import DagsterEventType, DagsterInstance

from dagster_taskiq._dagster_compat import DagsterEvent, EventLogCursor

_log = structlog.get_logger("dagster_taskiq.executor")

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


class EventWake:
    """A flag set whenever the run's event log changes (Dagster's own event watcher).

    PostgreSQL storage notifies through LISTEN/NOTIFY and SQLite storage through a file watcher,
    so the executor reacts to a step's end within milliseconds instead of polling on a timer.
    Where the storage cannot watch, the executor falls back to its poll interval.
    """

    def __init__(self, instance: DagsterInstance, run_id: str) -> None:
        self._event = threading.Event()
        self._unwatch: Callable[[], None] | None = None
        storage = instance.event_log_storage

        def on_event(*_: Any) -> None:
            self._event.set()

        try:
            storage.watch(run_id, None, on_event)
        except Exception as exc:  # e.g. an in-memory storage of a test instance
            _log.info("event_watch_unavailable", run_id=run_id, error=repr(exc))
        else:
            self._unwatch = lambda: storage.end_watch(run_id, on_event)

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def close(self) -> None:
        if self._unwatch is not None:
            try:
                self._unwatch()
            except Exception as exc:
                _log.warning("event_unwatch_failed", error=repr(exc))
            self._unwatch = None
