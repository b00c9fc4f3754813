"""The code location: ``dagster dev -m dagster_taskiq_examples.definitions``.

``taskiq_executor`` is the default executor of every job here, so each step is sent to the
``dagster-taskiq worker`` processes serving this module. Its settings come from run config or,
for the SQS broker, from the ``DAGSTER_TASKIQ_SQS_*`` / ``AWS_*`` environment of the process
that launches the run (see README.md).
"""

from dagster import Definitions

from dagster_taskiq import taskiq_executor
from dagster_taskiq_examples.assets import (
    IO_MANAGER_KEY,
    daily_orders,
    daily_orders_job,
    daily_revenue,
    revenue_is_not_negative,
)
from dagster_taskiq_examples.automation import inbox_sensor, orders_schedule
from dagster_taskiq_examples.bench_jobs import chain_20, fan_out_50
from dagster_taskiq_examples.partition_files import PartitionFiles
from dagster_taskiq_examples.pipeline import DemoKnobs, orders_pipeline

defs = Definitions(
    assets=[daily_orders, daily_revenue],
    asset_checks=[revenue_is_not_negative],
    jobs=[orders_pipeline, daily_orders_job, chain_20, fan_out_50],
    schedules=[orders_schedule()],
    sensors=[inbox_sensor()],
    resources={"knobs": DemoKnobs(), IO_MANAGER_KEY: PartitionFiles()},
    executor=taskiq_executor,
)
