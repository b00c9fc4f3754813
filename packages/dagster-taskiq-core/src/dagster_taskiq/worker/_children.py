"""The child processes a step starts, so that a cancelled or timed-out step's are stopped.

A step on a thread worker that waits on a child process (``subprocess.run``, a Dagster Pipes
``PipesSubprocessClient``) cannot be interrupted from outside while it waits: the wait is in C.
Stopping the child ends the wait. So while a step runs, every ``subprocess.Popen`` its thread
creates is noted on the step (:func:`children_of`); the worker sends them SIGTERM when it
interrupts the step and SIGKILL when it gives the step up (``_consumer``).

What is not seen: processes started without ``subprocess.Popen`` (``os.system``,
``os.posix_spawn``, ``multiprocessing``), by another thread the step started, or by a child (the
grandchildren of a shell): run such steps with ``--isolation subprocess``, where the whole step is
a process the worker ends.

:func:`track_children` wraps ``Popen.__init__`` once per process, when a worker starts (never at
import time); outside a step the wrapper only calls the original.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

_log = structlog.get_logger("dagster_taskiq.worker")

_T = TypeVar("_T")

_children: contextvars.ContextVar[list[subprocess.Popen[Any]] | None] = contextvars.ContextVar(
    "dagster_taskiq_step_children", default=None
)
_install_lock = threading.Lock()
_MARKER = "_dagster_taskiq_tracks_children"


def track_children() -> None:
    """Note each ``subprocess.Popen`` made inside :func:`children_of` on its list (idempotent)."""
    with _install_lock:
        if getattr(subprocess.Popen, _MARKER, False):
            return
        original = subprocess.Popen.__init__

        @functools.wraps(original)
        def init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            children = _children.get()
            if children is not None:
                children.append(self)

        subprocess.Popen.__init__ = init  # type: ignore[method-assign]
        setattr(subprocess.Popen, _MARKER, True)


def children_of(children: list[subprocess.Popen[Any]], fn: Callable[[], _T]) -> _T:
    """Call ``fn``, noting on ``children`` the processes it starts (in this thread)."""
    reset = _children.set(children)
    try:
        return fn()
    finally:
        _children.reset(reset)


def untracked(fn: Callable[[], _T]) -> _T:
    """Call ``fn`` without noting the processes it starts (a runner that ends them itself)."""
    reset = _children.set(None)
    try:
        return fn()
    finally:
        _children.reset(reset)


def signal_children(
    children: list[subprocess.Popen[Any]], signum: signal.Signals, *, key: str
) -> int:
    """Send ``signum`` to each of ``children`` still running; how many were sent it."""
    sent = 0
    for child in list(children):
        if child.poll() is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)
            sent += 1
            _log.info("step_child_signalled", key=key, pid=child.pid, signal=signum.name)
    return sent
