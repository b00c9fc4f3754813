"""The executor's broker bridge sends wide fan-outs in bounded concurrency, without a batch
deadline (issue 8: a 1,000-step fan-out over moto hit the old 60 s deadline of one batch)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage

from dagster_taskiq import CodePointer, OpExecutionTask, idempotency_key
from dagster_taskiq.executor._broker_thread import SEND_CONCURRENCY, BrokerThread
from dagster_taskiq.messaging import LABEL_STEP_KEY


class SlowBroker(AsyncBroker):
    """Each send takes ``delay`` seconds; records how many were in flight at once."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: list[BrokerMessage] = []

    async def kick(self, message: BrokerMessage) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        self.sent.append(message)

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:  # pragma: no cover
        raise NotImplementedError
        yield


def _tasks(count: int) -> list[OpExecutionTask]:
    return [
        OpExecutionTask(
            run_id="r",
            step_key=f"leaf_{n}",
            idempotency_key=idempotency_key("r", f"leaf_{n}"),
            code=CodePointer(job_name="j", module="m"),
            instance_ref={},
            created_at=time.time(),
        )
        for n in range(count)
    ]


def test_a_batch_longer_than_the_send_timeout_is_sent_in_bounded_concurrency() -> None:
    broker = SlowBroker(delay=0.05)
    bridge = BrokerThread(broker, send_timeout=1.0)
    try:
        # 400 sends, 16 at a time, 0.05 s each: about 1.25 s in all, longer than the per-send
        # timeout; every send finishes well within it.
        bridge.send(_tasks(400))
    finally:
        bridge.close()
    assert len(broker.sent) == 400
    assert broker.most_in_flight == SEND_CONCURRENCY
    labels = {m.labels[LABEL_STEP_KEY] for m in broker.sent}
    assert labels == {f"leaf_{n}" for n in range(400)}
