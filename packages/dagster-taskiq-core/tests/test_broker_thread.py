"""The executor's broker bridge sends wide fan-outs in bounded concurrency, without a batch
deadline (issue 8: a 1,000-step fan-out over moto hit the old 60 s deadline of one batch), and
through a broker's batch send when it has one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence

from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.kicker import AsyncKicker
from taskiq.message import BrokerMessage

from dagster_taskiq import CodePointer, OpExecutionTask, idempotency_key
from dagster_taskiq.executor._broker_thread import (
    BATCH_SEND,
    SEND_CONCURRENCY,
    BrokerThread,
    step_labels,
    step_message,
)
from dagster_taskiq.messaging import (
    LABEL_STEP_KEY,
    STEP_TASK_NAME,
    SupportsBatchSend,
    deduplication_id,
)


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


class BatchBroker(SlowBroker):
    """Records each batch send; single sends as before."""

    def __init__(self) -> None:
        super().__init__(delay=0)
        self.batches: list[list[BrokerMessage]] = []

    async def kick_batch(self, messages: Sequence[BrokerMessage]) -> None:
        self.batches.append(list(messages))
        self.sent.extend(messages)


def test_a_broker_with_batch_sends_gets_the_ready_steps_in_batches() -> None:
    broker = BatchBroker()
    assert isinstance(broker, SupportsBatchSend)
    bridge = BrokerThread(broker)
    try:
        bridge.send(_tasks(120))
        bridge.send(_tasks(1))  # one step: a plain send
    finally:
        bridge.close()
    assert sorted(len(b) for b in broker.batches) == [20, BATCH_SEND, BATCH_SEND]
    assert len(broker.sent) == 121
    assert {m.labels[LABEL_STEP_KEY] for m in broker.sent} == {f"leaf_{n}" for n in range(120)}


def test_a_step_message_is_what_taskiqs_kicker_makes() -> None:
    broker = SlowBroker(delay=0)
    task = _tasks(1)[0]
    kicker: AsyncKicker[[str], None] = AsyncKicker(
        task_name=STEP_TASK_NAME, broker=broker, labels=step_labels(task)
    )
    task_id = deduplication_id(task.idempotency_key, task.retry_number, task.enqueue_attempt)
    asyncio.run(kicker.with_task_id(task_id).kiq(task.to_json()))
    (sent,) = broker.sent
    assert broker.formatter.loads(sent.message) == step_message(task)
