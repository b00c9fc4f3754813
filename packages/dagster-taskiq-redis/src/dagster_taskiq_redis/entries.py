"""A stream entry as the broker writes and reads it: the body under ``data``, the task id, and
the step labels as fields beside it (readable without decoding the body); the consumer name."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from dagster_taskiq.messaging import STEP_LABELS

__all__ = ["DATA", "default_consumer_name", "field_map", "step_of", "text"]

DATA = b"data"
"""The field holding the message body."""


def default_consumer_name() -> str:
    """``host:pid:random``: unique per broker, readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def step_of(fields: dict[bytes, bytes]) -> dict[str, str]:
    """The step labels an entry carries as fields beside its body."""
    return {name: text(fields[name.encode()]) for name in STEP_LABELS if name.encode() in fields}


def text(value: Any) -> str:
    """A Redis reply value (bytes or not) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def field_map(fields: Any) -> dict[bytes, bytes]:
    """An entry's fields as a dict: redis-py gives a dict; a script gives a flat list."""
    if isinstance(fields, dict):
        return {as_bytes(k): as_bytes(v) for k, v in fields.items()}
    flat = list(fields or [])
    return {as_bytes(flat[i]): as_bytes(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
