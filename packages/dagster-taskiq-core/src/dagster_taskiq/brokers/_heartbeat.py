"""The broker's own heartbeat of a received message: a task per delivery, stopped on settle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

__all__ = ["heartbeat_loop", "start_heartbeat", "stop_heartbeat"]


class _Logger(Protocol):
    def warning(self, event: str, **fields: Any) -> Any: ...


class _HasHeartbeat(Protocol):
    heartbeat: asyncio.Task[None] | None


def start_heartbeat(
    tasks: set[asyncio.Task[None]], beating: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """Run ``beating`` as a task kept in ``tasks`` until it ends."""
    task = asyncio.create_task(beating)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


def stop_heartbeat(delivery: _HasHeartbeat) -> None:
    """Cancel the broker's own heartbeat of ``delivery`` and forget it (idempotent)."""
    task, delivery.heartbeat = delivery.heartbeat, None
    if task is not None and not task.done():
        task.cancel()


async def heartbeat_loop(
    every: float,
    beat: Callable[[], Awaitable[None]],
    *,
    stop_on: type[Exception],
    logger: _Logger,
    event_prefix: str,
    log_fields: Callable[[], Mapping[str, Any]],
) -> None:
    """``await beat()`` every ``every`` seconds: a ``stop_on`` error (the message is settled or no
    longer ours) ends the loop, logged as ``<prefix>_heartbeat_stopped``; any other error is
    logged as ``<prefix>_heartbeat_failed`` and the next beat is tried."""
    while True:
        await asyncio.sleep(every)
        try:
            await beat()
        except stop_on as exc:
            logger.warning(f"{event_prefix}_heartbeat_stopped", reason=str(exc), **log_fields())
            return
        except Exception as exc:
            logger.warning(
                f"{event_prefix}_heartbeat_failed",
                error=f"{type(exc).__name__}: {exc}",
                **log_fields(),
            )
