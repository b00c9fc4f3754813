"""Use any :class:`IdempotencyStore` from asyncio code without blocking the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from dagster_taskiq.idempotency._protocol import IdempotencyStore, OutcomeVersion
from dagster_taskiq.payloads import ExecutionResult, IdempotencyRecord, OpExecutionTask

_P = ParamSpec("_P")
_T = TypeVar("_T")


class AsyncIdempotencyStore:
    """Async facade: each call runs the synchronous store on a dedicated thread pool.

    The database drivers used (psycopg 3, sqlite3) release the GIL while waiting, so a small
    pool keeps the worker's event loop free while statements are in flight.
    """

    def __init__(self, store: IdempotencyStore, *, max_threads: int = 8) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="idem-store")

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def ensure_pending(self, task: OpExecutionTask) -> IdempotencyRecord:
        return await self._call(self.store.ensure_pending, task)

    async def get(self, key: str) -> IdempotencyRecord | None:
        return await self._call(self.store.get, key)

    async def records_for_run(self, run_id: str) -> list[IdempotencyRecord]:
        return await self._call(self.store.records_for_run, run_id)

    async def outcome_version(self, run_id: str) -> OutcomeVersion:
        return await self._call(self.store.outcome_version, run_id)

    async def claim(
        self, key: str, owner: str, lease_seconds: float, *, retry_number: int | None = None
    ) -> int | None:
        return await self._call(
            self.store.claim, key, owner, lease_seconds, retry_number=retry_number
        )

    async def heartbeat(self, key: str, token: int, lease_seconds: float) -> bool:
        return await self._call(self.store.heartbeat, key, token, lease_seconds)

    async def finish(self, key: str, token: int, result: ExecutionResult) -> bool:
        return await self._call(self.store.finish, key, token, result)

    async def release(self, key: str, token: int) -> bool:
        return await self._call(self.store.release, key, token)

    async def ping(self) -> None:
        await self._call(self.store.ping)

    async def expired(
        self, *, run_id: str | None = None, limit: int = 1000
    ) -> list[IdempotencyRecord]:
        return await self._call(self.store.expired, run_id=run_id, limit=limit)

    async def reclaim(self, key: str, token: int) -> IdempotencyRecord | None:
        return await self._call(self.store.reclaim, key, token)

    async def aclose(self) -> None:
        """Close the store and the thread pool."""
        await self._call(self.store.close)
        self._pool.shutdown(wait=True)
