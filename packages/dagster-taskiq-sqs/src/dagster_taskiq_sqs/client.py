"""Where the broker's SQS client comes from: an injectable factory, aiobotocore by default.

A client factory is a zero-argument callable returning an async context manager that yields an
aiobotocore-shaped SQS client (awaitable ``send_message``, ``receive_message``...). Tests pass
``InMemorySqs(...).async_client``; production uses :func:`aiobotocore_client_factory`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from aiobotocore.config import AioConfig  # type: ignore[import-untyped,unused-ignore]
from aiobotocore.session import get_session  # type: ignore[import-untyped,unused-ignore]

from dagster_taskiq.retrying import Retrying
from dagster_taskiq_sqs.settings import SqsSettings

__all__ = ["DUMMY_CREDENTIALS", "ClientFactory", "SqsCaller", "aiobotocore_client_factory"]

ClientFactory = Callable[[], AbstractAsyncContextManager[Any]]
"""``() -> async context manager yielding an aiobotocore-shaped SQS client``."""

DUMMY_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
"""What LocalStack and moto accept; used for a custom endpoint when no credentials are found."""

_log = structlog.get_logger("dagster_taskiq_sqs")


def aiobotocore_client_factory(settings: SqsSettings) -> ClientFactory:
    """A factory of aiobotocore SQS clients for ``settings``.

    botocore's own retries are off (one attempt): the broker retries transient failures itself,
    within the settings' budget, and logs each retry. Credentials are the settings' when given,
    else the AWS credential chain; with a custom endpoint (LocalStack, moto) and nothing in the
    chain, dummy credentials.
    """
    config = AioConfig(
        connect_timeout=settings.connect_timeout,
        # A long poll answers within its wait; anything much slower is a dead connection.
        read_timeout=settings.wait_time_seconds + 10.0,
        retries={"mode": "standard", "total_max_attempts": 1},
    )

    @contextlib.asynccontextmanager
    async def create() -> AsyncIterator[Any]:
        session = _session()
        credentials = await _credentials(session, settings)
        async with session.create_client(
            "sqs",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            config=config,
            **credentials,
        ) as client:
            yield client

    return create


_loader: Any = None
_chain_is_empty: dict[frozenset[tuple[str, str]], bool] = {}
_lock = threading.Lock()


def _session() -> Any:
    """A new aiobotocore session that shares this process's botocore data loader.

    Sessions are cheap but not thread- or loop-safe to share (the executor makes one broker,
    on its own event loop, per run); the loader is what is costly: it parses botocore's JSON
    service and endpoint models (about 30 ms) and caches them, so one per process."""
    global _loader  # noqa: PLW0603 - a process-wide cache
    session = get_session()
    with _lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _loader)
    return session


async def _chain_has_no_credentials(session: Any) -> bool:
    """Whether the AWS credential chain finds nothing: asked once per process and ``AWS_*``
    environment (without credentials in the environment the chain ends in the instance
    metadata service, which takes its time)."""
    environment = frozenset((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    empty = _chain_is_empty.get(environment)
    if empty is None:
        empty = _chain_is_empty[environment] = await session.get_credentials() is None
    return empty


async def _credentials(session: Any, settings: SqsSettings) -> dict[str, str]:
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        explicit = {
            "aws_access_key_id": settings.aws_access_key_id.get_secret_value(),
            "aws_secret_access_key": settings.aws_secret_access_key.get_secret_value(),
        }
        if settings.aws_session_token is not None:
            explicit["aws_session_token"] = settings.aws_session_token.get_secret_value()
        return explicit
    if settings.has_custom_endpoint and await _chain_has_no_credentials(session):
        _log.info("sqs_dummy_credentials", endpoint=settings.endpoint_url)
        return dict(DUMMY_CREDENTIALS)
    return {}


class SqsCaller:
    """Calls one SQS client's operations by name, each through the retry policy of its queue."""

    def __init__(self, client: Any, retrying: Callable[[str], Retrying], endpoint: str) -> None:
        self.client = client
        self._retrying = retrying
        self.endpoint = endpoint

    async def __call__(
        self, operation: str, queue: str, log_fields: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        """``client.<operation>(**params)`` with retries; ``queue`` names it in logs and errors."""
        method = getattr(self.client, operation)

        async def call() -> dict[str, Any]:
            response: dict[str, Any] = await method(**params)
            return response

        return await self._retrying(queue).call(operation, call, log_fields=log_fields)
