"""The example code location with its schedule every minute and its sensor running: what
``test_runs_from_dagster_dev.py`` gives ``dagster dev -f`` for the daemon to start runs."""

from dagster import DefaultScheduleStatus, DefaultSensorStatus, Definitions

from dagster_taskiq import taskiq_executor
from dagster_taskiq_examples.automation import inbox_sensor, orders_schedule
from dagster_taskiq_examples.pipeline import DemoKnobs, orders_pipeline

defs = Definitions(
    jobs=[orders_pipeline],
    schedules=[orders_schedule("* * * * *", DefaultScheduleStatus.RUNNING)],
    sensors=[inbox_sensor(DefaultSensorStatus.RUNNING)],
    resources={"knobs": DemoKnobs()},
    executor=taskiq_executor,
)
