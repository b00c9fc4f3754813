"""In-memory SQS stub with SQS's real semantics, real SQS servers and a contract suite.

``InMemorySqs`` is one in-process SQS account driven through boto3-shaped (``client()``) and
aiobotocore-shaped (``async_client()``) clients; ``FakeClock`` makes its time explicit.
"""

from dagster_taskiq_testing._async_client import AsyncSqsClient
from dagster_taskiq_testing._clock import Clock, FakeClock, RealClock
from dagster_taskiq_testing._errors import DagsterTaskIQTestingError, ServerUnavailableError
from dagster_taskiq_testing._inspection import CallRecord, MessageView
from dagster_taskiq_testing._message import MessageState
from dagster_taskiq_testing._sync_client import ClientMeta, SqsClient
from dagster_taskiq_testing.sqs import InMemorySqs

__all__ = [
    "AsyncSqsClient",
    "CallRecord",
    "ClientMeta",
    "Clock",
    "DagsterTaskIQTestingError",
    "FakeClock",
    "InMemorySqs",
    "MessageState",
    "MessageView",
    "RealClock",
    "ServerUnavailableError",
    "SqsClient",
]
