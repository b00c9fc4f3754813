"""Dagster's executor features passed through to the run loop: ``tag_concurrency_limits`` (held
across all workers of the run) and ``step_dependency_config``; and their bad input."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance
from taskiq.message import TaskiqMessage

from dagster_taskiq import ExecutorSettings, OpExecutionTask, PriorityLane, SqlIdempotencyStore
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.errors import ExecutorConfigError
from support import feature_jobs
from support.executor_harness import (
    RunReport,
    run_job,
    workers_on_a_queue,
)
from support.thread_broker import ThreadQueueBroker

LOCATIONS = CodeLocations([CodeLocation(module="support.feature_jobs")])


def run_on_workers(
    job_fn: Any,
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    *,
    output_nodes: tuple[str, ...] = (),
    **settings: Any,
) -> RunReport:
    """``job_fn`` on two in-process workers of three slots each (six steps at once at most)."""
    executor_settings = ExecutorSettings(backend="injected", poll_interval=0.2, **settings)
    with workers_on_a_queue(store, LOCATIONS, count=2, concurrency=3, settings=executor_settings):
        return run_job(job_fn, instance, store, output_nodes=output_nodes)


def test_tag_concurrency_limits_hold_across_workers(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    feature_jobs.TAGGED.reset()
    feature_jobs.ALL.reset()
    limits = ({"key": "database", "value": "warehouse", "limit": 2},)
    report = run_on_workers(
        feature_jobs.tagged_fan_out, instance, store, tag_concurrency_limits=limits
    )
    assert report.success
    assert len(report.outcomes) == 8
    assert feature_jobs.TAGGED.most <= 2, feature_jobs.TAGGED.most
    assert feature_jobs.TAGGED.most == 2  # the limit, not a lower one, was what held them
    assert feature_jobs.ALL.most > 2  # untagged steps were not held by the tag's limit


def test_without_a_tag_limit_tagged_steps_run_together(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    """The check above can fail: six slots run more than two tagged steps at once."""
    feature_jobs.TAGGED.reset()
    report = run_on_workers(feature_jobs.tagged_fan_out, instance, store)
    assert report.success
    assert feature_jobs.TAGGED.most > 2


def test_step_dependency_config_lets_a_consumer_start_before_its_producer_ends(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    feature_jobs.DOWNSTREAM_STARTED.clear()
    report = run_on_workers(
        feature_jobs.early_output,
        instance,
        store,
        output_nodes=("uses_late",),
        step_dependency_config=feature_jobs_config(require_upstream_step_success=False),
    )
    assert report.success
    assert report.outcomes == {
        "two_outputs": "success",
        "uses_early": "success",
        "uses_late": "success",
    }
    assert feature_jobs.DOWNSTREAM_STARTED.is_set()
    # the producer saw its consumer start while it was still running
    assert report.outputs == {"uses_late": True}


def feature_jobs_config(*, require_upstream_step_success: bool) -> Any:
    return ExecutorSettings.from_config(
        {"step_dependency_config": {"require_upstream_step_success": require_upstream_step_success}}
    ).step_dependency_config


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ([{"key": "database", "limit": 0}], "tag_concurrency_limits[0].limit"),
        ([{"key": "a", "limit": 1}, {"key": "b", "limit": -3}], "tag_concurrency_limits[1].limit"),
        ([{"key": "", "limit": 2}], "tag_concurrency_limits[0].key"),
    ],
)
def test_a_bad_tag_limit_is_refused_naming_the_entry(limits: Any, fragment: str) -> None:
    with pytest.raises(ExecutorConfigError, match=fragment.replace("[", r"\[")):
        ExecutorSettings.from_config({"tag_concurrency_limits": limits})


def _sent_queues(broker: ThreadQueueBroker) -> dict[str, str | None]:
    """step key -> the queue its message was sent to (None: the broker's own)."""
    sent = {}
    for message in broker.sent:
        task = OpExecutionTask.from_json(TaskiqMessage.model_validate_json(message.message).args[0])
        sent[task.step_key] = task.queue
    return sent


LANES = (PriorityLane(10, "critical"), PriorityLane(1, "urgent"))


@pytest.mark.parametrize(
    ("run_tags", "expected"),
    [
        ({}, {"urgent": "urgent", "whenever": None, "unmarked": None, "routed": "its-own"}),
        # The run's priority is its steps' unless an op has its own.
        (
            {"dagster/priority": "20"},
            {"urgent": "urgent", "whenever": None, "unmarked": "critical", "routed": "its-own"},
        ),
    ],
)
def test_a_steps_priority_picks_its_lane(
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    run_tags: dict[str, str],
    expected: dict[str, str | None],
) -> None:
    settings = ExecutorSettings(backend="injected", poll_interval=0.2, priority_lanes=LANES)
    with workers_on_a_queue(store, LOCATIONS, settings=settings) as broker:
        report = run_job(feature_jobs.prioritised, instance, store, tags=run_tags)
    assert report.success
    assert _sent_queues(broker) == expected


def test_the_lanes_come_from_the_executor_config_highest_first() -> None:
    settings = ExecutorSettings.from_config(
        {
            "priority_lanes": [
                {"min_priority": 1, "queue": "urgent"},
                {"min_priority": 10, "queue": "critical"},
            ]
        }
    )
    assert settings.priority_lanes == LANES


@pytest.mark.parametrize(
    ("lanes", "fragment"),
    [
        ([{"min_priority": 1, "queue": ""}], "names no queue"),
        (
            [{"min_priority": 1, "queue": "a"}, {"min_priority": 1, "queue": "b"}],
            "two lanes of min_priority 1",
        ),
    ],
)
def test_bad_lanes_are_refused_naming_the_field(lanes: Any, fragment: str) -> None:
    with pytest.raises(ExecutorConfigError, match=f"priority_lanes: .*{fragment}"):
        ExecutorSettings.from_config({"priority_lanes": lanes})


def test_a_priority_that_is_not_a_number_fails_the_run_before_any_step_is_sent(
    instance: DagsterInstance, store: SqlIdempotencyStore
) -> None:
    with workers_on_a_queue(store, LOCATIONS) as broker:
        report = run_job(feature_jobs.badly_prioritised, instance, store)
    assert not report.success
    assert broker.sent == []
    errors = [
        str(e.event_specific_data.error.message)
        for e in report.events
        if e.event_type is DagsterEventType.RUN_FAILURE and e.event_specific_data.error
    ]
    assert any("tag dagster/priority of step 'badly_marked'" in error for error in errors), errors
