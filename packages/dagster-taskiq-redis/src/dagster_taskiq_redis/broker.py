"""``RedisStreamsBroker``: taskiq-redis's ``RedisStreamBroker`` made safe for dagster-taskiq steps.

It stays a normal TaskIQ ``AsyncBroker`` and keeps taskiq-redis's connection pool, constructor
and ``shutdown``; it replaces the parts whose 1.2.4 behaviour loses, duplicates or delays steps
(see ``docs/design-notes.md``, section "Redis Streams broker"):

* startup creates the stream and the consumer groups from the stream's start (``0``, not
  ``$``: a step sent before any worker started is not skipped), riding out a Redis that is not
  up yet (stamina backoff within the budget);
* sends go through one script that drops an identical resend within ``dedup_window``;
* ``listen()`` is pull-based: one entry per request. Before each read it reclaims an entry idle
  for the visibility timeout (its consumer died) or dead-letters one delivered
  ``max_deliveries`` times, in one atomic script, also when the stream is idle;
* an entry is acked (``XACK`` + ``XDEL``) only by its ``ack``; until then a heartbeat keeps its
  idle time low, and :meth:`message_control` / :meth:`receive_dead_letters` implement the core's
  optional messaging protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from taskiq import AsyncBroker
from taskiq.acks import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from dagster_taskiq import messaging
from dagster_taskiq.messaging import (
    LABEL_QUEUE,
    STEP_LABELS,
    DeadLetter,
    MessageControl,
    hashed_identity,
    step_labels,
    step_log_fields,
)
from dagster_taskiq_redis import scripts
from dagster_taskiq_redis.errors import AckError, DagsterTaskIQRedisError
from dagster_taskiq_redis.retrying import call_with_retry
from dagster_taskiq_redis.settings import RedisSettings

__all__ = ["Delivery", "RedisMessageControl", "RedisStreamsBroker"]

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq_redis")
_DATA = b"data"


def default_consumer_name() -> str:
    """``host:pid:random``: unique per broker, readable in ``XINFO CONSUMERS``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclasses.dataclass(kw_only=True, eq=False)
class Delivery:
    """An entry this broker's consumer holds, from ``listen()`` until it is acked or released."""

    broker: RedisStreamsBroker
    stream: str
    entry_id: str
    deliveries: int | None
    """How many times the group delivered the entry, this delivery included (None if unknown)."""
    step: dict[str, str]
    heartbeat: asyncio.Task[None] | None = None
    """The broker's own idle-time heartbeat, until a caller takes over through the control."""
    settled: str | None = None
    """``"acked"`` or ``"released"`` once it is."""

    def log_fields(self) -> dict[str, Any]:
        return {"stream": self.stream, "entry_id": self.entry_id, "deliveries": self.deliveries}

    async def ack(self) -> None:
        """``XACK`` + ``XDEL`` (the ``ack`` of the message ``listen()`` yielded)."""
        await self.broker._ack(self)


class RedisMessageControl:
    """Extend or release one delivery (``dagster_taskiq.messaging.MessageControl``).

    Redis Streams know no per-message deadline: an entry can be claimed by another consumer once
    its idle time reaches the visibility timeout. ``extend(seconds)`` sets the idle time to
    ``visibility_timeout - seconds`` (at least 0), ``release()`` sets it to the visibility
    timeout. The first call takes the delivery over from the broker's own heartbeat.
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    @property
    def receive_count(self) -> int | None:
        return self.delivery.deliveries

    async def extend_lease(self, seconds: float) -> None:
        broker = self.delivery.broker
        broker.stop_heartbeat(self.delivery)
        idle_ms = max(0, broker.settings.visibility_ms - round(seconds * 1000))
        await broker.set_idle(self.delivery, idle_ms, event="redis_idle_refreshed")

    async def release(self) -> None:
        broker = self.delivery.broker
        broker.stop_heartbeat(self.delivery)
        await broker.set_idle(
            self.delivery, broker.settings.visibility_ms, event="redis_message_released"
        )
        self.delivery.settled = "released"
        broker.forget(self.delivery)


class RedisStreamsBroker(RedisStreamBroker):
    """A TaskIQ broker on one Redis stream and its consumer group (``RedisSettings``).

    The broker listens on ``settings.stream`` and sends there, or to the stream a message's
    ``queue`` label names. The stream belongs to this broker's group: acked entries are deleted.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        block_ms = max(1, round(settings.block_seconds * 1000))
        super().__init__(
            settings.url,
            queue_name=settings.stream,
            max_connection_pool_size=settings.max_connections,
            consumer_group_name=settings.group,
            consumer_name=settings.consumer_name or default_consumer_name(),
            consumer_id="0",
            mkstream=True,
            xread_block=block_ms,
            maxlen=None,  # trimming would delete entries still pending: lost steps
            idle_timeout=settings.visibility_ms,
            unacknowledged_batch_size=settings.reclaim_scan,
            xread_count=1,
            socket_connect_timeout=settings.connect_timeout,
            socket_timeout=settings.block_seconds + settings.connect_timeout + 5,
            retry=Retry(NoBackoff(), 0),  # our retries (stamina) are the only layer
        )
        self._redis: Redis | None = None
        self._deliveries: dict[str, Delivery] = {}
        self._heartbeats: set[asyncio.Task[None]] = set()
        self._check_own_history = True
        self.server = settings.redacted_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stream={self.settings.stream!r}, url={self.server!r})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Connect (with backoff) and create the stream and its groups if missing."""
        self._redis = Redis(connection_pool=self.connection_pool)
        self._scripts = {
            name: self._redis.register_script(getattr(scripts, name))
            for name in ("KICK", "RECLAIM", "KEEP", "ACK", "DELETE_IDLE_CONSUMER")
        }
        await self._call("ping", self._require_redis().ping)
        await self._create_group(self.settings.stream, self.settings.group)
        dead = self.settings.dead_letters
        if dead is not None:
            await self._create_group(dead, self.settings.dead_letter_group)
        _log.info(
            "redis_broker_started",
            stream=self.settings.stream,
            group=self.settings.group,
            consumer=self.consumer_name,
            dead_letter_stream=dead,
            server=self.server,
            worker=self.is_worker_process,
        )
        await AsyncBroker.startup(self)

    async def _create_group(self, stream: str, group: str) -> None:
        async def create() -> None:
            try:
                await self._require_redis().xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._call("xgroup_create", create, stream=stream)

    async def shutdown(self) -> None:
        """Stop heartbeats, leave the group if holding nothing, close the pool."""
        for delivery in list(self._deliveries.values()):
            self.stop_heartbeat(delivery)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._scripts["DELETE_IDLE_CONSUMER"](
                    keys=[self.settings.stream],
                    args=[self.settings.group, self.consumer_name],
                )
        self._redis = None
        await super().shutdown()

    def _require_redis(self) -> Redis:
        if self._redis is None:
            raise DagsterTaskIQRedisError(
                f"{self!r} is not started: await broker.startup() before using it"
            )
        return self._redis

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]], **fields: Any) -> _T:
        fields.setdefault("stream", self.settings.stream)
        stream = fields.pop("stream")
        return await call_with_retry(
            operation,
            call,
            budget=self.settings.retry_budget,
            server=self.server,
            stream=stream,
            **fields,
        )

    # --- sending -----------------------------------------------------------------------------

    async def kick(self, message: BrokerMessage) -> None:
        """Append the message to its stream, unless an identical one was sent within the
        deduplication window (same step key, retry number and enqueue attempt)."""
        self._require_redis()
        stream = str(message.labels.get(LABEL_QUEUE) or self.settings.stream)
        step = step_labels(message.labels)
        dedup_key = f"{stream}:dedup:{hashed_identity(step, message.task_id)}"
        fields: list[Any] = [_DATA, message.message, b"task_id", message.task_id]
        for name, value in step.items():
            fields += [name, value]
        window_ms = round(self.settings.dedup_window * 1000)
        entry_id = await self._call(
            "xadd",
            lambda: self._scripts["KICK"](keys=[stream, dedup_key], args=[window_ms, *fields]),
            stream=stream,
        )
        if entry_id is None:
            _log.info(
                "redis_duplicate_dropped",
                stream=stream,
                task_id=message.task_id,
                **step_log_fields(step),
            )
            return
        _log.debug(
            "redis_message_sent",
            stream=stream,
            entry_id=_text(entry_id),
            task_id=message.task_id,
            **step_log_fields(step),
        )

    # --- receiving ---------------------------------------------------------------------------

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Yield one entry per request: a reclaimed one first, else a new one.

        Entries this consumer holds but never yielded (a read cut short when the consumer
        closed the generator) are released for other consumers at once.
        """
        try:
            while True:
                received = await self._receive_one()
                if received is None:
                    continue
                delivery, body = received
                yield AckableMessage(data=body, ack=delivery.ack)
        finally:
            with contextlib.suppress(Exception):
                await self._release_unyielded()

    async def _receive_one(self) -> tuple[Delivery, bytes] | None:
        claimed, dead = await self._call("reclaim", lambda: self._reclaim(want=1))
        if dead:
            _log.warning(
                "redis_dead_lettered", dead_letter_stream=self.settings.dead_letters, count=dead
            )
        if claimed:
            entry_id, fields, deliveries = claimed[0]
            delivery = self._deliver(_text(entry_id), _field_map(fields), int(deliveries))
            _log.info(
                "redis_message_reclaimed", **delivery.log_fields(), **step_log_fields(delivery.step)
            )
            return delivery, _field_map(fields).get(_DATA, b"")
        entry = await self._call("xreadgroup", self._read)
        if entry is None:
            return None
        entry_id, fields, deliveries = entry
        delivery = self._deliver(entry_id, fields, deliveries)
        _log.debug(
            "redis_message_received", **delivery.log_fields(), **step_log_fields(delivery.step)
        )
        return delivery, fields.get(_DATA, b"")

    async def _reclaim(self, *, want: int) -> tuple[list[Any], int]:
        dead = self.settings.dead_letters
        result = await self._scripts["RECLAIM"](
            keys=[self.settings.stream, dead or f"{self.settings.stream}-unused-dlq"],
            args=[
                self.settings.group,
                self.consumer_name,
                self.settings.visibility_ms,
                self.settings.max_deliveries,
                1 if dead else 0,
                want,
                self.settings.reclaim_scan,
            ],
        )
        return list(result[0] or []), int(result[1])

    async def _read(self) -> tuple[str, dict[bytes, bytes], int | None] | None:
        """The next new entry (blocking up to ``block_seconds``). After a failed read, or at
        the start, first the entries this consumer holds from before (a read whose reply was
        lost, a restarted consumer of the same name): those are not delivered again by ``>``."""
        redis = self._require_redis()
        stream = self.settings.stream
        try:
            if self._check_own_history:
                own: Any = await redis.xreadgroup(
                    self.settings.group,
                    self.consumer_name,
                    {stream: "0"},
                    count=self.settings.reclaim_scan,
                )
                for _, entries in own or []:
                    for entry_id, fields in entries:
                        key = _text(entry_id)
                        if key not in self._deliveries and fields:
                            return key, _field_map(fields), None
                self._check_own_history = False
            fetched: Any = await redis.xreadgroup(
                self.settings.group,
                self.consumer_name,
                {stream: ">"},
                count=1,
                block=self.block,
            )
        except BaseException:
            self._check_own_history = True
            raise
        for _, entries in fetched or []:
            for entry_id, fields in entries:
                return _text(entry_id), _field_map(fields), 1
        return None

    def _deliver(
        self, entry_id: str, fields: dict[bytes, bytes], deliveries: int | None
    ) -> Delivery:
        step = {
            name: _text(fields[name.encode()]) for name in STEP_LABELS if name.encode() in fields
        }
        delivery = Delivery(
            broker=self,
            stream=self.settings.stream,
            entry_id=entry_id,
            deliveries=deliveries,
            step=step,
        )
        self._deliveries[entry_id] = delivery
        if self.settings.dead_letters and (deliveries or 0) >= self.settings.max_deliveries:
            _log.warning(
                "redis_last_delivery_before_dead_letter_stream",
                max_deliveries=self.settings.max_deliveries,
                **delivery.log_fields(),
            )
        if self.settings.heartbeat_enabled:
            delivery.heartbeat = messaging.start_heartbeat(
                self._heartbeats, self._heartbeat(delivery)
            )
        return delivery

    async def _release_unyielded(self) -> None:
        """Release the entries this consumer holds without a live delivery."""
        redis = self._require_redis()
        pending = await redis.xpending_range(
            self.settings.stream,
            self.settings.group,
            min="-",
            max="+",
            count=self.settings.reclaim_scan,
            consumername=self.consumer_name,
        )
        for item in pending:
            entry_id = _text(item["message_id"])
            if entry_id in self._deliveries:
                continue
            await self._scripts["KEEP"](
                keys=[self.settings.stream],
                args=[
                    self.settings.group,
                    entry_id,
                    self.consumer_name,
                    self.settings.visibility_ms,
                ],
            )
            _log.info("redis_message_released", stream=self.settings.stream, entry_id=entry_id)

    # --- acknowledgement, idle time ----------------------------------------------------------

    async def _ack(self, delivery: Delivery) -> None:
        if delivery.settled == "acked":
            return
        if delivery.settled == "released":
            raise AckError(
                f"entry {delivery.entry_id} of stream {delivery.stream!r} was released; acking "
                f"it now could delete another consumer's delivery"
            )
        self.stop_heartbeat(delivery)
        was_pending = await self._call(
            "ack",
            lambda: self._scripts["ACK"](
                keys=[delivery.stream], args=[self.settings.group, delivery.entry_id]
            ),
        )
        delivery.settled = "acked"
        self.forget(delivery)
        if not was_pending:
            _log.warning(
                "redis_ack_not_pending",
                reason="already acked (claimed and acked by another consumer?)",
                **delivery.log_fields(),
            )
        _log.debug("redis_message_acked", **delivery.log_fields(), **step_log_fields(delivery.step))

    def message_control(self, message: AckableMessage) -> MessageControl | None:
        """Extend / release an entry this broker's ``listen()`` yielded (else None)."""
        delivery = messaging.yielded_delivery(message, Delivery, self)
        return None if delivery is None else RedisMessageControl(delivery)

    def stop_heartbeat(self, delivery: Delivery) -> None:
        """Stop the broker's own heartbeat of ``delivery`` (idempotent)."""
        messaging.stop_heartbeat(delivery)

    def forget(self, delivery: Delivery) -> None:
        self._deliveries.pop(delivery.entry_id, None)

    async def set_idle(self, delivery: Delivery, idle_ms: int, *, event: str) -> None:
        """Set the idle time of an entry this consumer holds; ``AckError`` if it does not."""
        if delivery.settled is not None:
            raise AckError(
                f"entry {delivery.entry_id} of stream {delivery.stream!r} is already "
                f"{delivery.settled}"
            )
        held = await self._call(
            "xclaim",
            lambda: self._scripts["KEEP"](
                keys=[delivery.stream],
                args=[self.settings.group, delivery.entry_id, self.consumer_name, idle_ms],
            ),
        )
        if not held:
            raise AckError(
                f"entry {delivery.entry_id} of stream {delivery.stream!r} is no longer pending "
                f"for consumer {self.consumer_name!r} (claimed by another consumer after its "
                f"visibility timeout, or acked)"
            )
        _log.debug(event, idle_ms=idle_ms, **delivery.log_fields())

    async def _heartbeat(self, delivery: Delivery) -> None:
        await messaging.heartbeat_loop(
            self.settings.heartbeat_every,
            lambda: self.set_idle(delivery, 0, event="redis_idle_refreshed"),
            stop_on=AckError,
            logger=_log,
            event_prefix="redis",
            log_fields=delivery.log_fields,
        )

    # --- dead letters ------------------------------------------------------------------------

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` entries of the dead-letter stream (none without one).

        First moves entries past ``max_deliveries`` whose consumer is gone (so a run whose
        workers all died still learns of them). Each letter stays pending for this reader until
        its ``ack`` (``XACK`` + ``XDEL``); one left unacked is handed out again after the
        visibility timeout.
        """
        dead = self.settings.dead_letters
        if dead is None:
            return []
        _, moved = await self._call("reclaim", lambda: self._reclaim(want=0))
        if moved:
            _log.warning("redis_dead_lettered", dead_letter_stream=dead, count=moved)
        redis = self._require_redis()
        group, consumer = self.settings.dead_letter_group, self.consumer_name
        count = max(1, max_messages)

        async def read() -> list[tuple[Any, Any]]:
            _, again, *_ = await redis.xautoclaim(
                dead, group, consumer, self.settings.visibility_ms, "0-0", count=count
            )
            entries = list(again)
            if len(entries) < count:
                fresh: Any = await redis.xreadgroup(
                    group, consumer, {dead: ">"}, count=count - len(entries)
                )
                for _, more in fresh or []:
                    entries += list(more)
            return entries

        letters = []
        for entry_id, raw in await self._call("xreadgroup", read, stream=dead):
            if not raw:
                continue
            fields = _field_map(raw)
            step = {n: _text(fields[n.encode()]) for n in STEP_LABELS if n.encode() in fields}
            count_text = fields.get(b"dead_deliveries")
            log = {
                "stream": self.settings.stream,
                "dead_letter_stream": dead,
                "entry_id": _text(fields.get(b"dead_source_id", b"")) or None,
                "deliveries": int(count_text) if count_text else None,
                **step_log_fields(step),
            }
            _log.warning("redis_dead_letter_received", **log)
            letters.append(
                DeadLetter(
                    body=fields.get(_DATA, b""),
                    receive_count=log["deliveries"],
                    message_id=log["entry_id"],
                    ack=self._dead_letter_ack(dead, _text(entry_id), log),
                )
            )
        return letters

    def _dead_letter_ack(
        self, dead: str, entry_id: str, fields: dict[str, Any]
    ) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            await self._call(
                "ack",
                lambda: self._scripts["ACK"](
                    keys=[dead], args=[self.settings.dead_letter_group, entry_id]
                ),
                stream=dead,
            )
            _log.info("redis_dead_letter_acked", **fields)

        return ack


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field_map(fields: Any) -> dict[bytes, bytes]:
    """An entry's fields as a dict: redis-py gives a dict; a script gives a flat list."""
    if isinstance(fields, dict):
        return {_bytes(k): _bytes(v) for k, v in fields.items()}
    flat = list(fields or [])
    return {_bytes(flat[i]): _bytes(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
