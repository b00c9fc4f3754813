"""The synchronous client: the method names, keyword parameters and responses of boto3's."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dagster_taskiq_testing._service_model import client_exceptions

if TYPE_CHECKING:
    from dagster_taskiq_testing.sqs import InMemorySqs


@dataclass(frozen=True, slots=True)
class ClientMeta:
    """The bits of ``client.meta`` code commonly reads."""

    service_name: str
    region_name: str
    endpoint_url: str


class SqsClient:
    """A boto3-shaped SQS client bound to one ``InMemorySqs``.

    Errors are ``botocore.exceptions.ClientError`` (the modelled subclasses in
    ``client.exceptions`` where SQS has one) with AWS's error codes; bad parameters raise
    botocore's ``ParamValidationError`` as a real client would.
    """

    def __init__(self, account: InMemorySqs) -> None:
        self._account = account
        self.meta = ClientMeta("sqs", account.region_name, account.endpoint_url)

    @property
    def exceptions(self) -> Any:
        """Like ``boto3.client("sqs").exceptions``: ``QueueDoesNotExist``, ..."""
        return client_exceptions()

    def __enter__(self) -> SqsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; present because boto3 clients have it."""

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        """Receive up to 10 messages, long polling up to ``WaitTimeSeconds`` (blocks the thread)."""
        return self._account.receive(kwargs)

    def create_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Create a queue, or return the URL of the existing one with the same attributes."""
        return self._account.invoke("create_queue", kwargs)

    def get_queue_url(self, **kwargs: Any) -> dict[str, Any]:
        """Look a queue's URL up by name."""
        return self._account.invoke("get_queue_url", kwargs)

    def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        """Read queue attributes, including the approximate message counts."""
        return self._account.invoke("get_queue_attributes", kwargs)

    def set_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        """Change queue attributes."""
        return self._account.invoke("set_queue_attributes", kwargs)

    def list_queues(self, **kwargs: Any) -> dict[str, Any]:
        """List queue URLs, optionally by prefix and paginated."""
        return self._account.invoke("list_queues", kwargs)

    def list_dead_letter_source_queues(self, **kwargs: Any) -> dict[str, Any]:
        """List the queues whose RedrivePolicy targets this queue."""
        return self._account.invoke("list_dead_letter_source_queues", kwargs)

    def purge_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Delete every message (once per 60 seconds)."""
        return self._account.invoke("purge_queue", kwargs)

    def delete_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Delete a queue and its messages."""
        return self._account.invoke("delete_queue", kwargs)

    def tag_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Add tags."""
        return self._account.invoke("tag_queue", kwargs)

    def untag_queue(self, **kwargs: Any) -> dict[str, Any]:
        """Remove tags."""
        return self._account.invoke("untag_queue", kwargs)

    def list_queue_tags(self, **kwargs: Any) -> dict[str, Any]:
        """Read tags."""
        return self._account.invoke("list_queue_tags", kwargs)

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        """Send one message."""
        return self._account.invoke("send_message", kwargs)

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Send up to 10 messages."""
        return self._account.invoke("send_message_batch", kwargs)

    def delete_message(self, **kwargs: Any) -> dict[str, Any]:
        """Delete a received message by its receipt handle."""
        return self._account.invoke("delete_message", kwargs)

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Delete up to 10 received messages."""
        return self._account.invoke("delete_message_batch", kwargs)

    def change_message_visibility(self, **kwargs: Any) -> dict[str, Any]:
        """Change an in-flight message's visibility timeout (0 releases it)."""
        return self._account.invoke("change_message_visibility", kwargs)

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        """Change up to 10 in-flight messages' visibility timeouts."""
        return self._account.invoke("change_message_visibility_batch", kwargs)
