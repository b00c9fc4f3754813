"""Long polling: a receive waiting up to 20 s returns as soon as a message arrives."""

from __future__ import annotations

import asyncio
import threading
import time

from dagster_taskiq_testing.sqs_emulators import SqsEmulator


def test_long_poll_returns_when_another_thread_sends(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("poll-thread")
    sender = emulator.client()

    def send_later() -> None:
        time.sleep(0.3)
        sender.send_message(QueueUrl=url, MessageBody="wake")

    thread = threading.Thread(target=send_later)
    started = time.monotonic()
    thread.start()
    response = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
    elapsed = time.monotonic() - started
    thread.join()
    assert [m["Body"] for m in response["Messages"]] == ["wake"]
    assert elapsed < 10


async def test_long_poll_returns_when_another_task_sends(emulator: SqsEmulator) -> None:
    url = emulator.create_queue("poll-task")
    async with emulator.async_client() as sqs:

        async def send_later() -> None:
            await asyncio.sleep(0.3)
            await sqs.send_message(QueueUrl=url, MessageBody="wake")

        started = time.monotonic()
        sender = asyncio.create_task(send_later())
        response = await sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)
        elapsed = time.monotonic() - started
        await sender
    assert [m["Body"] for m in response["Messages"]] == ["wake"]
    assert elapsed < 10


def test_long_poll_returns_empty_when_the_wait_ends(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("poll-empty")
    result: dict[str, object] = {}

    def receive() -> None:
        result["response"] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)

    thread = threading.Thread(target=receive)
    thread.start()
    if emulator.clock is not None:
        time.sleep(0.1)
        emulator.clock.advance(1)
    thread.join(timeout=10)
    assert not thread.is_alive()
    response = result["response"]
    assert isinstance(response, dict)
    assert "Messages" not in response


def test_queue_receive_wait_time_is_the_default_wait(emulator: SqsEmulator) -> None:
    sqs = emulator.client()
    url = emulator.create_queue("poll-default", ReceiveMessageWaitTimeSeconds=20)
    sender = emulator.client()
    timer = threading.Timer(0.3, lambda: sender.send_message(QueueUrl=url, MessageBody="w"))
    timer.start()
    response = sqs.receive_message(QueueUrl=url)
    timer.join()
    assert [m["Body"] for m in response["Messages"]] == ["w"]
