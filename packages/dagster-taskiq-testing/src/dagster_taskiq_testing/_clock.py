"""Clocks: the real one by default, and a ``FakeClock`` tests advance by hand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time in seconds since the epoch, as the stub sees it."""

    def now(self) -> float:
        """The current time, seconds since the epoch."""
        ...

    def real_timeout(self, seconds: float) -> float | None:
        """How long to really wait for ``seconds`` of this clock's time to pass.

        ``None`` means "until woken": the clock only moves when someone advances it, and
        advancing it notifies the subscribers.
        """
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) whenever the clock jumps forward."""
        ...

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        ...


class RealClock:
    """``time.time()``; waiting for it means really waiting."""

    def now(self) -> float:
        return time.time()

    def real_timeout(self, seconds: float) -> float | None:
        return max(0.0, seconds)

    def subscribe(self, callback: Callable[[], None]) -> None:
        """The real clock never jumps, so there is nothing to notify."""

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Nothing was registered."""

    def __repr__(self) -> str:
        return "RealClock()"


DEFAULT_FAKE_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """A clock that only moves when ``advance`` is called; thread-safe.

    Advancing it wakes every long poll of every ``InMemorySqs`` using it, so receives whose wait
    has run out return and messages whose visibility timeout or delay has passed are delivered.
    Calling it returns ``now()``: the same clock is then an idempotency store's ``clock``
    (``SqlIdempotencyStore(url, clock=fake)``, a ``Callable[[], float]``), so lease tests and SQS
    stub tests move time one way.
    """

    def __init__(self, start: float = DEFAULT_FAKE_START) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def __call__(self) -> float:
        """The current time, as the idempotency store's ``Clock`` asks for it."""
        return self._now

    def real_timeout(self, seconds: float) -> float | None:
        return None

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        with self._lock:
            self._now += float(seconds)
            now = self._now
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback()
        return now

    def set(self, when: float) -> float:
        """Move the clock forward to ``when`` (seconds since the epoch)."""
        return self.advance(max(0.0, when - self._now))

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
