"""Thread and asyncio safety, and long polls woken by sends and by the fake clock."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dagster_taskiq_testing import FakeClock, InMemorySqs


def test_fake_clock_advance_ends_a_waiting_sync_long_poll(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    done = threading.Event()
    results: list[dict[str, object]] = []

    def poll() -> None:
        results.append(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))
        done.set()

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.1)
    sqs_clock.advance(19)
    assert not done.wait(0.2)
    sqs_clock.advance(1)
    assert done.wait(5)
    thread.join()
    assert "Messages" not in results[0]


def test_fake_clock_advance_delivers_a_delayed_message_to_a_waiting_poll(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    sqs = sqs_stub.client()
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=10)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=20)
        time.sleep(0.1)
        assert not future.done()
        sqs_clock.advance(10)
        assert [m["Body"] for m in future.result(timeout=5)["Messages"]] == ["later"]


async def test_async_long_poll_does_not_block_the_loop(
    sqs_stub: InMemorySqs, sqs_clock: FakeClock
) -> None:
    url = sqs_stub.client().create_queue(QueueName="q")["QueueUrl"]
    async with sqs_stub.async_client() as sqs:
        poll = asyncio.create_task(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 5
        assert not poll.done()
        sqs_clock.advance(20)
        response = await asyncio.wait_for(poll, 5)
    assert "Messages" not in response


async def test_async_long_poll_woken_by_a_thread(sqs_stub: InMemorySqs) -> None:
    sync = sqs_stub.client()
    url = sync.create_queue(QueueName="q")["QueueUrl"]
    async with sqs_stub.async_client() as sqs:
        poll = asyncio.create_task(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))
        await asyncio.sleep(0.05)
        threading.Thread(
            target=sync.send_message, kwargs={"QueueUrl": url, "MessageBody": "x"}
        ).start()
        response = await asyncio.wait_for(poll, 5)
    assert [m["Body"] for m in response["Messages"]] == ["x"]


async def test_cancelled_async_long_poll_leaves_no_waiter(sqs_stub: InMemorySqs) -> None:
    url = sqs_stub.client().create_queue(QueueName="q")["QueueUrl"]
    sqs = sqs_stub.async_client()
    poll = asyncio.create_task(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20))
    await asyncio.sleep(0.05)
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    await sqs.send_message(QueueUrl=url, MessageBody="kept")
    received = await sqs.receive_message(QueueUrl=url)
    assert [m["Body"] for m in received["Messages"]] == ["kept"]
    await sqs.close()


def test_threads_and_event_loops_share_one_stub_without_losing_messages() -> None:
    stub = InMemorySqs()
    url = stub.client().create_queue(QueueName="q")["QueueUrl"]
    producers, per_producer = 4, 250
    received: list[str] = []
    lock = threading.Lock()

    def produce(index: int) -> None:
        sqs = stub.client()
        for n in range(per_producer):
            sqs.send_message(QueueUrl=url, MessageBody=f"{index}-{n}")

    def consume_in_thread() -> None:
        sqs = stub.client()
        while True:
            response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = response.get("Messages", [])
            if not messages:
                return
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            with lock:
                received.extend(m["Body"] for m in messages)

    async def consume_async() -> None:
        async with stub.async_client() as sqs:
            while True:
                response = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                messages = response.get("Messages", [])
                if not messages:
                    return
                for message in messages:
                    await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                with lock:
                    received.extend(m["Body"] for m in messages)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    threads += [threading.Thread(target=consume_in_thread) for _ in range(2)]
    threads += [threading.Thread(target=asyncio.run, args=(consume_async(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    expected = sorted(f"{i}-{n}" for i in range(producers) for n in range(per_producer))
    assert sorted(received) == expected
    assert stub.messages("q") == []
