"""A standard queue: storage, visibility, delays, retention and dead-lettering."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping

from dagster_taskiq_testing._attributes import RedrivePolicy, parse_redrive_policy
from dagster_taskiq_testing._message import MessageState, StoredMessage

_tiebreak = itertools.count()


class Queue:
    """One SQS queue's messages and attributes. Not thread-safe: the account's lock guards it."""

    fifo = False

    def __init__(
        self,
        *,
        name: str,
        url: str,
        arn: str,
        key: str,
        attributes: Mapping[str, str],
        created_at: float,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.arn = arn
        self.key = key
        self.created_at = created_at
        self.last_modified_at = created_at
        self.last_purged_at: float | None = None
        self.tags: dict[str, str] = dict(tags or {})
        self.attributes: dict[str, str] = {}
        self.visibility_timeout = 30
        self.delay_seconds = 0
        self.maximum_message_size = 0
        self.retention_period = 0
        self.receive_wait_time = 0
        self.redrive_policy: RedrivePolicy | None = None
        self._messages: dict[str, StoredMessage] = {}
        self._visible: dict[str, StoredMessage] = {}
        self._hidden: dict[str, StoredMessage] = {}
        self._timers: list[tuple[float, int, int, StoredMessage]] = []
        self.set_attributes(attributes, now=created_at)

    # -- attributes -------------------------------------------------------------------------

    def set_attributes(self, values: Mapping[str, str], *, now: float) -> None:
        self.attributes.update(values)
        if self.attributes.get("RedrivePolicy") == "":
            del self.attributes["RedrivePolicy"]
        self.visibility_timeout = int(self.attributes["VisibilityTimeout"])
        self.delay_seconds = int(self.attributes["DelaySeconds"])
        self.maximum_message_size = int(self.attributes["MaximumMessageSize"])
        self.retention_period = int(self.attributes["MessageRetentionPeriod"])
        self.receive_wait_time = int(self.attributes["ReceiveMessageWaitTimeSeconds"])
        raw = self.attributes.get("RedrivePolicy")
        self.redrive_policy = parse_redrive_policy(raw) if raw else None
        self.last_modified_at = now

    # -- message storage --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._messages)

    def messages(self) -> Iterable[StoredMessage]:
        return self._messages.values()

    def get(self, message_id: str) -> StoredMessage | None:
        return self._messages.get(message_id)

    def add(self, message: StoredMessage, now: float) -> None:
        self._messages[message.message_id] = message
        if message.visible_at <= now:
            self._visible[message.message_id] = message
        else:
            self._hide(message)

    def remove(self, message: StoredMessage) -> None:
        message.deleted = True
        message.version += 1
        mid = message.message_id
        self._messages.pop(mid, None)
        self._visible.pop(mid, None)
        self._hidden.pop(mid, None)
        self._compact_timers()

    def clear(self) -> None:
        for message in self._messages.values():
            message.deleted = True
        self._messages.clear()
        self._visible.clear()
        self._hidden.clear()
        self._timers.clear()

    def set_visible_at(self, message: StoredMessage, visible_at: float, now: float) -> None:
        message.visible_at = visible_at
        message.version += 1
        mid = message.message_id
        if visible_at <= now:
            self._hidden.pop(mid, None)
            self._visible[mid] = message
        else:
            self._visible.pop(mid, None)
            self._hide(message)

    def _hide(self, message: StoredMessage) -> None:
        self._hidden[message.message_id] = message
        heapq.heappush(
            self._timers, (message.visible_at, next(_tiebreak), message.version, message)
        )

    def _compact_timers(self) -> None:
        if len(self._timers) > 64 and len(self._timers) > 4 * len(self._hidden):
            self._timers = [
                entry
                for entry in self._timers
                if not entry[3].deleted and entry[2] == entry[3].version
            ]
            heapq.heapify(self._timers)

    # -- time -------------------------------------------------------------------------------

    def refresh(self, now: float) -> None:
        """Drop expired messages and make visible those whose delay or visibility ended."""
        self._expire(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _at, _n, version, message = heapq.heappop(timers)
            if message.deleted or version != message.version:
                continue
            mid = message.message_id
            if self._hidden.pop(mid, None) is not None:
                self._became_visible(message)

    def _became_visible(self, message: StoredMessage) -> None:
        self._visible[message.message_id] = message

    def _expire(self, now: float) -> None:
        if not self._messages:
            return
        cutoff = now - self.retention_period
        first = next(iter(self._messages.values()))
        if first.sent_at > cutoff:
            return
        for message in [m for m in self._messages.values() if m.sent_at <= cutoff]:
            self.remove(message)

    def next_change_at(self, now: float) -> float | None:
        """The earliest future moment a hidden message becomes visible, if any."""
        timers = self._timers
        while timers:
            at, _n, version, message = timers[0]
            if message.deleted or version != message.version:
                heapq.heappop(timers)
                continue
            return at if at > now else now
        return None

    # -- receiving --------------------------------------------------------------------------

    def candidates(self, now: float, limit: int) -> list[StoredMessage]:
        """Visible messages a receive may return, in delivery order (at most ``limit``)."""
        return list(itertools.islice(self._visible.values(), limit))

    def counts(self, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed) message counts."""
        self.refresh(now)
        in_flight = delayed = 0
        for message in self._hidden.values():
            if message.receive_count:
                in_flight += 1
            else:
                delayed += 1
        return len(self._messages) - in_flight - delayed, in_flight, delayed

    def state_of(self, message: StoredMessage, now: float) -> MessageState:
        return message.state(now)
