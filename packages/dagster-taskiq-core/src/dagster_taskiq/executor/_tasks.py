"""Build the ``OpExecutionTask`` of a ready step."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from dagster import serialize_value

from dagster_taskiq._dagster_compat import ExecutionStep, KnownExecutionState, RetryMode
from dagster_taskiq.executor._config import (
    QUEUE_TAG,
    PriorityLane,
    lane_queue,
    step_priority,
    step_timeout,
)
from dagster_taskiq.payloads import CodePointer, OpExecutionTask, idempotency_key


def make_task(
    *,
    run_id: str,
    step: ExecutionStep,
    pointer: CodePointer,
    instance_ref: dict[str, Any],
    known_state: KnownExecutionState,
    retry_mode: RetryMode,
    enqueue_attempt: int = 0,
    run_tags: Mapping[str, str] | None = None,
    priority_lanes: tuple[PriorityLane, ...] = (),
) -> OpExecutionTask:
    """The payload that lets a worker run ``step`` on its own. Its queue: the op's
    ``dagster-taskiq/queue`` tag, else the priority lane its priority reaches, else none (the
    broker's own)."""
    priority = step_priority(step.key, step.tags, run_tags or {})
    return OpExecutionTask(
        run_id=run_id,
        step_key=step.key,
        idempotency_key=idempotency_key(run_id, step.key),
        code=pointer,
        instance_ref=instance_ref,
        created_at=time.time(),
        retry_number=known_state.get_retry_state().get_attempt_count(step.key),
        enqueue_attempt=enqueue_attempt,
        known_state=_known_state_for(step, known_state),
        retry_mode=retry_mode.for_inner_plan().value,
        queue=step.tags.get(QUEUE_TAG) or lane_queue(priority_lanes, priority),
        timeout=step_timeout(step.key, step.tags),
    )


def _known_state_for(step: ExecutionStep, known_state: KnownExecutionState) -> dict[str, Any]:
    """The part of the run's known state that this step needs.

    The whole state grows with the run (every produced output is in it); a step only needs the
    outputs of its own upstream steps, the dynamic mappings and its own retry count. Keeping the
    payload small keeps a 10,000-step run under SQS's message size limit.
    """
    upstream = set(step.get_execution_dependency_keys())
    attempts = known_state.previous_retry_attempts.get(step.key)
    trimmed = KnownExecutionState(
        previous_retry_attempts={step.key: attempts} if attempts else {},
        dynamic_mappings=known_state.dynamic_mappings,
        ready_outputs={h for h in known_state.ready_outputs if h.step_key in upstream},
        step_output_versions={
            h: v for h, v in known_state.step_output_versions.items() if h.step_key in upstream
        },
        parent_state=known_state.parent_state,
    )
    encoded: dict[str, Any] = json.loads(serialize_value(trimmed))
    return encoded
