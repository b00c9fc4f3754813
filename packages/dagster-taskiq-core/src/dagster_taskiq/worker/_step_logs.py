"""Per-step stdout/stderr on thread workers, into the instance's compute log manager.

Dagster captures a step's output by redirecting the whole process's file descriptors, which is
not safe when several steps run on threads of one worker: their redirections interleave and can
leave the process's output pointing at one step's log file. Thread workers capture instead at
the level of Python's ``sys.stdout`` / ``sys.stderr``:

* :func:`route_step_output` replaces both, once per process, by :class:`RoutedStream` objects:
  a write goes to the files of the step whose thread makes it (a context variable, set per step
  thread), or, outside a step, to the original stream;
* :class:`StepThreadLogManager` is the compute log manager of a thread worker's Dagster
  instance (it wraps the instance's own, ``inner``): when Dagster starts capturing a step's logs
  under the step's log key, it opens the inner manager's stdout and stderr files for that key
  and routes the step thread there, so the UI shows each step's own lines (several steps may
  print at once); at the end it marks the capture complete (and a cloud manager, S3 / GCS /
  Azure, uploads).

Not captured this way: output written straight to the file descriptors (a child process, C
code), and output of threads the step starts (they do not inherit the step's context); the
worker's own logs go to the stream its logging was configured with. ``--isolation subprocess``
captures all of it (Dagster's own capture, one step per process).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import IO, Any, TextIO

from dagster_taskiq._dagster_compat import (
    CapturedLogContext,
    CloudStorageComputeLogManager,
    ComputeIOType,
    ComputeLogManager,
    ConfigurableClassData,
    LocalComputeLogManager,
    touch_file,
)

_route: contextvars.ContextVar[tuple[IO[str], IO[str]] | None] = contextvars.ContextVar(
    "dagster_taskiq_step_output", default=None
)
_install_lock = threading.Lock()


class RoutedStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a thread worker: each write goes to the files of the
    step whose thread writes, else to ``original``."""

    def __init__(self, original: TextIO, index: int) -> None:
        self.original = original
        self._index = index

    def _target(self) -> IO[str]:
        route = _route.get()
        return self.original if route is None else route[self._index]

    def write(self, text: str) -> int:
        target = self._target()
        written = target.write(text)
        if target is not self.original and "\n" in text:
            target.flush()  # the UI tails the file while the step runs
        return written

    def flush(self) -> None:
        self._target().flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.original.encoding

    @property
    def buffer(self) -> Any:
        return self.original.buffer


def route_step_output() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` :class:`RoutedStream` objects (once)."""
    with _install_lock:
        if not isinstance(sys.stdout, RoutedStream):
            sys.stdout = RoutedStream(sys.stdout, 0)
        if not isinstance(sys.stderr, RoutedStream):
            sys.stderr = RoutedStream(sys.stderr, 1)


class StepThreadLogManager(ComputeLogManager):
    """The instance's compute log manager (``inner``), capturing per step thread."""

    def __init__(
        self,
        inner: ComputeLogManager,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self.inner = inner
        self._inst_data = inst_data
        self.local: LocalComputeLogManager | None = None
        """Where the files are written: the inner manager, or a cloud manager's local one; None
        for a manager this cannot write for (the output then goes to the worker's streams)."""
        if isinstance(inner, LocalComputeLogManager):
            self.local = inner
        elif isinstance(inner, CloudStorageComputeLogManager):
            self.local = inner.local_manager

    # ConfigurableClass: the instance ref names this class, with the inner manager's data.
    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"module": str, "class": str, "config_yaml": str}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: dict[str, Any]
    ) -> StepThreadLogManager:
        inner = ConfigurableClassData(
            config_value["module"], config_value["class"], config_value["config_yaml"]
        ).rehydrate(as_type=ComputeLogManager)  # type: ignore[type-abstract]
        return cls(inner, inst_data)

    def register_instance(self, instance: Any) -> None:
        super().register_instance(instance)
        if hasattr(self.inner, "register_instance"):
            self.inner.register_instance(instance)

    @contextlib.contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        local = self.local
        if local is None or not isinstance(sys.stdout, RoutedStream):
            yield CapturedLogContext(log_key)
            return
        with (
            local.open_log_stream(log_key, ComputeIOType.STDOUT) as out,
            local.open_log_stream(log_key, ComputeIOType.STDERR) as err,
        ):
            assert out is not None
            assert err is not None
            reset = _route.set((out, err))
            try:
                yield CapturedLogContext(log_key)
            finally:
                _route.reset(reset)
        touch_file(local.complete_artifact_path(log_key))  # type: ignore[no-untyped-call]
        if isinstance(self.inner, CloudStorageComputeLogManager):
            self.inner.upload_to_cloud_storage(log_key, ComputeIOType.STDOUT)
            self.inner.upload_to_cloud_storage(log_key, ComputeIOType.STDERR)

    @contextlib.contextmanager
    def open_log_stream(
        self, log_key: Sequence[str], io_type: ComputeIOType
    ) -> Iterator[IO[Any] | None]:
        with self.inner.open_log_stream(log_key, io_type) as stream:
            yield stream

    def is_capture_complete(self, log_key: Sequence[str]) -> bool:
        return bool(self.inner.is_capture_complete(log_key))

    def get_log_data_for_type(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get_log_data_for_type(*args, **kwargs)

    def get_log_metadata(self, log_key: Sequence[str]) -> Any:
        return self.inner.get_log_metadata(log_key)

    def delete_logs(self, *args: Any, **kwargs: Any) -> None:
        self.inner.delete_logs(*args, **kwargs)

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.subscribe(*args, **kwargs)

    def unsubscribe(self, subscription: Any) -> None:
        self.inner.unsubscribe(subscription)

    def dispose(self) -> None:
        self.inner.dispose()  # type: ignore[no-untyped-call]
