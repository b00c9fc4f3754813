"""Queue-level operations: create, look up, attributes, list, tags, purge, delete."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from dagster_taskiq_testing import _attributes as attrs
from dagster_taskiq_testing._errors import SqsError, invalid_parameter, queue_does_not_exist
from dagster_taskiq_testing._fifo import FifoQueue
from dagster_taskiq_testing._queue import Queue
from dagster_taskiq_testing._state import AccountState
from dagster_taskiq_testing._validation import check_queue_name

QUEUE_DELETE_COOLDOWN = 60.0
PURGE_COOLDOWN = 60.0


def create_queue(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    name: str = params["QueueName"]
    requested: Mapping[str, Any] = params.get("Attributes") or {}
    fifo = str(requested.get("FifoQueue", "false")).lower() == "true"
    if name.endswith(".fifo") and not fifo:
        check_queue_name(name, fifo=False)
    check_queue_name(name, fifo=fifo)
    values = attrs.normalise(requested, fifo=fifo, creating=True)
    existing = state.queues.get(name)
    if existing is not None:
        for key, value in values.items():
            if existing.attributes.get(key, attrs.defaults(fifo=fifo).get(key)) != value:
                raise SqsError(
                    "QueueNameExists",
                    "A queue already exists with the same name and a different value for "
                    f"attribute {key}",
                )
        return {"QueueUrl": existing.url}
    deleted = state.deleted_at.get(name)
    if deleted is not None and now - deleted < QUEUE_DELETE_COOLDOWN:
        raise SqsError(
            "QueueDeletedRecently",
            "You must wait 60 seconds after deleting a queue before you can create another with "
            "the same name.",
        )
    merged = attrs.defaults(fifo=fifo) | values
    attrs.check_throughput_combination(merged)
    _check_redrive_target(state, merged.get("RedrivePolicy"), fifo=fifo)
    cls = FifoQueue if fifo else Queue
    queue = cls(
        name=name,
        url=state.url_for(name),
        arn=state.arn_for(name),
        key=state.next_queue_key(name),
        attributes=merged,
        created_at=now,
        tags=params.get("tags"),
    )
    state.queues[name] = queue
    return {"QueueUrl": queue.url}


def _check_redrive_target(state: AccountState, raw: str | None, *, fifo: bool) -> None:
    if not raw:
        return
    policy = attrs.parse_redrive_policy(raw)
    target = state.queue_by_arn(policy.dead_letter_target_arn)
    if target is None:
        raise SqsError(
            "QueueDoesNotExist", f"Could not find DLQ for {policy.dead_letter_target_arn}"
        )
    if target.fifo != fifo:
        raise invalid_parameter(
            f"Value {raw} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must "
            "be the same type of queue as the source."
        )


def get_queue_url(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    owner = params.get("QueueOwnerAWSAccountId")
    queue = state.queues.get(params["QueueName"])
    if queue is None or (owner is not None and owner != state.account_id):
        raise queue_does_not_exist()
    return {"QueueUrl": queue.url}


def queue_attributes(queue: Queue, now: float) -> dict[str, str]:
    visible, in_flight, delayed = queue.counts(now)
    out = dict(queue.attributes)
    out.update(
        {
            "QueueArn": queue.arn,
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "CreatedTimestamp": str(int(queue.created_at)),
            "LastModifiedTimestamp": str(int(queue.last_modified_at)),
        }
    )
    return out


def get_queue_attributes(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    names: list[str] = list(params.get("AttributeNames") or [])
    for name in names:
        if name not in attrs.READABLE:
            raise SqsError("InvalidAttributeName", f"Unknown Attribute {name}.")
    if not names:
        return {}
    everything = queue_attributes(queue, now)
    if "All" in names:
        return {"Attributes": everything}
    selected = {name: everything[name] for name in names if name in everything}
    return {"Attributes": selected} if selected else {}


def set_queue_attributes(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    values = attrs.normalise(params["Attributes"], fifo=queue.fifo, creating=False)
    attrs.check_throughput_combination(queue.attributes | values)
    _check_redrive_target(state, values.get("RedrivePolicy"), fifo=queue.fifo)
    queue.set_attributes(values, now=now)
    return {}


def list_queues(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    prefix: str = params.get("QueueNamePrefix") or ""
    names = [name for name in state.queues if name.startswith(prefix)]
    return _paginate(
        [state.queues[n].url for n in names], params, key="QueueUrls", parameter="MaxResults"
    )


def _paginate(
    urls: list[str], params: Mapping[str, Any], *, key: str, parameter: str
) -> dict[str, Any]:
    max_results = params.get(parameter)
    start = 0
    token = params.get("NextToken")
    if token:
        try:
            start = int(base64.b64decode(token).decode("ascii"))
        except (ValueError, UnicodeError) as exc:
            raise invalid_parameter("Invalid NextToken value.") from exc
    if max_results is not None and not 1 <= max_results <= 1000:
        raise invalid_parameter(
            f"Value {max_results} for parameter MaxResults is invalid. Reason: MaxResults must be "
            "an integer between 1 and 1000."
        )
    end = len(urls) if max_results is None else min(len(urls), start + max_results)
    page = urls[start:end]
    out: dict[str, Any] = {key: page} if page else {}
    if max_results is not None and end < len(urls):
        out["NextToken"] = base64.b64encode(str(end).encode("ascii")).decode("ascii")
    return out


def list_dead_letter_source_queues(
    state: AccountState, params: Mapping[str, Any], now: float
) -> dict[str, Any]:
    target = state.queue(params["QueueUrl"])
    sources = [
        queue.url
        for queue in state.queues.values()
        if queue.redrive_policy is not None
        and state.queue_by_arn(queue.redrive_policy.dead_letter_target_arn) is target
    ]
    out = _paginate(sources, params, key="queueUrls", parameter="MaxResults")
    out.setdefault("queueUrls", [])
    return out


def purge_queue(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    if queue.last_purged_at is not None and now - queue.last_purged_at < PURGE_COOLDOWN:
        raise SqsError(
            "PurgeQueueInProgress",
            f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds.",
        )
    queue.last_purged_at = now
    queue.clear()
    return {}


def delete_queue(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    queue.clear()
    del state.queues[queue.name]
    state.deleted_at[queue.name] = now
    return {}


def tag_queue(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    state.queue(params["QueueUrl"]).tags.update(params["Tags"])
    return {}


def untag_queue(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    queue = state.queue(params["QueueUrl"])
    for key in params["TagKeys"]:
        queue.tags.pop(key, None)
    return {}


def list_queue_tags(state: AccountState, params: Mapping[str, Any], now: float) -> dict[str, Any]:
    tags = state.queue(params["QueueUrl"]).tags
    return {"Tags": dict(tags)} if tags else {}
