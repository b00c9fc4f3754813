"""Run a blocking call on its own daemon thread, awaitable, and interruptible.

Steps run on daemon threads (not a ``ThreadPoolExecutor``, whose threads block interpreter exit),
so that a worker told to stop can exit once its grace period is over, and so that a step of a
cancelled run can be interrupted: ``interrupt()`` raises ``DagsterExecutionInterruptedError`` in
the thread at its next Python instruction (a step blocked inside C code sees it when it returns).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from dagster import DagsterExecutionInterruptedError

_T = TypeVar("_T")


class StepThread(Generic[_T]):
    """``fn()`` on a daemon thread; ``await thread.result()`` from the event loop."""

    def __init__(self, fn: Callable[[], _T], *, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[_T] = self._loop.create_future()
        self._fn = fn
        self._thread = threading.Thread(target=self._target, name=name, daemon=True)
        self._thread.start()

    def _target(self) -> None:
        try:
            value = self._fn()
        except BaseException as exc:  # delivered to the awaiting coroutine
            self._deliver(_set_exception, exc)
        else:
            self._deliver(_set_result, value)

    def _deliver(self, setter: Callable[[asyncio.Future[_T], Any], None], value: Any) -> None:
        # The worker may have stopped (and closed its loop) while this step still ran.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(setter, self._future, value)

    async def result(self) -> _T:
        return await asyncio.shield(self._future)

    @property
    def done(self) -> bool:
        return self._future.done()

    def interrupt(self, error: type[BaseException] = DagsterExecutionInterruptedError) -> bool:
        """Raise ``error`` (a class) in the step's thread; False if it has ended."""
        ident = self._thread.ident
        if ident is None or not self._thread.is_alive():
            return False
        changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(error)
        )
        return bool(changed == 1)


def _set_result(future: asyncio.Future[_T], value: _T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[_T], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
