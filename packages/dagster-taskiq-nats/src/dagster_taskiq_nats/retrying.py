"""Calls to NATS that ride out an unreachable server: stamina's jittered exponential backoff.

Only transient failures are retried (no server reachable, a connection closed or reconnecting, a
request without an answer in time, JetStream not ready: no responders or 503); a bad request or
a configuration error is raised at once. Every retry is logged (``nats_retry``) with the
operation, servers, stream, attempt and error; when the budget runs out the caller gets a
:class:`~dagster_taskiq_nats.errors.NatsUnavailableError` naming the servers and the stream.
nats-py reconnects a lost connection by itself; these retries cover the calls made meanwhile.
The retry loop is the core's :func:`dagster_taskiq.retrying.call_with_retry`; this module gives
it the predicate and names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from nats import errors as nats_errors
from nats.js import errors as js_errors

from dagster_taskiq import retrying
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
    """``await call()``, retrying transient failures within ``budget`` (the core's helper)."""
    return await retrying.call_with_retry(
        operation,
        call,
        budget=budget,
        is_transient=is_transient,
        logger=_log,
        event_prefix="nats",
        target={"servers": servers, "stream": stream},
        unreachable=f"NATS at {servers} unreachable for stream {stream!r}",
        error=NatsUnavailableError,
        log_fields=log_fields,
    )
