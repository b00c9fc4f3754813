"""One stored message and its receipt handles."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dagster_taskiq_testing._ids import new_id


class MessageState(StrEnum):
    """Where a message is in its life, as the inspection helpers report it."""

    VISIBLE = "visible"
    IN_FLIGHT = "in_flight"
    DELAYED = "delayed"


@dataclass(slots=True, eq=False)
class StoredMessage:
    message_id: str
    body: str
    md5_of_body: str
    message_attributes: dict[str, dict[str, Any]]
    md5_of_message_attributes: str | None
    sent_at: float
    visible_at: float
    group_id: str | None = None
    deduplication_id: str | None = None
    sequence_number: str | None = None
    sender_id: str = "AIDAIT2UOQQY3AUEKVGXU"
    trace_header: str | None = None
    dead_letter_source_arn: str | None = None
    receive_count: int = 0
    first_received_at: float | None = None
    last_received_at: float | None = None
    receipt_serial: int = 0
    deleted: bool = False
    size: int = 0
    # Bumped whenever ``visible_at`` changes, so stale timer entries can be recognised.
    version: int = field(default=0)

    def state(self, now: float) -> MessageState:
        if self.visible_at <= now:
            return MessageState.VISIBLE
        return MessageState.IN_FLIGHT if self.receive_count else MessageState.DELAYED


_SEP = "\x1f"


def make_receipt_handle(queue_key: str, message: StoredMessage) -> str:
    """An opaque handle naming the queue, the message and which receive of it this is."""
    raw = _SEP.join((queue_key, message.message_id, str(message.receipt_serial), new_id()))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def parse_receipt_handle(handle: str) -> tuple[str, str, int] | None:
    """``(queue_key, message_id, receipt_serial)``, or ``None`` for a handle we never issued."""
    try:
        raw = base64.urlsafe_b64decode(handle.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    parts = raw.split(_SEP)
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])
