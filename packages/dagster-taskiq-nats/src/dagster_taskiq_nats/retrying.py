"""Calls to NATS that ride out an unreachable server: stamina's jittered exponential backoff.

Only transient failures are retried (no server reachable, a connection closed or reconnecting, a
request without an answer in time, JetStream not ready: no responders or 503); a bad request or
a configuration error is raised at once. Every retry is logged (``nats_retry``) with the
operation, servers, stream, attempt and error; when the budget runs out the caller gets a
:class:`~dagster_taskiq_nats.errors.NatsUnavailableError` naming the servers and the stream.
nats-py reconnects a lost connection by itself; these retries cover the calls made meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import stamina
import structlog
from nats import errors as nats_errors
from nats.js import errors as js_errors

from dagster_taskiq_nats.errors import NatsUnavailableError
from dagster_taskiq_nats.settings import RetryBudget

__all__ = ["DisconnectedError", "call_with_retry", "is_transient"]

_T = TypeVar("_T")
_log = structlog.get_logger("dagster_taskiq_nats")

_TRANSIENT = (
    nats_errors.TimeoutError,
    nats_errors.NoRespondersError,
    nats_errors.NoServersError,
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.StaleConnectionError,
    nats_errors.OutboundBufferLimitError,
    js_errors.ServiceUnavailableError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


class DisconnectedError(ConnectionError):
    """The client is not connected to any server (nats-py is reconnecting)."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: NATS is unreachable, reconnecting, slow, or JetStream is not ready."""
    if isinstance(exc, js_errors.APIError) and exc.code in {503, 504}:
        return True
    return isinstance(exc, _TRANSIENT)


async def call_with_retry(
    operation: str,
    call: Callable[[], Awaitable[_T]],
    *,
    budget: RetryBudget,
    servers: str,
    stream: str,
    **log_fields: Any,
) -> _T:
    """``await call()``, retrying transient failures within ``budget``."""
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
                        _log.warning(
                            "nats_retry",
                            operation=operation,
                            servers=servers,
                            stream=stream,
                            attempt=attempt.num,
                            next_wait=round(attempt.next_wait, 3),
                            error=f"{type(exc).__name__}: {exc}",
                            **log_fields,
                        )
                    raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        elapsed = time.monotonic() - started
        _log.error(
            "nats_unavailable",
            operation=operation,
            servers=servers,
            stream=stream,
            attempts=attempts_made,
            elapsed=round(elapsed, 3),
            error=f"{type(exc).__name__}: {exc}",
            **log_fields,
        )
        raise NatsUnavailableError(
            f"NATS at {servers} unreachable for stream {stream!r} ({operation}): gave up after "
            f"{attempts_made} attempt(s) in {elapsed:.1f} s (budget: {budget.attempts} attempts, "
            f"{budget.timeout:g} s; settings retry_attempts / retry_timeout). Last error: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
