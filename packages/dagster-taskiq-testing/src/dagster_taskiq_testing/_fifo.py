"""A FIFO queue: ordering and blocking per message group, and the deduplication window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from dagster_taskiq_testing._attributes import DEDUPLICATION_WINDOW
from dagster_taskiq_testing._message import StoredMessage
from dagster_taskiq_testing._queue import Queue


@dataclass(frozen=True, slots=True)
class DeduplicationEntry:
    expires_at: float
    message_id: str
    sequence_number: str


class FifoQueue(Queue):
    """Messages of one group are delivered in order, and none while one of them is in flight."""

    fifo = True

    def __init__(self, **kwargs: object) -> None:
        self._groups: dict[str, deque[StoredMessage]] = {}
        self._dedup: dict[tuple[str, str], DeduplicationEntry] = {}
        self._sequence = 0
        super().__init__(**kwargs)  # type: ignore[arg-type]

    # -- deduplication ----------------------------------------------------------------------

    @property
    def content_based_deduplication(self) -> bool:
        return self.attributes.get("ContentBasedDeduplication") == "true"

    def _dedup_key(self, group_id: str, deduplication_id: str) -> tuple[str, str]:
        if self.attributes.get("DeduplicationScope") == "messageGroup":
            return group_id, deduplication_id
        return "", deduplication_id

    def find_duplicate(
        self, group_id: str, deduplication_id: str, now: float
    ) -> DeduplicationEntry | None:
        """The earlier send this one duplicates, if it is within the 5-minute window."""
        dedup = self._dedup
        while dedup:
            key, entry = next(iter(dedup.items()))
            if entry.expires_at > now:
                break
            del dedup[key]
        found = dedup.get(self._dedup_key(group_id, deduplication_id))
        if found is not None and found.expires_at > now:
            return found
        return None

    def remember(
        self, group_id: str, deduplication_id: str, message: StoredMessage, now: float
    ) -> None:
        assert message.sequence_number is not None
        self._dedup[self._dedup_key(group_id, deduplication_id)] = DeduplicationEntry(
            now + DEDUPLICATION_WINDOW, message.message_id, message.sequence_number
        )

    def next_sequence_number(self) -> str:
        self._sequence += 1
        return f"{self._sequence:020d}"

    # -- storage ----------------------------------------------------------------------------

    def add(self, message: StoredMessage, now: float) -> None:
        assert message.group_id is not None
        self._groups.setdefault(message.group_id, deque()).append(message)
        super().add(message, now)

    def remove(self, message: StoredMessage) -> None:
        if not message.deleted and message.group_id is not None:
            group = self._groups.get(message.group_id)
            if group is not None:
                if group and group[0] is message:
                    group.popleft()
                else:
                    group.remove(message)
                if not group:
                    del self._groups[message.group_id]
        super().remove(message)

    def clear(self) -> None:
        self._groups.clear()
        super().clear()

    # -- receiving --------------------------------------------------------------------------

    def candidates(self, now: float, limit: int) -> list[StoredMessage]:
        available: list[tuple[int, list[StoredMessage]]] = []
        for group in self._groups.values():
            taken: list[StoredMessage] = []
            for message in group:
                if message.visible_at > now:
                    if message.receive_count:
                        taken = []  # a message of this group is in flight: the group is blocked
                    break
                if len(taken) < limit:
                    taken.append(message)
                elif not message.receive_count:
                    # Received messages are a prefix of the group; past them nothing can be
                    # in flight, and nothing more is needed.
                    break
            if taken:
                head = taken[0].sequence_number
                assert head is not None
                available.append((int(head), taken))
        available.sort(key=lambda item: item[0])
        out: list[StoredMessage] = []
        for _head, taken in available:
            out.extend(taken[: limit - len(out)])
            if len(out) >= limit:
                break
        return out
