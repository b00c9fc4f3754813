"""One retry helper for the idempotency store and every broker backend: stamina's backoff.

A caller builds one :class:`Retrying` per service it talks to, with its predicate of transient
errors, its log event prefix (``<prefix>_retry`` for every retry, ``<prefix>_unavailable`` once
the budget is spent), the fields that name its target (SQS: ``endpoint`` and ``queue``; Redis:
``server`` and ``stream``; NATS: ``servers`` and ``stream``; the store: ``store``) and the error
it raises when the budget is spent; then wraps each call in :meth:`Retrying.call` (coroutines,
the brokers) or :meth:`Retrying.call_sync` (blocking calls, the store). Both behave alike: a
non-transient error is raised at once, unlogged; the budget bounds the time (at most
``timeout`` plus one backoff plus one call).

The first try runs outside stamina (its retry context costs ~15 µs a call, and the store is on
every step's hot path); its transient failure is replayed as stamina's first attempt, so the
attempts, the waits and the logs are those of a loop that had started with it.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import stamina

__all__ = ["RetryBudget", "Retrying", "retry_counts"]

_T = TypeVar("_T")

_RETRIES: collections.Counter[str] = collections.Counter()
"""Retries made in this process, by service (the policies' event prefix)."""


def retry_counts() -> dict[str, int]:
    """How many retries this process made, by service (``store``, ``sqs``, ``redis``, ...)."""
    return dict(_RETRIES)


SETTINGS_HINT = "settings retry_attempts / retry_timeout"
"""Where a broker's budget is set, named in the error raised when it is spent."""


class _Logger(Protocol):
    def warning(self, event: str, **fields: Any) -> Any: ...

    def error(self, event: str, **fields: Any) -> Any: ...


class RetryBudget:
    """How long to keep trying an unreachable service: stamina's jittered exponential backoff.

    ``attempts`` counts the first try; ``timeout`` (seconds) ends the retries whatever the
    attempts left. The wait before retry *n* is ``initial_delay * 2 ** (n - 1)`` plus a random
    ``jitter``, at most ``max_delay``. ``jitter`` defaults to ``min(1.0, initial_delay)`` (keeps
    small budgets small); give it to spread many clients further apart after an outage.
    """

    __slots__ = ("_jitter", "attempts", "initial_delay", "max_delay", "timeout")

    def __init__(
        self,
        *,
        attempts: int,
        initial_delay: float,
        max_delay: float,
        timeout: float,
        jitter: float | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"RetryBudget.attempts must be >= 1, got {attempts}")
        for name, value in (
            ("initial_delay", initial_delay),
            ("max_delay", max_delay),
            ("timeout", timeout),
            ("jitter", jitter or 0.0),
        ):
            if value < 0:
                raise ValueError(f"RetryBudget.{name} must be >= 0, got {value}")
        self.attempts = attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._jitter = jitter

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
        """Random extra wait per retry: as given, else at most the initial delay."""
        return min(1.0, self.initial_delay) if self._jitter is None else self._jitter

    def __repr__(self) -> str:
        jitter = "" if self._jitter is None else f", jitter={self._jitter}"
        return (
            f"RetryBudget(attempts={self.attempts}, initial_delay={self.initial_delay}, "
            f"max_delay={self.max_delay}, timeout={self.timeout}{jitter})"
        )


def describe_error(exc: BaseException) -> str:
    """``Type: message``, how retry logs and errors show the failure by default."""
    return f"{type(exc).__name__}: {exc}"


class Retrying:
    """The retry policy of one service: built once, then every call goes through it.

    ``is_transient`` says which failures are worth retrying; ``logger``, ``event_prefix`` and
    ``target`` (the fields naming the service, e.g. ``{"server": ..., "stream": ...}``) shape the
    ``<prefix>_retry`` / ``<prefix>_unavailable`` events; ``error(message)`` is raised from the
    last failure once the budget is spent, the message starting with ``unreachable`` (e.g.
    ``"Redis at redis://h:6379 unreachable for stream 's'"``) and naming ``budget_hint`` (where
    the budget is set). ``describe`` renders a failure in logs and messages (the store shows
    the driver's error, not SQLAlchemy's statement and parameters).
    """

    __slots__ = (
        "budget",
        "budget_hint",
        "describe",
        "error",
        "event_prefix",
        "is_transient",
        "logger",
        "target",
        "unreachable",
    )

    def __init__(
        self,
        *,
        budget: RetryBudget,
        is_transient: Callable[[BaseException], bool],
        logger: _Logger,
        event_prefix: str,
        target: Mapping[str, Any],
        unreachable: str,
        error: Callable[[str], Exception],
        budget_hint: str = SETTINGS_HINT,
        describe: Callable[[BaseException], str] = describe_error,
    ) -> None:
        self.budget = budget
        self.is_transient = is_transient
        self.logger = logger
        self.event_prefix = event_prefix
        self.target = dict(target)
        self.unreachable = unreachable
        self.error = error
        self.budget_hint = budget_hint
        self.describe = describe

    def __repr__(self) -> str:
        return f"Retrying({self.event_prefix!r}, {self.target!r}, {self.budget!r})"

    async def call(
        self,
        operation: str,
        call: Callable[[], Awaitable[_T]],
        *,
        log_fields: Mapping[str, Any] | None = None,
    ) -> _T:
        """``await call()``, retrying the failures ``is_transient`` accepts within the budget.

        Each retry is logged as ``<event_prefix>_retry`` (``operation``, the ``target`` fields,
        ``attempt``, ``next_wait``, ``error``, then ``log_fields``). When the budget is spent,
        ``<event_prefix>_unavailable`` is logged (``attempts`` and ``elapsed`` instead of
        ``attempt`` and ``next_wait``) and the policy's ``error`` is raised from the last error.
        """
        way = _Way(self, operation, log_fields)
        try:
            return await call()
        except Exception as exc:
            if not self.is_transient(exc):
                raise
            way.first_failed(exc)
        with way.giving_up():
            async for attempt in way.attempts():
                with attempt, way.trying(attempt):
                    return await call()
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    def call_sync(
        self,
        operation: str,
        call: Callable[[], _T],
        *,
        log_fields: Mapping[str, Any] | None = None,
    ) -> _T:
        """``call()``, retrying like :meth:`call` (same budget, logs and error), blocking."""
        way = _Way(self, operation, log_fields)
        try:
            return call()
        except Exception as exc:
            if not self.is_transient(exc):
                raise
            way.first_failed(exc)
        with way.giving_up():
            for attempt in way.attempts():
                with attempt, way.trying(attempt):
                    return call()
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover


class _Way:
    """One call's way through its policy, written once for :meth:`Retrying.call` and
    :meth:`Retrying.call_sync`: the first try's transient failure, replayed as stamina's first
    attempt (so the attempts, waits and logs are those of a loop that had started with it),
    each retry announced, and the policy's error once the budget is spent."""

    __slots__ = ("attempts_made", "first", "log_fields", "operation", "policy", "started")

    def __init__(
        self, policy: Retrying, operation: str, log_fields: Mapping[str, Any] | None
    ) -> None:
        self.policy = policy
        self.operation = operation
        self.log_fields = log_fields or {}
        self.started = time.monotonic()
        self.attempts_made = 1
        self.first: Exception | None = None

    def first_failed(self, exc: Exception) -> None:
        """Keep the first try's transient failure to replay; the policy's error instead if the
        budget leaves no retry (one attempt, or no time)."""
        if not self._retry_left(1):
            raise self._gave_up(exc) from exc
        self.first = exc

    def attempts(self) -> Any:
        """stamina's attempts (iterable with ``for`` and ``async for``); the timeout is what the
        first try left of the budget's."""
        budget = self.policy.budget
        return stamina.retry_context(
            on=self.policy.is_transient,
            attempts=budget.attempts,
            timeout=max(budget.timeout - (time.monotonic() - self.started), 1e-6),
            wait_initial=budget.initial_delay,
            wait_max=budget.max_delay,
            wait_jitter=budget.jitter,
        )

    @contextlib.contextmanager
    def trying(self, attempt: stamina.Attempt) -> Iterator[None]:
        """One attempt: the first replays the first try's failure; a transient failure that
        stamina will retry is logged as ``<prefix>_retry``."""
        self.attempts_made = attempt.num
        policy = self.policy
        try:
            if attempt.num == 1 and self.first is not None:
                raise self.first
            yield
        except Exception as exc:
            if policy.is_transient(exc) and self._retry_left(attempt.num):
                _RETRIES[policy.event_prefix] += 1
                policy.logger.warning(
                    f"{policy.event_prefix}_retry",
                    operation=self.operation,
                    **policy.target,
                    attempt=attempt.num,
                    next_wait=round(attempt.next_wait, 3),
                    error=policy.describe(exc),
                    **self.log_fields,
                )
            raise

    @contextlib.contextmanager
    def giving_up(self) -> Iterator[None]:
        """Around stamina's loop: what ends it transient becomes the policy's error."""
        try:
            yield
        except Exception as exc:
            if not self.policy.is_transient(exc):
                raise
            raise self._gave_up(exc) from exc

    def _retry_left(self, attempt: int) -> bool:
        """Whether stamina tries again after ``attempt`` failed (attempts and time left)."""
        budget = self.policy.budget
        return attempt < budget.attempts and time.monotonic() - self.started < budget.timeout

    def _gave_up(self, exc: Exception) -> Exception:
        """The policy's error for the transient ``exc`` that spent the budget, after logging
        ``<prefix>_unavailable``."""
        policy, budget = self.policy, self.policy.budget
        elapsed = time.monotonic() - self.started
        described = policy.describe(exc)
        policy.logger.error(
            f"{policy.event_prefix}_unavailable",
            operation=self.operation,
            **policy.target,
            attempts=self.attempts_made,
            elapsed=round(elapsed, 3),
            error=described,
            **self.log_fields,
        )
        return policy.error(
            f"{policy.unreachable} ({self.operation}): gave up after {self.attempts_made} "
            f"attempt(s) in {elapsed:.1f} s (budget: {budget.attempts} attempts, "
            f"{budget.timeout:g} s; {policy.budget_hint}). Last error: {described}"
        )
