"""``RedisBroker``: the Redis Streams transport of dagster-taskiq, on taskiq-redis.

It stays a normal TaskIQ ``AsyncBroker`` and keeps taskiq-redis's connection pool, constructor
and ``shutdown``; what every backend does with a received message (deliveries, acks, leases,
heartbeat, dead-letter logging) is core's :class:`~dagster_taskiq.brokers.BrokerBase`. This
module is Redis's part (why each replaces a taskiq-redis 1.2.4 behaviour: ``docs/design-notes.md``,
section "Redis Streams broker"):

* startup creates the stream and the consumer groups from the stream's start (``0``, not
  ``$``: a step sent before any worker started is not skipped);
* sends go through one script that drops an identical resend within ``dedup_window``;
* a receive first reclaims an entry idle for the visibility timeout (its consumer died) or
  dead-letters one delivered ``max_deliveries`` times, in one atomic script, then reads one;
* ack is ``XACK`` + ``XDEL``; a lease is the entry's idle time (``XCLAIM ... IDLE``, checked in
  the same script that this consumer still owns it); release sets it to the visibility timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from taskiq import AsyncBroker
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

from dagster_taskiq.brokers import BrokerBase, Delivery
from dagster_taskiq.errors import AckError
from dagster_taskiq.messaging import (
    LABEL_QUEUE,
    DeadLetter,
    hashed_identity,
    step_labels,
    step_log_fields,
)
from dagster_taskiq_redis import scripts
from dagster_taskiq_redis.entries import DATA, default_consumer_name, field_map, step_of, text
from dagster_taskiq_redis.errors import DagsterTaskIQRedisError, RedisUnavailableError, is_transient
from dagster_taskiq_redis.settings import RedisSettings

__all__ = ["RedisBroker"]

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq_redis")


class RedisBroker(BrokerBase, RedisStreamBroker):
    """A TaskIQ broker on one Redis stream and its consumer group (``RedisSettings``).

    The broker listens on ``settings.stream`` and sends there, or to the stream a message's
    ``queue`` label names. The stream belongs to this broker's group: acked entries are deleted.
    """

    settings: RedisSettings

    event_prefix = "redis"
    service = "Redis"
    target_fields = ("server", "stream")
    unavailable_error = RedisUnavailableError
    is_transient = staticmethod(is_transient)

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
        self._hold_deliveries(settings.delivery_policy())
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
        dead = self.settings.dead_letter_queue
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

        await self._call("xgroup_create", create, queue=stream)

    async def shutdown(self) -> None:
        """Stop heartbeats, leave the group if holding nothing, close the pool."""
        self.stop_heartbeats()
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

    async def _queue_depth(self) -> int:
        """The group's lag (entries not yet read by it), else the stream's length."""
        redis, stream = self._require_redis(), self.settings.stream
        groups = await self._call("xinfo_groups", lambda: redis.xinfo_groups(stream))
        for group in groups:
            if text(group["name"]) == self.settings.group and group.get("lag") is not None:
                return int(group["lag"])
        return int(await self._call("xlen", lambda: redis.xlen(stream)))

    # --- sending -----------------------------------------------------------------------------

    async def kick(self, message: BrokerMessage) -> None:
        """Append the message to its stream, unless an identical one was sent within the
        deduplication window (same step key, retry number and enqueue attempt)."""
        self._require_redis()
        stream = self.settings.step_queue(message.labels.get(LABEL_QUEUE))
        step = step_labels(message.labels)
        dedup_key = f"{stream}:dedup:{hashed_identity(step, message.task_id)}"
        fields: list[Any] = [DATA, message.message, b"task_id", message.task_id]
        for name, value in step.items():
            fields += [name, value]
        window_ms = round(self.settings.deduplication_window * 1000)
        entry_id = await self._call(
            "xadd",
            lambda: self._scripts["KICK"](keys=[stream, dedup_key], args=[window_ms, *fields]),
            queue=stream,
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
            entry_id=text(entry_id),
            task_id=message.task_id,
            **step_log_fields(step),
        )

    # --- receiving ---------------------------------------------------------------------------

    async def _receive(self) -> list[Delivery]:
        """One entry: a reclaimed one first (its consumer died), else a new one."""
        claimed, dead = await self._call("reclaim", lambda: self._reclaim(want=1))
        if dead:
            _log.warning(
                "redis_dead_lettered", dead_letter_queue=self.settings.dead_letter_queue, count=dead
            )
        if claimed:
            entry_id, fields, deliveries = claimed[0]
            delivery = self._deliver(text(entry_id), field_map(fields), int(deliveries))
            _log.info("redis_message_reclaimed", **delivery.log_fields())
            return [delivery]
        entry = await self._call("xreadgroup", self._read)
        if entry is None:
            return []
        return [self._deliver(*entry)]

    async def _reclaim(self, *, want: int) -> tuple[list[Any], int]:
        dead = self.settings.dead_letter_queue
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
                        key = text(entry_id)
                        if key not in self._deliveries and fields:
                            return key, field_map(fields), None
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
                return text(entry_id), field_map(fields), 1
        return None

    def _deliver(
        self, entry_id: str, fields: dict[bytes, bytes], deliveries: int | None
    ) -> Delivery:
        return self._hold(
            Delivery(
                broker=self,
                queue=self.settings.stream,
                handle=entry_id,
                message_id=entry_id,
                receive_count=deliveries,
                step=step_of(fields),
                body=fields.get(DATA, b""),
            )
        )

    async def _release_unyielded(self, deliveries: list[Delivery]) -> None:
        """Release what was received and not yielded, and the entries this consumer holds
        without a live delivery (a read cut short when the consumer closed the generator)."""
        await super()._release_unyielded(deliveries)
        with contextlib.suppress(Exception):
            await self._release_pending()

    async def _release_pending(self) -> None:
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
            entry_id = text(item["message_id"])
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

    async def _delete(self, delivery: Delivery) -> None:
        was_pending = await self._call(
            "ack",
            lambda: self._scripts["ACK"](
                keys=[delivery.queue], args=[self.settings.group, delivery.handle]
            ),
        )
        if not was_pending:
            _log.warning(
                "redis_ack_not_pending",
                reason="already acked (claimed and acked by another consumer?)",
                **delivery.log_fields(),
            )

    async def _extend(self, delivery: Delivery, seconds: float) -> float:
        # No per-message deadline: the entry may be claimed once its idle time reaches the
        # visibility timeout, so a lease of ``seconds`` is an idle time of timeout - seconds.
        await self._set_idle(delivery, max(0, self.settings.visibility_ms - round(seconds * 1000)))
        return seconds

    async def _give_back(self, delivery: Delivery) -> None:
        await self._set_idle(delivery, self.settings.visibility_ms)

    async def _set_idle(self, delivery: Delivery, idle_ms: int) -> None:
        """Set the idle time of an entry this consumer holds; ``AckError`` if it does not."""
        held = await self._call(
            "xclaim",
            lambda: self._scripts["KEEP"](
                keys=[delivery.queue],
                args=[self.settings.group, delivery.handle, self.consumer_name, idle_ms],
            ),
        )
        if not held:
            raise AckError(
                f"{delivery.describe()} is no longer pending for consumer "
                f"{self.consumer_name!r} (claimed by another consumer after its visibility "
                f"timeout, or acked)"
            )

    # --- dead letters ------------------------------------------------------------------------

    async def receive_dead_letters(self, max_messages: int = 10) -> list[DeadLetter]:
        """Up to ``max_messages`` entries of the dead-letter stream (none without one).

        First moves entries past ``max_deliveries`` whose consumer is gone (so a run whose
        workers all died still learns of them). Each letter stays pending for this reader until
        its ``ack`` (``XACK`` + ``XDEL``); one left unacked is handed out again after the
        visibility timeout.
        """
        dead = self.settings.dead_letter_queue
        if dead is None:
            return []
        _, moved = await self._call("reclaim", lambda: self._reclaim(want=0))
        if moved:
            _log.warning("redis_dead_lettered", dead_letter_queue=dead, count=moved)
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
        for entry_id, raw in await self._call("xreadgroup", read, queue=dead):
            if raw:
                fields = field_map(raw)
                deliveries = fields.get(b"dead_deliveries")
                letters.append(
                    self._dead_letter(
                        body=fields.get(DATA, b""),
                        message_id=text(fields.get(b"dead_source_id", b"")) or None,
                        receive_count=int(deliveries) if deliveries else None,
                        step=step_of(fields),
                        delete=self._dead_letter_delete(dead, text(entry_id)),
                    )
                )
        return letters

    def _dead_letter_delete(self, dead: str, entry_id: str) -> Callable[[], Awaitable[Any]]:
        group = self.settings.dead_letter_group
        return lambda: self._call(
            "ack", lambda: self._scripts["ACK"](keys=[dead], args=[group, entry_id]), queue=dead
        )
