"""Daily-partitioned assets with a check: a run of three steps materializes one partition, or
a range of them (a single-run backfill: ``BackfillPolicy.single_run()``). Each asset's value is
``{partition_key: value}`` for its run's partitions, stored by ``PartitionFiles``."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    BackfillPolicy,
    DailyPartitionsDefinition,
    asset,
    asset_check,
    define_asset_job,
)

daily = DailyPartitionsDefinition(start_date="2026-11-01", end_offset=1)
IO_MANAGER_KEY = "partition_files"
# a backfill of these is one run over its range of partitions
SINGLE_RUN = BackfillPolicy.single_run()


@asset(partitions_def=daily, backfill_policy=SINGLE_RUN, io_manager_key=IO_MANAGER_KEY)
def daily_orders(context: AssetExecutionContext) -> dict[str, list[float]]:
    """Each day's order amounts (made up from the partition's day of month)."""
    return {
        day: [float(int(day[-2:]) * 10 + n) for n in range(5)] for day in context.partition_keys
    }


@asset(partitions_def=daily, backfill_policy=SINGLE_RUN, io_manager_key=IO_MANAGER_KEY)
def daily_revenue(
    context: AssetExecutionContext, daily_orders: dict[str, list[float]]
) -> dict[str, float]:
    """Each day's revenue; the lowest of the run's days is the materializations' metadata."""
    revenue = {day: sum(amounts) for day, amounts in daily_orders.items()}
    context.add_output_metadata({"revenue": min(revenue.values()), "days": len(revenue)})
    return revenue


@asset_check(asset=daily_revenue)
def revenue_is_not_negative(context: AssetCheckExecutionContext) -> AssetCheckResult:
    """Checks the revenue just materialized, from its metadata (the lowest of its run's days).

    (In Dagster 1.13 a check on a partitioned asset does not load the run's partitions as an
    input, so it reads the materialization instead.)
    """
    event = context.instance.get_latest_materialization_event(daily_revenue.key)
    if event is None or event.asset_materialization is None:
        return AssetCheckResult(passed=False, metadata={"reason": "no materialization"})
    metadata = event.asset_materialization.metadata
    revenue = float(metadata["revenue"].value)
    return AssetCheckResult(
        passed=revenue >= 0,
        metadata={
            "revenue": revenue,
            "days": int(metadata["days"].value),
            "partition": event.asset_materialization.partition or "",
        },
    )


daily_orders_job = define_asset_job(
    "daily_orders_job",
    selection=[daily_orders, daily_revenue],
    description="One day of orders and revenue, and the revenue check.",
)
