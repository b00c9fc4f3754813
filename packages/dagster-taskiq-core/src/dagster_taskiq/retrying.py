"""One retry helper for every broker backend: stamina's jittered exponential backoff.

A backend wraps each call to its service in :func:`call_with_retry` with its own predicate of
transient errors, its log event prefix (``<prefix>_retry`` for every retry, ``<prefix>_unavailable``
once the budget is spent), the fields that name its target (SQS: ``endpoint`` and ``queue``; Redis:
``server`` and ``stream``; NATS: ``servers`` and ``stream``) and the error it raises when the
budget is spent. A non-transient error is raised at once, unlogged. The budget bounds the time: at
most ``timeout`` plus one backoff plus one call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import stamina

__all__ = ["RetryBudget", "call_with_retry"]

_T = TypeVar("_T")


class _Logger(Protocol):
    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class RetryBudget:
    """How long to keep trying an unreachable service: stamina's jittered exponential backoff."""

    __slots__ = ("attempts", "initial_delay", "max_delay", "timeout")

    def __init__(
        self, *, attempts: int, initial_delay: float, max_delay: float, timeout: float
    ) -> None:
        self.attempts = attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Any) -> RetryBudget:
        """The budget of a settings object with ``retry_attempts``, ``retry_initial_delay``,
        ``retry_max_delay`` and ``retry_timeout`` (every backend's settings have them)."""
        return cls(
            attempts=settings.retry_attempts,
            initial_delay=settings.retry_initial_delay,
            max_delay=settings.retry_max_delay,
            timeout=settings.retry_timeout,
        )

    @staticmethod
    def delay_problem(initial_delay: float, max_delay: float) -> str | None:
        """Why ``retry_max_delay`` is invalid next to ``retry_initial_delay``, or None."""
        if max_delay < initial_delay:
            return f"must be at least retry_initial_delay ({initial_delay}), got {max_delay}"
        return None

    @property
    def jitter(self) -> float:
        """Random extra wait per retry, at most the initial delay (keeps small budgets small)."""
        return min(1.0, self.initial_delay)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(attempts={self.attempts}, initial_delay={self.initial_delay}, "
            f"max_delay={self.max_delay}, timeout={self.timeout})"
        )


async def call_with_retry(
    operation: str,
    call: Callable[[], Awaitable[_T]],
    *,
    budget: RetryBudget,
    is_transient: Callable[[BaseException], bool],
    logger: _Logger,
    event_prefix: str,
    target: Mapping[str, Any],
    unreachable: str,
    error: Callable[[str], Exception],
    log_fields: Mapping[str, Any] | None = None,
) -> _T:
    """``await call()``, retrying the failures ``is_transient`` accepts within ``budget``.

    Each retry is logged as ``<event_prefix>_retry`` (``operation``, the ``target`` fields,
    ``attempt``, ``next_wait``, ``error``, then ``log_fields``). When the budget is spent,
    ``<event_prefix>_unavailable`` is logged (``attempts`` and ``elapsed`` instead of ``attempt``
    and ``next_wait``) and ``error(message)`` is raised from the last error; the message starts
    with ``unreachable`` (e.g. ``"Redis at redis://h:6379 unreachable for stream 's'"``).
    """
    extra = dict(log_fields or {})
    started = time.monotonic()
    attempts_made = 0
    try:
        async for attempt in stamina.retry_context(
            on=is_transient,
            attempts=budget.attempts,
            timeout=budget.timeout,
            wait_initial=budget.initial_delay,
            wait_max=budget.max_delay,
            wait_jitter=budget.jitter,
        ):
            with attempt:
                attempts_made = attempt.num
                try:
                    return await call()
                except Exception as exc:
                    elapsed = time.monotonic() - started
                    if (
                        is_transient(exc)
                        and attempt.num < budget.attempts
                        and elapsed < budget.timeout
                    ):
                        logger.warning(
                            f"{event_prefix}_retry",
                            operation=operation,
                            **target,
                            attempt=attempt.num,
                            next_wait=round(attempt.next_wait, 3),
                            error=f"{type(exc).__name__}: {exc}",
                            **extra,
                        )
                    raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        elapsed = time.monotonic() - started
        logger.error(
            f"{event_prefix}_unavailable",
            operation=operation,
            **target,
            attempts=attempts_made,
            elapsed=round(elapsed, 3),
            error=f"{type(exc).__name__}: {exc}",
            **extra,
        )
        raise error(
            f"{unreachable} ({operation}): gave up after {attempts_made} attempt(s) in "
            f"{elapsed:.1f} s (budget: {budget.attempts} attempts, {budget.timeout:g} s; "
            f"settings retry_attempts / retry_timeout). Last error: {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
