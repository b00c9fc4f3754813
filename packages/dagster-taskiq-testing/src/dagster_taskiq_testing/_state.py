"""The account: its queues by name, their URLs and ARNs. Guarded by ``InMemorySqs``'s lock."""

from __future__ import annotations

from dataclasses import dataclass, field

from dagster_taskiq_testing._clock import Clock
from dagster_taskiq_testing._errors import queue_does_not_exist
from dagster_taskiq_testing._queue import Queue


@dataclass
class AccountState:
    clock: Clock
    region: str
    account_id: str
    endpoint_url: str
    queues: dict[str, Queue] = field(default_factory=dict)
    deleted_at: dict[str, float] = field(default_factory=dict)
    queue_serial: int = 0

    def url_for(self, name: str) -> str:
        return f"{self.endpoint_url}/{self.account_id}/{name}"

    def arn_for(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    def queue(self, url: str) -> Queue:
        """The queue a ``QueueUrl`` names (by its last path segment, as SQS routes it)."""
        name = url.rstrip("/").rsplit("/", 1)[-1]
        queue = self.queues.get(name)
        if queue is None:
            raise queue_does_not_exist()
        return queue

    def queue_by_arn(self, arn: str) -> Queue | None:
        if not arn.startswith(f"arn:aws:sqs:{self.region}:{self.account_id}:"):
            return None
        return self.queues.get(arn.rsplit(":", 1)[-1])

    def next_queue_key(self, name: str) -> str:
        self.queue_serial += 1
        return f"{name}/{self.queue_serial}"
