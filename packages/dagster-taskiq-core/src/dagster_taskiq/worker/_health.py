"""The worker's HTTP endpoints (``dagster-taskiq worker --metrics-port``), on a thread of their
own so that they answer even when the event loop is stuck (that is what ``/healthz`` reports):

* ``/metrics``: Prometheus exposition of the worker's :class:`WorkerMetrics`;
* ``/healthz`` (liveness): 200 while the worker's event loop has run within ``LIVE_WITHIN``
  seconds, else 503 (a supervisor restarts it);
* ``/readyz`` (readiness): 200 once the last look at the broker (its queue depth) and at the
  store (one round trip) succeeded, else 503 with what failed.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dagster_taskiq.errors import DagsterTaskIQError
from dagster_taskiq.worker._metrics import WorkerMetrics

__all__ = ["LIVE_WITHIN", "Health", "MetricsServer"]

LIVE_WITHIN = 30.0
"""Seconds without a turn of the event loop after which the worker is not live."""


class Health:
    """What ``/healthz`` and ``/readyz`` answer, kept up to date by the worker's loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.loop_seen = clock()
        self.problem: str | None = "starting: broker and store not checked yet"
        """Why the worker is not ready (None: ready)."""

    def beat(self) -> None:
        """The event loop ran (called every second from it)."""
        self.loop_seen = self.clock()

    def live(self) -> tuple[bool, str]:
        idle = self.clock() - self.loop_seen
        return idle < LIVE_WITHIN, f"event loop last ran {idle:.1f} s ago"

    def ready(self) -> tuple[bool, str]:
        return self.problem is None, self.problem or "broker and store reachable"


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port``. The port is bound here, so a
    taken one fails before the worker takes a message."""

    def __init__(
        self,
        port: int,
        metrics: WorkerMetrics,
        health: Health,
        host: str = "0.0.0.0",  # noqa: S104 - probes and Prometheus reach it from outside the pod
    ) -> None:
        handler = functools.partial(_Handler, metrics, health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise DagsterTaskIQError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; give a free port "
                "(or 0 for any)"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dagster-taskiq-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, metrics: WorkerMetrics, health: Health, *args: Any) -> None:
        self.metrics = metrics
        self.health = health
        super().__init__(*args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        elif path in ("/healthz", "/readyz"):
            ok, detail = self.health.live() if path == "/healthz" else self.health.ready()
            self._answer(200 if ok else 503, f"{'ok' if ok else 'not ok'}: {detail}\n".encode())
        else:
            self._answer(404, b"not found: /metrics, /healthz, /readyz\n")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""
