"""``InMemorySqsBroker``: the real SQS broker of dagster-taskiq-sqs on the in-memory stub.

Everything above the SQS client is the production code (``LocalStackSqsBroker``): group and
deduplication ids, queue creation and checks, heartbeats, acks, dead letters. Only the client is
the stub's, injected through ``client_factory``, so tests need no server and, with a
``FakeClock``, no waiting for visibility timeouts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from taskiq import AsyncBroker

from dagster_taskiq_sqs import LocalStackSqsBroker, SqsSettings
from dagster_taskiq_testing._clock import Clock
from dagster_taskiq_testing.sqs import InMemorySqs

__all__ = ["InMemorySqsBroker", "create_broker", "shared_sqs"]

_SHARED: InMemorySqs | None = None
_SHARED_LOCK = threading.Lock()


def shared_sqs() -> InMemorySqs:
    """The process-wide ``InMemorySqs`` behind the ``memory`` backend (created on first use).

    Every broker the ``memory`` entry point creates in one process (the executor's and its
    in-process workers') talks to this one account, as they would to one SQS region.
    """
    global _SHARED  # noqa: PLW0603 - one lazily created account per process
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = InMemorySqs()
        return _SHARED


class InMemorySqsBroker(LocalStackSqsBroker):
    """``LocalStackSqsBroker`` on an ``InMemorySqs``.

    ``sqs`` is the account to use (a new one, on ``clock`` or the real clock, when omitted);
    ``settings`` default to a FIFO queue ``dagster-taskiq.fifo`` created on startup. Settings
    not passed are read from the environment like ``SqsSettings`` always does.
    """

    def __init__(
        self,
        settings: SqsSettings | None = None,
        *,
        sqs: InMemorySqs | None = None,
        clock: Clock | None = None,
    ) -> None:
        if sqs is not None and clock is not None:
            raise ValueError("give either sqs or clock, not both (the clock is the account's)")
        self.sqs = sqs if sqs is not None else InMemorySqs(clock=clock)
        super().__init__(
            settings if settings is not None else SqsSettings(create_queues_if_missing=True),
            client_factory=self.sqs.async_client,
        )
        self.endpoint = self.sqs.endpoint_url


def create_broker(settings: Mapping[str, Any] | None = None) -> AsyncBroker:
    """The ``memory`` backend: an ``InMemorySqsBroker`` on :func:`shared_sqs`.

    ``settings`` are ``SqsSettings`` fields; ``create_queues_if_missing`` defaults to true here.
    """
    values = {"create_queues_if_missing": True, **dict(settings or {})}
    return InMemorySqsBroker(SqsSettings(**values), sqs=shared_sqs())
