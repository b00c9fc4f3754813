"""What tests see of the stub: read-only views of messages and a log of calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dagster_taskiq_testing._message import MessageState, StoredMessage


@dataclass(frozen=True, slots=True)
class MessageView:
    """A snapshot of one message in a queue."""

    message_id: str
    body: str
    state: MessageState
    receive_count: int
    sent_at: float
    visible_at: float
    message_attributes: dict[str, dict[str, Any]]
    group_id: str | None
    deduplication_id: str | None
    sequence_number: str | None
    dead_letter_source_arn: str | None

    @classmethod
    def of(cls, message: StoredMessage, now: float) -> MessageView:
        return cls(
            message_id=message.message_id,
            body=message.body,
            state=message.state(now),
            receive_count=message.receive_count,
            sent_at=message.sent_at,
            visible_at=message.visible_at,
            message_attributes={k: dict(v) for k, v in message.message_attributes.items()},
            group_id=message.group_id,
            deduplication_id=message.deduplication_id,
            sequence_number=message.sequence_number,
            dead_letter_source_arn=message.dead_letter_source_arn,
        )


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One client call: the operation (boto3's snake_case name), its parameters and outcome."""

    operation: str
    params: dict[str, Any]
    at: float
    response: dict[str, Any] | None = None
    error_code: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None
