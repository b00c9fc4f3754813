"""The async client: aiobotocore's shape (awaitable methods, ``async with``)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from dagster_taskiq_testing._service_model import client_exceptions
from dagster_taskiq_testing._sync_client import ClientMeta

if TYPE_CHECKING:
    from dagster_taskiq_testing.sqs import InMemorySqs


class AsyncSqsClient:
    """An aiobotocore-shaped SQS client bound to one ``InMemorySqs``.

    ``async with stub.async_client() as sqs: await sqs.send_message(...)``. Long polls wait on
    an ``asyncio.Event`` and never block the event loop; any number of loops may share a stub.
    """

    def __init__(self, account: InMemorySqs) -> None:
        self._account = account
        self.meta = ClientMeta("sqs", account.region_name, account.endpoint_url)

    @property
    def exceptions(self) -> Any:
        """Like ``client.exceptions`` of aiobotocore: ``QueueDoesNotExist``, ..."""
        return client_exceptions()

    async def __aenter__(self) -> AsyncSqsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to release; present because aiobotocore clients have it."""

    async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        """Receive up to 10 messages, long polling up to ``WaitTimeSeconds`` without blocking."""
        return await self._account.receive_async(kwargs)

    async def create_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Create a queue, or return the URL of the existing one with the same attributes."""
        return self._account.invoke("create_queue", kwargs)

    async def get_queue_url(self, **kwargs: Any) -> dict[str, Any]:
        """Look a queue's URL up by name."""
        return self._account.invoke("get_queue_url", kwargs)

    async def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        """Read queue attributes, including the approximate message counts."""
        return self._account.invoke("get_queue_attributes", kwargs)

    async def set_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        """Change queue attributes."""
        return self._account.invoke("set_queue_attributes", kwargs)

    async def list_queues(self, **kwargs: Any) -> dict[str, Any]:
        """List queue URLs, optionally by prefix and paginated."""
        return self._account.invoke("list_queues", kwargs)

    async def list_dead_letter_source_queues(self, **kwargs: Any) -> dict[str, Any]:
        """List the queues whose RedrivePolicy targets this queue."""
        return self._account.invoke("list_dead_letter_source_queues", kwargs)

    async def purge_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Delete every message (once per 60 seconds)."""
        return self._account.invoke("purge_queue", kwargs)

    async def delete_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Delete a queue and its messages."""
        return self._account.invoke("delete_queue", kwargs)

    async def tag_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Add tags."""
        return self._account.invoke("tag_queue", kwargs)

    async def untag_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Remove tags."""
        return self._account.invoke("untag_queue", kwargs)

    async def list_queue_tags(self, **kwargs: Any) -> dict[str, Any]:
        """Read tags."""
        return self._account.invoke("list_queue_tags", kwargs)

    async def send_message(self, **kwargs: Any) -> dict[str, Any]:
        """Send one message."""
        return self._account.invoke("send_message", kwargs)

    async def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Send up to 10 messages."""
        return self._account.invoke("send_message_batch", kwargs)

    async def delete_message(self, **kwargs: Any) -> dict[str, Any]:
        """Delete a received message by its receipt handle."""
        return self._account.invoke("delete_message", kwargs)

    async def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Delete up to 10 received messages."""
        return self._account.invoke("delete_message_batch", kwargs)

    async def change_message_visibility(self, **kwargs: Any) -> dict[str, Any]:
        """Change an in-flight message's visibility timeout (0 releases it)."""
        return self._account.invoke("change_message_visibility", kwargs)

    async def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Change up to 10 in-flight messages' visibility timeouts."""
        return self._account.invoke("change_message_visibility_batch", kwargs)
