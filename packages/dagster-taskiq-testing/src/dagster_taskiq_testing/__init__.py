"""In-memory SQS stub with SQS's real semantics, real SQS servers and a contract suite.

``InMemorySqs`` is one in-process SQS account driven through boto3-shaped (``client()``) and
aiobotocore-shaped (``async_client()``) clients; ``FakeClock`` makes its time explicit.
"""

import importlib.metadata
from typing import TYPE_CHECKING, Any

from dagster_taskiq_testing._async_client import AsyncSqsClient
from dagster_taskiq_testing._clock import Clock, FakeClock, RealClock
from dagster_taskiq_testing._errors import DagsterTaskIQTestingError, ServerUnavailableError
from dagster_taskiq_testing._inspection import CallRecord, MessageView
from dagster_taskiq_testing._message import MessageState
from dagster_taskiq_testing._sync_client import ClientMeta, SqsClient
from dagster_taskiq_testing.sqs import InMemorySqs

if TYPE_CHECKING:
    from dagster_taskiq_testing.broker import InMemorySqsBroker
    from dagster_taskiq_testing.dagster_harness import InProcessTaskIQ, WorkerThreads

__version__ = importlib.metadata.version("dagster-taskiq-testing")

__all__ = [
    "AsyncSqsClient",
    "CallRecord",
    "ClientMeta",
    "Clock",
    "DagsterTaskIQTestingError",
    "FakeClock",
    "InMemorySqs",
    "InMemorySqsBroker",
    "InProcessTaskIQ",
    "MessageState",
    "MessageView",
    "RealClock",
    "ServerUnavailableError",
    "SqsClient",
    "WorkerThreads",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The broker imports taskiq and aiobotocore, the harness Dagster: loaded on first use, not
    # with the pytest plugin.
    if name == "InMemorySqsBroker":
        from dagster_taskiq_testing.broker import InMemorySqsBroker  # noqa: PLC0415

        return InMemorySqsBroker
    if name in ("InProcessTaskIQ", "WorkerThreads"):
        from dagster_taskiq_testing import dagster_harness  # noqa: PLC0415

        return getattr(dagster_harness, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
