"""Long-poll wake-ups for both worlds: threads wait on a ``Condition``, tasks on an ``Event``.

Every change that can make a message receivable (a send, a visibility change, a clock jump)
calls ``notify`` with the account's lock held.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class AsyncWaiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)


class Waiters:
    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self._async: set[AsyncWaiter] = set()
        self._threads_waiting = 0

    def wait(self, timeout: float | None) -> None:
        """Block this thread until notified or ``timeout``; needs the lock held."""
        self._threads_waiting += 1
        try:
            self.condition.wait(timeout)
        finally:
            self._threads_waiting -= 1

    def notify(self) -> None:
        """Wake every waiting thread and task; they re-check their queue. Needs the lock held."""
        if self._threads_waiting:
            self.condition.notify_all()
        if self._async:
            for waiter in list(self._async):
                try:
                    waiter.loop.call_soon_threadsafe(waiter.event.set)
                except RuntimeError:  # that event loop is closed: nobody is waiting any more
                    self._async.discard(waiter)

    def add_async(self, loop: asyncio.AbstractEventLoop) -> AsyncWaiter:
        waiter = AsyncWaiter(loop)
        self._async.add(waiter)
        return waiter

    def remove_async(self, waiter: AsyncWaiter) -> None:
        self._async.discard(waiter)
