"""Message-level operations: send, receive, delete, change visibility, and their batches."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster_taskiq_testing import _attributes as attrs
from dagster_taskiq_testing._checksums import md5_of_body, md5_of_message_attributes, sha256_of_body
from dagster_taskiq_testing._errors import (
    SqsError,
    invalid_parameter,
    invalid_receipt_handle,
    missing_parameter,
)
from dagster_taskiq_testing._fifo import FifoQueue
from dagster_taskiq_testing._ids import new_id
from dagster_taskiq_testing._message import (
    StoredMessage,
    make_receipt_handle,
    parse_receipt_handle,
)
from dagster_taskiq_testing._queue import Queue
from dagster_taskiq_testing._state import AccountState
from dagster_taskiq_testing._validation import (
    check_batch,
    check_batch_size,
    check_body,
    check_group_or_dedup_id,
    check_range,
    normalise_message_attributes,
)

_SYSTEM_ATTRIBUTES = frozenset(
    {
        "All",
        "SenderId",
        "SentTimestamp",
        "ApproximateReceiveCount",
        "ApproximateFirstReceiveTimestamp",
        "SequenceNumber",
        "MessageDeduplicationId",
        "MessageGroupId",
        "AWSTraceHeader",
        "DeadLetterQueueSourceArn",
    }
)

# -- send -------------------------------------------------------------------------------------


def send_message(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    return _send(state.queue(params["QueueUrl"]), params, now)


def _send(queue: Queue, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    body: str = params["MessageBody"]
    check_body(body)
    message_attributes, attributes_size = normalise_message_attributes(
        params.get("MessageAttributes")
    )
    size = len(body.encode("utf-8")) + attributes_size
    if size > queue.maximum_message_size:
        raise invalid_parameter(
            "One or more parameters are invalid. Reason: Message must be shorter than "
            f"{queue.maximum_message_size} bytes."
        )
    delay: int | None = params.get("DelaySeconds")
    if delay is not None:
        if queue.fifo and delay:
            raise invalid_parameter(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request include "
                "parameter that is not valid for this queue type."
            )
        if not 0 <= delay <= attrs.MAX_DELAY_SECONDS:
            raise invalid_parameter(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must "
                "be >= 0 and <= 900."
            )
    else:
        delay = queue.delay_seconds
    group_id: str | None = params.get("MessageGroupId")
    trace = (params.get("MessageSystemAttributes") or {}).get("AWSTraceHeader")
    md5_attributes = md5_of_message_attributes(message_attributes) if message_attributes else None
    md5_body = md5_of_body(body)
    sequence_number: str | None = None
    dedup_id = _deduplication_id(queue, params, body)
    if isinstance(queue, FifoQueue):
        assert group_id is not None
        assert dedup_id is not None
        duplicate = queue.find_duplicate(group_id, dedup_id, now)
        if duplicate is not None:
            return _send_result(
                duplicate.message_id, md5_body, md5_attributes, duplicate.sequence_number
            )
        sequence_number = queue.next_sequence_number()
    message = StoredMessage(
        message_id=new_id(),
        body=body,
        md5_of_body=md5_body,
        message_attributes=message_attributes,
        md5_of_message_attributes=md5_attributes,
        sent_at=now,
        visible_at=now + delay,
        group_id=group_id,
        deduplication_id=dedup_id,
        sequence_number=sequence_number,
        trace_header=trace.get("StringValue") if isinstance(trace, Mapping) else None,
        size=size,
    )
    queue.add(message, now)
    if isinstance(queue, FifoQueue):
        assert group_id is not None
        assert dedup_id is not None
        queue.remember(group_id, dedup_id, message, now)
    return _send_result(message.message_id, md5_body, md5_attributes, sequence_number)


def _deduplication_id(queue: Queue, params: Mapping[str, Any], body: str) -> str | None:
    """Check the group and deduplication ids for the queue type; the effective dedup id."""
    group_id: str | None = params.get("MessageGroupId")
    dedup_id: str | None = params.get("MessageDeduplicationId")
    if not isinstance(queue, FifoQueue):
        if dedup_id is not None:
            raise invalid_parameter(
                f"Value {dedup_id} for parameter MessageDeduplicationId is invalid. Reason: The "
                "request includes a parameter that is not valid for this queue type."
            )
        if group_id is not None:
            check_group_or_dedup_id("MessageGroupId", group_id)
        return None
    if group_id is None:
        raise missing_parameter("MessageGroupId")
    check_group_or_dedup_id("MessageGroupId", group_id)
    if dedup_id is None:
        if not queue.content_based_deduplication:
            raise invalid_parameter(
                "The queue should either have ContentBasedDeduplication enabled or "
                "MessageDeduplicationId provided explicitly"
            )
        dedup_id = sha256_of_body(body)
    check_group_or_dedup_id("MessageDeduplicationId", dedup_id)
    return dedup_id


def _send_result(
    message_id: str, md5_body: str, md5_attributes: str | None, sequence_number: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"MD5OfMessageBody": md5_body}
    if md5_attributes is not None:
        out["MD5OfMessageAttributes"] = md5_attributes
    out["MessageId"] = message_id
    if sequence_number is not None:
        out["SequenceNumber"] = sequence_number
    return out


def send_message_batch(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    entries: Sequence[Mapping[str, Any]] = params["Entries"]
    check_batch(entries, "SendMessageBatchRequestEntry")
    total = 0
    for entry in entries:
        total += len(str(entry.get("MessageBody", "")).encode("utf-8"))
        _body, size = _attributes_size(entry)
        total += size
    check_batch_size(total)

    def send_one(entry: Mapping[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in entry.items() if k != "Id"}
        return _send(queue, fields, now)

    return _batch(entries, send_one)


def _attributes_size(entry: Mapping[str, Any]) -> tuple[None, int]:
    try:
        return None, normalise_message_attributes(entry.get("MessageAttributes"))[1]
    except SqsError:
        return None, 0


def _batch(
    entries: Sequence[Mapping[str, Any]], action: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for entry in entries:
        try:
            result = action(entry)
        except SqsError as exc:
            failed.append(
                {
                    "Id": entry["Id"],
                    "SenderFault": exc.sender_fault,
                    "Code": exc.code,
                    "Message": exc.message,
                }
            )
        else:
            successful.append({"Id": entry["Id"], **result})
    return {"Successful": successful, "Failed": failed}


# -- receive ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiveRequest:
    max_messages: int
    visibility_timeout: int
    wait_time: int
    system_attributes: frozenset[str]
    message_attributes: tuple[str, ...]


def parse_receive(queue: Queue, params: Mapping[str, Any]) -> ReceiveRequest:
    max_messages: int = params.get("MaxNumberOfMessages", 1)
    check_range("MaxNumberOfMessages", max_messages, 1, attrs.MAX_BATCH_ENTRIES)
    visibility: int | None = params.get("VisibilityTimeout")
    if visibility is None:
        visibility = queue.visibility_timeout
    else:
        check_range("VisibilityTimeout", visibility, 0, attrs.MAX_VISIBILITY_TIMEOUT)
    wait: int | None = params.get("WaitTimeSeconds")
    if wait is None:
        wait = queue.receive_wait_time
    else:
        check_range("WaitTimeSeconds", wait, 0, attrs.MAX_WAIT_TIME_SECONDS)
    names = frozenset(params.get("AttributeNames") or ()) | frozenset(
        params.get("MessageSystemAttributeNames") or ()
    )
    for name in names:
        if name not in _SYSTEM_ATTRIBUTES:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
    return ReceiveRequest(
        max_messages=max_messages,
        visibility_timeout=visibility,
        wait_time=wait,
        system_attributes=names,
        message_attributes=tuple(params.get("MessageAttributeNames") or ()),
    )


def receive_now(
    state: AccountState, queue: Queue, request: ReceiveRequest, now: float
) -> list[dict[str, Any]]:
    """Receive what is available at ``now`` (no waiting), moving poison messages to the DLQ."""
    queue.refresh(now)
    out: list[dict[str, Any]] = []
    policy = queue.redrive_policy
    dlq = state.queue_by_arn(policy.dead_letter_target_arn) if policy is not None else None
    while len(out) < request.max_messages:
        candidates = queue.candidates(now, request.max_messages - len(out))
        if not candidates:
            break
        moved = False
        for message in candidates:
            if (
                policy is not None
                and dlq is not None
                and message.receive_count >= policy.max_receive_count
            ):
                _move_to_dead_letter_queue(queue, dlq, message, now)
                moved = True
                continue
            message.receive_count += 1
            message.receipt_serial += 1
            if message.first_received_at is None:
                message.first_received_at = now
            message.last_received_at = now
            queue.set_visible_at(message, now + request.visibility_timeout, now)
            out.append(_render(queue, message, request))
        if not moved:
            break
    return out


def _move_to_dead_letter_queue(
    source: Queue, dlq: Queue, message: StoredMessage, now: float
) -> None:
    source.remove(message)
    moved = StoredMessage(
        message_id=message.message_id,
        body=message.body,
        md5_of_body=message.md5_of_body,
        message_attributes=message.message_attributes,
        md5_of_message_attributes=message.md5_of_message_attributes,
        sent_at=message.sent_at,
        visible_at=now,
        group_id=message.group_id,
        deduplication_id=message.deduplication_id,
        sequence_number=(
            dlq.next_sequence_number() if isinstance(dlq, FifoQueue) else message.sequence_number
        ),
        sender_id=message.sender_id,
        trace_header=message.trace_header,
        dead_letter_source_arn=source.arn,
        receive_count=message.receive_count,
        first_received_at=message.first_received_at,
        size=message.size,
    )
    dlq.add(moved, now)


def _render(queue: Queue, message: StoredMessage, request: ReceiveRequest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": make_receipt_handle(queue.key, message),
        "MD5OfBody": message.md5_of_body,
        "Body": message.body,
    }
    if request.system_attributes:
        system = _system_attributes(message, request.system_attributes)
        if system:
            out["Attributes"] = system
    if request.message_attributes and message.message_attributes:
        selected = _select_message_attributes(
            message.message_attributes, request.message_attributes
        )
        if selected:
            out["MD5OfMessageAttributes"] = md5_of_message_attributes(selected)
            out["MessageAttributes"] = {name: {**value} for name, value in selected.items()}
    return out


def _system_attributes(message: StoredMessage, names: frozenset[str]) -> dict[str, str]:
    first = message.first_received_at
    values: dict[str, str | None] = {
        "SenderId": message.sender_id,
        "SentTimestamp": str(int(message.sent_at * 1000)),
        "ApproximateReceiveCount": str(message.receive_count),
        "ApproximateFirstReceiveTimestamp": None if first is None else str(int(first * 1000)),
        "SequenceNumber": message.sequence_number,
        "MessageDeduplicationId": message.deduplication_id,
        "MessageGroupId": message.group_id,
        "AWSTraceHeader": message.trace_header,
        "DeadLetterQueueSourceArn": message.dead_letter_source_arn,
    }
    everything = "All" in names
    return {
        name: value
        for name, value in values.items()
        if value is not None and (everything or name in names)
    }


def _select_message_attributes(
    attributes: Mapping[str, dict[str, Any]], wanted: Sequence[str]
) -> dict[str, dict[str, Any]]:
    if "All" in wanted or ".*" in wanted:
        return dict(attributes)
    prefixes = tuple(name[:-1] for name in wanted if name.endswith(".*"))
    exact = set(wanted)
    return {
        name: value
        for name, value in attributes.items()
        if name in exact or (prefixes and name.startswith(prefixes))
    }


# -- delete and change visibility -------------------------------------------------------------


def _message_for(queue: Queue, handle: str) -> StoredMessage | None:
    """The message a receipt handle refers to, if it still exists and the handle is its latest.

    Raises ``ReceiptHandleIsInvalid`` for a handle this queue never issued.
    """
    parsed = parse_receipt_handle(handle)
    if parsed is None or parsed[0] != queue.key:
        raise invalid_receipt_handle(handle)
    _key, message_id, serial = parsed
    message = queue.get(message_id)
    if message is None or message.receipt_serial != serial:
        return None
    return message


def delete_message(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    _delete(queue, params["ReceiptHandle"])
    return {}


def _delete(queue: Queue, handle: str) -> None:
    # AWS: deleting with an older receipt handle of a message received again "succeeds, but the
    # message will not be deleted"; deleting an already deleted message succeeds.
    message = _message_for(queue, handle)
    if message is not None:
        queue.remove(message)


def delete_message_batch(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    return _act_on_each(
        state,
        params,
        "DeleteMessageBatchRequestEntry",
        lambda queue, entry: _delete(queue, entry["ReceiptHandle"]),
    )


def _act_on_each(
    state: AccountState,
    params: Mapping[str, Any],
    entry_type: str,
    act: Callable[[Queue, Mapping[str, Any]], None],
) -> dict[str, Any]:
    """A batch request whose entries each ``act`` on a message of the queue and answer nothing
    but their success (or their own error)."""
    queue = state.queue(params["QueueUrl"])
    entries: Sequence[Mapping[str, Any]] = params["Entries"]
    check_batch(entries, entry_type)

    def act_on_one(entry: Mapping[str, Any]) -> dict[str, Any]:
        act(queue, entry)
        return {}

    return _batch(entries, act_on_one)


def change_message_visibility(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    _change_visibility(queue, params["ReceiptHandle"], params["VisibilityTimeout"], now)
    return {}


def _change_visibility(queue: Queue, handle: str, timeout: int, now: float) -> None:
    check_range("VisibilityTimeout", timeout, 0, attrs.MAX_VISIBILITY_TIMEOUT)
    queue.refresh(now)
    message = _message_for(queue, handle)
    if message is None:
        raise SqsError("ReceiptHandleIsInvalid", "The receipt handle has expired.")
    if message.visible_at <= now:
        raise SqsError("MessageNotInflight", "The message referred to isn't in flight.")
    received_at = message.last_received_at if message.last_received_at is not None else now
    if now + timeout - received_at > attrs.MAX_VISIBILITY_TIMEOUT:
        raise invalid_parameter(
            f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
            "VisibilityTimeout for the message is beyond the limit "
            f"[{attrs.MAX_VISIBILITY_TIMEOUT} seconds]"
        )
    queue.set_visible_at(message, now + timeout, now)


def change_message_visibility_batch(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    return _act_on_each(
        state,
        params,
        "ChangeMessageVisibilityBatchRequestEntry",
        lambda queue, entry: _change_visibility(
            queue, entry["ReceiptHandle"], entry.get("VisibilityTimeout", 0), now
        ),
    )
