"""The events a worker's step leaves out of the event log, because they tell the user nothing.

A step run on its own (as every step-per-message executor runs it) logs rows that
``in_process_executor`` logs once per run; writing them costs a worker a database round trip
each, a third of a trivial step's time. Left out, per step:

* ``RESOURCE_INIT_STARTED`` / ``RESOURCE_INIT_SUCCESS`` when the step's resources were ready in
  under ``slow_resource_init`` seconds (0.1 s): the pair only says that the default I/O manager
  was built again. Slower initialisation is worth seeing (a database client, a cluster
  connection, paid again by every step), so the start is held back until the outcome is known
  and both are written, with their own timestamps; a ``RESOURCE_INIT_FAILURE`` is always
  written, after the start it follows.
* ``LOGS_CAPTURED`` on a worker that captures no compute logs (``LogCapture.NONE``): it would
  point the UI at logs that do not exist.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dagster import DagsterEventType

SLOW_RESOURCE_INIT = 0.1
"""Seconds of resource initialisation from which a step's resource events are written."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuietEvents:
    """Which events of a worker's step are not written (the policy; see the module doc)."""

    capture_compute_logs: bool
    slow_resource_init: float = SLOW_RESOURCE_INIT

    def to_write(self, entry: Any, held: list[Any]) -> list[Any]:
        """The entries to write now for ``entry`` (an ``EventLogEntry`` of the step); ``held``
        is the step's own list of entries held back, updated in place."""
        event_type = entry.dagster_event.event_type
        if event_type is DagsterEventType.LOGS_CAPTURED and not self.capture_compute_logs:
            return []
        if event_type is DagsterEventType.RESOURCE_INIT_STARTED:
            held.append(entry)
            return []
        released = held[:]
        held.clear()
        if event_type is DagsterEventType.RESOURCE_INIT_SUCCESS:
            started = released[0].timestamp if released else entry.timestamp
            if entry.timestamp - started < self.slow_resource_init:
                return []
        return [*released, entry]
