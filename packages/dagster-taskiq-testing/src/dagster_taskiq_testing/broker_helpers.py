"""Helpers for broker tests (every backend's, and the conformance suite): messages, listeners, logs.

``step_message`` builds a step message with every dagster-taskiq label (``step_labels_of``, the
labels alone); ``Listener`` keeps one ``listen()`` generator and at most one receive in flight on
it; ``control_of`` is a received message's ``MessageControl``; ``StartedBrokers`` shuts down
every broker a test started; ``debug_logs`` lets every level through to
``structlog.testing.capture_logs``; ``assert_one_setting_problem`` checks that a settings model
refuses a value with a single problem naming the setting and its variable;
``assert_startup_gives_up`` that a broker's startup retries, then names its server without the
password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest
import structlog
from structlog.testing import capture_logs
from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage

from dagster_taskiq.messaging import (
    LABEL_ENQUEUE_ATTEMPT,
    LABEL_IDEMPOTENCY_KEY,
    LABEL_RETRY_NUMBER,
    LABEL_RUN_ID,
    LABEL_STEP_KEY,
    STEP_TASK_NAME,
    DeadLetter,
    MessageControl,
    SupportsDeadLetters,
    SupportsMessageControl,
)

__all__ = [
    "PATIENCE",
    "Listener",
    "StartedBrokers",
    "assert_one_setting_problem",
    "assert_startup_gives_up",
    "control_of",
    "dead_letters",
    "debug_logs",
    "deliver_and_dead_letter",
    "harness_fixture",
    "proxy_fixture",
    "step_labels_of",
    "step_message",
]

_Broker = TypeVar("_Broker", bound=AsyncBroker)
_Harness = TypeVar("_Harness", bound="StartedBrokers")

PATIENCE = 15.0
"""A receive that should succeed gets this long before the test gives up (not a timing claim)."""


def step_message(
    key: str = "run-1:add", *, retry_number: int = 0, enqueue_attempt: int = 0, body: bytes = b""
) -> BrokerMessage:
    """A step message of ``key`` (``run_id:step_key``) with the dagster-taskiq labels."""
    return BrokerMessage(
        task_id=uuid.uuid4().hex,
        task_name=STEP_TASK_NAME,
        message=body or f'{{"step": "{key}"}}'.encode(),
        labels=step_labels_of(key, retry_number=retry_number, enqueue_attempt=enqueue_attempt),
    )


def step_labels_of(key: str, *, retry_number: int = 0, enqueue_attempt: int = 0) -> dict[str, Any]:
    """The labels the executor gives the message of step ``key`` (``run_id:step_key``)."""
    run_id, step = key.split(":", 1)
    return {
        LABEL_IDEMPOTENCY_KEY: key,
        LABEL_RUN_ID: run_id,
        LABEL_STEP_KEY: step,
        LABEL_RETRY_NUMBER: retry_number,
        LABEL_ENQUEUE_ATTEMPT: enqueue_attempt,
    }


def control_of(broker: object, message: AckableMessage) -> MessageControl:
    """The ``MessageControl`` of a message ``broker`` delivered (the test fails without one)."""
    assert isinstance(broker, SupportsMessageControl)
    found = broker.message_control(message)
    assert found is not None
    return found


async def dead_letters(broker: object, *, at_least: int = 1) -> list[DeadLetter]:
    """The broker's dead letters, once there are ``at_least`` (fewer after ``PATIENCE``): a
    letter shows up once the transport has given up on its message (SQS at the next receive,
    Redis at a look of the executor's, JetStream at a later pull)."""
    assert isinstance(broker, SupportsDeadLetters)
    letters: list[DeadLetter] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while len(letters) < at_least and loop.time() < deadline:
        letters += await broker.receive_dead_letters()
        if len(letters) < at_least:
            await asyncio.sleep(0.1)
    return letters


async def deliver_and_dead_letter(run: Any, worker: Any) -> None:
    """What a deployment's run process (``run``) and worker (``worker``, with ``max_deliveries``
    1 and no heartbeat of its own) do with a queue, for tests of their credentials: ``run``
    sends two steps, ``worker`` sees them waiting (its depth metric), acks the first and never
    the second, which becomes ``run``'s dead letter (read and acked)."""
    await run.kick(step_message("run-1:a"))
    await run.kick(step_message("run-1:poison"))
    assert await worker.queue_depths() == {worker.step_queue(): 2}
    messages = Listener(worker)
    first = await messages.receive()
    acked = first.ack()
    if acked is not None:
        await acked
    await messages.receive()  # never acked: its one delivery runs out
    assert await messages.nothing_for(2.5)  # (JetStream gives up on it at a later pull)
    await messages.close()
    [letter] = await dead_letters(run)
    await letter.ack()


class StartedBrokers:
    """The brokers a test started, each shut down by :meth:`close` (one's failure does not
    leave the others open), which then calls :meth:`clean` to delete what they created."""

    def __init__(self) -> None:
        self.brokers: list[AsyncBroker] = []

    async def start(self, broker: _Broker) -> _Broker:
        """``broker``, started and remembered."""
        await broker.startup()
        self.brokers.append(broker)
        return broker

    async def close(self) -> None:
        for broker in self.brokers:
            try:
                await broker.shutdown()
            except Exception as exc:
                logging.getLogger(__name__).warning("shutdown failed: %r", exc)
        await self.clean()

    async def clean(self) -> None:
        """Delete what the test's brokers created on the service (nothing here)."""


def harness_fixture(make: Callable[[], _Harness], require: Callable[[], None]) -> Any:
    """A backend's ``harness`` fixture: ``require()`` (skip, or fail in CI, without the
    service), then ``make()``, closed after the test (its brokers shut down, its queues
    deleted). In a conftest: ``harness = harness_fixture(RedisHarness, require_redis)``."""

    @pytest.fixture
    async def harness() -> AsyncIterator[_Harness]:
        require()
        made = make()
        try:
            yield made
        finally:
            await made.close()

    return harness


def proxy_fixture(url: str) -> Any:
    """A backend's ``proxy`` fixture: a TCP proxy in front of the service at ``url``;
    ``kill()`` cuts every connection, ``start()`` reopens."""
    from dagster_taskiq_testing.servers import EndpointProxy  # noqa: PLC0415 - servers is heavy
    from dagster_taskiq_testing.services import port_of  # noqa: PLC0415

    @pytest.fixture
    def proxy() -> Iterator[EndpointProxy]:
        started = EndpointProxy(port_of(url)).start()
        yield started
        started.kill()

    return proxy


@contextlib.contextmanager
def debug_logs() -> Iterator[None]:
    """Let every level through to ``capture_logs`` (another conftest may filter them)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield
    finally:
        structlog.configure(**saved)


class Listener:
    """One ``listen()`` generator and at most one receive in flight on it.

    Cancelling a receive would close the generator, so a receive that is still waiting stays in
    flight: ``nothing_for`` leaves it there and the next ``receive`` picks its message up.
    """

    def __init__(self, broker: AsyncBroker) -> None:
        self.messages: AsyncGenerator[Any, None] = broker.listen()
        self._next: asyncio.Future[AckableMessage] | None = None

    def _pending(self) -> asyncio.Future[AckableMessage]:
        if self._next is None:
            self._next = asyncio.ensure_future(anext(self.messages))
        return self._next

    async def receive(self) -> AckableMessage:
        pending = self._pending()
        try:
            return await asyncio.wait_for(asyncio.shield(pending), PATIENCE)
        finally:
            if pending.done():
                self._next = None

    async def nothing_for(self, seconds: float) -> bool:
        """True if nothing arrives within ``seconds``."""
        pending = self._pending()
        await asyncio.wait({pending}, timeout=seconds)
        return not pending.done()

    async def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
            # Bounded: a receive that does not end on its cancel (seen once with Redis after a
            # dead letter, not explained yet) must not hang the test; the brokers' shutdown
            # that follows closes their connections.
            await asyncio.wait({self._next}, timeout=PATIENCE)
            if not self._next.done():
                logging.getLogger(__name__).warning("a cancelled receive did not end")
                return
        with contextlib.suppress(RuntimeError):  # a generator still running its receive
            await self.messages.aclose()


def assert_one_setting_problem(
    settings: Callable[..., object],
    error: type[Exception],
    values: Mapping[str, object],
    *,
    field: str,
    env_var: str,
    fragment: str,
) -> None:
    """``settings(**values)`` raises ``error`` with one problem: ``field`` read from ``env_var``,
    a message containing ``fragment``, both named in the error's text."""
    with pytest.raises(error) as raised:
        settings(**values)
    [problem] = raised.value.problems  # type: ignore[attr-defined]
    assert (problem.field, problem.env_var) == (field, env_var)
    assert fragment in problem.message
    assert str(problem).startswith(f"{field} ({env_var}")  # every variable named, first first
    assert str(problem) in str(raised.value)


async def assert_startup_gives_up(
    broker: AsyncBroker, error: type[Exception], *, shown: str, retry_event: str
) -> None:
    """``broker`` (settings: three attempts, a server that is not there, a password
    ``secret``) fails to start with ``error``, whose text shows ``shown`` (the server, its
    password masked) and the three attempts; each retry but the last is logged as
    ``retry_event``."""
    with debug_logs(), capture_logs() as logs, pytest.raises(error) as raised:
        await broker.startup()
    text = str(raised.value)
    assert shown in text
    assert "secret" not in text
    assert "3 attempt(s)" in text
    assert [log["attempt"] for log in logs if log["event"] == retry_event] == [1, 2]
    with contextlib.suppress(Exception):
        await broker.shutdown()
