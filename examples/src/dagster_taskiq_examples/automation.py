"""A schedule and a sensor of ``orders_pipeline``: their runs are started by ``dagster-daemon``
(``dagster dev`` runs one) and their steps run on the workers like any other run.

Both are stopped until turned on in the UI (or made with ``status=RUNNING``). The sensor asks
for one run per new file in the instance's ``inbox`` folder (``$DAGSTER_HOME/inbox``), the file's
name as the run key, so a file is processed once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    sensor,
)

from dagster_taskiq_examples.pipeline import orders_pipeline

QUICK_STEPS = {"resources": {"knobs": {"config": {"step_seconds": 0.0}}}}


def orders_schedule(
    cron: str = "0 6 * * *", status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED
) -> ScheduleDefinition:
    """``orders_pipeline`` on a cron schedule (every day at 06:00 by default)."""
    return ScheduleDefinition(
        name="orders_schedule",
        job=orders_pipeline,
        cron_schedule=cron,
        run_config=QUICK_STEPS,
        default_status=status,
    )


def inbox_sensor(status: DefaultSensorStatus = DefaultSensorStatus.STOPPED) -> SensorDefinition:
    """``orders_pipeline`` once for each new file of ``$DAGSTER_HOME/inbox``."""

    @sensor(
        name="inbox_sensor", job=orders_pipeline, minimum_interval_seconds=5, default_status=status
    )
    def inbox(context: SensorEvaluationContext) -> Iterator[RunRequest]:
        inbox_dir = os.path.join(context.instance.root_directory, "inbox")
        if not os.path.isdir(inbox_dir):
            return
        for name in sorted(os.listdir(inbox_dir)):
            yield RunRequest(run_key=name, run_config=QUICK_STEPS, tags={"inbox_file": name})

    return inbox
