"""The Dagster instance a step writes to: its reference in payloads, and the store's default."""

from __future__ import annotations

import enum
import json
import os
import threading
from typing import Any

from dagster import DagsterInstance, deserialize_value, serialize_value

from dagster_taskiq._dagster_compat import (
    InstanceRef,
    with_python_log_handlers_once,
    with_step_thread_logs,
    without_compute_log_capture,
)
from dagster_taskiq.errors import DagsterTaskIQError

__all__ = ["LogCapture", "default_store_url", "instance_from_ref", "instance_ref_payload"]

STORE_FILE = os.path.join("dagster_taskiq", "idempotency.db")


def instance_ref_payload(instance: DagsterInstance) -> dict[str, Any]:
    """The instance's ``InstanceRef`` as a JSON object (Dagster's own serialization)."""
    ref = instance.get_ref()
    encoded: dict[str, Any] = json.loads(serialize_value(ref))
    return encoded


POOL_RECYCLE = 3600
"""Seconds after which a worker's Dagster storage connection is replaced."""
POOL_OVERFLOW = 20
"""Connections a worker's Dagster storage opens beyond its one kept open, when steps write at
once (closed again when returned)."""


class LogCapture(enum.Enum):
    """How a worker's Dagster instance captures its steps' stdout/stderr."""

    THREAD = "thread"
    """Per step thread, into the instance's compute log manager's files
    (``worker/_step_logs.py``): thread workers."""
    PROCESS = "process"
    """Dagster's own capture (it redirects the process's file descriptors): one step per
    process, ``--isolation subprocess``."""
    NONE = "none"
    """Not captured: the worker's own stdout/stderr get it."""


_instances: dict[tuple[str, LogCapture], DagsterInstance] = {}
_instances_lock = threading.Lock()


def instance_from_ref(
    payload: dict[str, Any], *, log_capture: LogCapture = LogCapture.THREAD
) -> DagsterInstance:
    """Open (once per process, then reuse) the instance an ``instance_ref`` payload names.

    ``log_capture`` says how its steps' stdout/stderr are captured (:class:`LogCapture`;
    Dagster's own capture redirects the whole process and is unsafe across threads). The
    instance's storages keep their database connection open (``optimize_for_webserver``).
    """
    text = json.dumps(payload, sort_keys=True)
    with _instances_lock:
        instance = _instances.get((text, log_capture))
        if instance is None:
            try:
                ref = deserialize_value(text, InstanceRef)
            except Exception as exc:
                raise DagsterTaskIQError(
                    f"instance_ref is not a Dagster InstanceRef: {exc}"
                ) from exc
            if log_capture is LogCapture.THREAD:
                ref = with_step_thread_logs(ref)
            elif log_capture is LogCapture.NONE:
                ref = without_compute_log_capture(ref)
            instance = with_python_log_handlers_once(DagsterInstance.from_ref(ref))
            # A worker is a long-lived process, as Dagster's webserver is: its storages keep a
            # connection open instead of opening one per statement (dagster-postgres's default
            # outside the webserver). No statement timeout: a step's writes are not bounded.
            instance.optimize_for_webserver(
                statement_timeout=0, pool_recycle=POOL_RECYCLE, max_overflow=POOL_OVERFLOW
            )
            _instances[(text, log_capture)] = instance
        return instance


def default_store_url(instance: DagsterInstance) -> str:
    """SQLite in the instance's storage directory: the embedded default store."""
    try:
        root = instance.root_directory
    except Exception as exc:  # an instance with no local directory (e.g. ephemeral)
        raise DagsterTaskIQError(
            "the Dagster instance has no local directory for the default SQLite idempotency "
            "store: set the executor's 'store_url' (and the workers' --store-url)"
        ) from exc
    path = os.path.join(root, STORE_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return f"sqlite:///{path}"
