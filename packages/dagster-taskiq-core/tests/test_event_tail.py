"""The executor's tail of a run's event log, when PostgreSQL commits events out of id order.

dagster-postgres hands out an event's storage id when it is inserted and shows the event when it
commits: a worker's STEP_SUCCESS can become visible after a later event of another step that the
tail has already moved past. Found by ``nox -s bench -- scale`` (one run in about thirty of 8
concurrent fan-outs failed: "COMPLETED in the idempotency store but its success event is
missing"); the executor now reads again from where the tail was when it launched the step.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dagster import DagsterEventType

from dagster_taskiq._dagster_compat import EventLogCursor
from dagster_taskiq.executor._event_tail import EventTail


class _Log:
    """A run's event log whose rows become visible when ``commit`` says so, like PostgreSQL."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self.visible: set[int] = set()
        self.event_log_storage = SimpleNamespace(default_run_scoped_event_tailer_offset=lambda: 0)

    def insert(self, storage_id: int, step_key: str) -> None:
        self.rows[storage_id] = step_key

    def commit(self, storage_id: int) -> None:
        self.visible.add(storage_id)

    def get_records_for_run(self, run_id: str, cursor: str | None, of_type: Any, limit: int) -> Any:
        after = EventLogCursor.parse(cursor).storage_id() if cursor else 0
        ids = sorted(i for i in self.visible if i > after)[:limit]
        records = [
            SimpleNamespace(
                storage_id=i,
                event_log_entry=SimpleNamespace(
                    dagster_event=SimpleNamespace(
                        step_key=self.rows[i], event_type=DagsterEventType.STEP_SUCCESS
                    )
                ),
            )
            for i in ids
        ]
        newest = ids[-1] if ids else after
        return SimpleNamespace(
            records=records, cursor=EventLogCursor.from_storage_id(newest).to_string()
        )


def _steps(events: list[Any]) -> list[str]:
    return [e.step_key for e in events]


def test_an_event_committed_after_a_later_one_is_found_from_its_launch_cursor() -> None:
    log = _Log()
    tail = EventTail(log, "run")  # type: ignore[arg-type]
    log.insert(1, "seed")
    log.commit(1)
    assert _steps(tail.pop()) == ["seed"]
    launched_at = tail.cursor  # both leaves are launched here
    log.insert(2, "leaf_a")  # inserted first, committed last
    log.insert(3, "leaf_b")
    log.commit(3)
    assert _steps(tail.pop()) == ["leaf_b"]
    log.commit(2)
    assert _steps(tail.pop()) == []  # the plain tail has moved past it for good
    assert _steps(tail.pop_since(launched_at)) == ["leaf_a"]  # nothing returned twice
    assert _steps(tail.pop_since(None)) == []
    log.insert(4, "collect")
    log.commit(4)
    assert _steps(tail.pop()) == ["collect"]  # and the tail goes on from where it was
