"""Errors: the package's root exception and SQS errors shaped like botocore's ``ClientError``."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from dagster_taskiq_testing._ids import new_id
from dagster_taskiq_testing._service_model import exception_class


class DagsterTaskIQTestingError(Exception):
    """Root of every exception raised by dagster-taskiq-testing itself (not SQS errors)."""


class ServerUnavailableError(DagsterTaskIQTestingError):
    """A real SQS server (moto, LocalStack) could not be built or started."""


# The error code botocore reports (``Error.Code``, taken from the ``x-amzn-query-error`` header
# real SQS sends) for each error, keyed by the service model's shape name (``QueryErrorCode``).
AWS_ERROR_CODES: dict[str, str] = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "ReceiptHandleIsInvalid": "ReceiptHandleIsInvalid",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAttributeName": "InvalidAttributeName",
    "InvalidAttributeValue": "InvalidAttributeValue",
    "InvalidMessageContents": "InvalidMessageContents",
    "InvalidIdFormat": "InvalidIdFormat",
    "OverLimit": "OverLimit",
    # Not modelled as shapes; the query codes are what SQS puts in the header.
    "InvalidParameterValueException": "InvalidParameterValue",
    "MissingRequiredParameterException": "MissingParameter",
}


class SqsError(Exception):
    """An SQS error raised inside the stub, turned into a ``ClientError`` at the client boundary.

    ``shape`` is the service model's error shape name (``QueueDoesNotExist``...), or one of the
    unmodelled ``InvalidParameterValueException`` / ``MissingRequiredParameterException``.
    """

    def __init__(self, shape: str, message: str) -> None:
        super().__init__(f"{shape}: {message}")
        self.shape = shape
        self.code = AWS_ERROR_CODES[shape]
        self.message = message
        self.sender_fault = True

    def to_client_error(self, operation_name: str) -> ClientError:
        """The exception botocore would raise: a modelled subclass where SQS has one."""
        request_id = new_id()
        response: dict[str, Any] = {
            "Error": {
                "Message": self.message,
                "Code": self.code,
                "QueryErrorCode": self.shape,
                "Type": "Sender",
            },
            "ResponseMetadata": {
                "RequestId": request_id,
                "HTTPStatusCode": 400,
                "HTTPHeaders": {
                    "x-amzn-requestid": request_id,
                    "x-amzn-query-error": f"{self.code};Sender",
                    "content-type": "application/x-amz-json-1.0",
                },
                "RetryAttempts": 0,
            },
        }
        cls = exception_class(self.shape)
        return cls(response, operation_name)


def invalid_parameter(message: str) -> SqsError:
    return SqsError("InvalidParameterValueException", message)


def missing_parameter(name: str) -> SqsError:
    return SqsError(
        "MissingRequiredParameterException", f"The request must contain the parameter {name}."
    )


def queue_does_not_exist() -> SqsError:
    return SqsError("QueueDoesNotExist", "The specified queue does not exist.")


def invalid_receipt_handle(handle: str) -> SqsError:
    return SqsError(
        "ReceiptHandleIsInvalid",
        f'The input receipt handle "{handle}" is not a valid receipt handle.',
    )
