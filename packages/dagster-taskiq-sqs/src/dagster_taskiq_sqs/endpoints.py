"""Queue URLs that a custom endpoint (LocalStack) hands out but the caller cannot reach.

LocalStack answers ``GetQueueUrl`` / ``CreateQueue`` with URLs such as
``http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/steps.fifo`` or
``http://localhost.localstack.cloud:4566/...``: names that resolve only where LocalStack's DNS
is set up (often not inside CI runners or other containers). With a custom endpoint configured,
such URLs are rewritten to the endpoint's scheme, host and port, keeping the path.
"""

from __future__ import annotations

import urllib.parse

__all__ = ["is_localstack_host", "rewrite_queue_url"]

_LOCALSTACK_DOMAIN = "localhost.localstack.cloud"


def is_localstack_host(host: str) -> bool:
    """``localhost.localstack.cloud`` and its subdomains (``sqs.<region>.localhost...``)."""
    host = host.lower().rstrip(".")
    return host == _LOCALSTACK_DOMAIN or host.endswith("." + _LOCALSTACK_DOMAIN)


def rewrite_queue_url(queue_url: str, endpoint_url: str | None) -> str:
    """``queue_url`` pointed at ``endpoint_url`` when its host is LocalStack's; else unchanged."""
    if endpoint_url is None:
        return queue_url
    queue = urllib.parse.urlsplit(queue_url)
    if not queue.hostname or not is_localstack_host(queue.hostname):
        return queue_url
    endpoint = urllib.parse.urlsplit(endpoint_url)
    if endpoint.hostname and is_localstack_host(endpoint.hostname):
        return queue_url  # the caller reaches LocalStack's own names: keep them
    return urllib.parse.urlunsplit(
        (endpoint.scheme, endpoint.netloc, queue.path, queue.query, queue.fragment)
    )
