"""A minimal thread-safe TaskIQ broker for core tests: a shared queue, acks recorded.

It keeps no SQS semantics (no visibility timeout); the SQS-shaped stub lives in
dagster-taskiq-testing. Here it only carries messages between the executor's thread and
in-process workers.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncGenerator

from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage


class ThreadQueueBroker(AsyncBroker):
    def __init__(self) -> None:
        super().__init__()
        self.queue: queue.Queue[bytes] = queue.Queue()
        self.sent: list[BrokerMessage] = []
        self.acked = 0

    async def kick(self, message: BrokerMessage) -> None:
        self.sent.append(message)
        self.queue.put(message.message)

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        while True:
            try:
                data = await asyncio.to_thread(self.queue.get, True, 0.05)
            except queue.Empty:
                continue

            async def ack() -> None:
                self.acked += 1

            yield AckableMessage(data=data, ack=ack)
