"""Daily-partitioned assets with a check: one partition is one run of three steps."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    DailyPartitionsDefinition,
    asset,
    asset_check,
    define_asset_job,
)

daily = DailyPartitionsDefinition(start_date="2026-11-01", end_offset=1)


@asset(partitions_def=daily)
def daily_orders(context: AssetExecutionContext) -> list[float]:
    """The day's order amounts (made up from the partition's day of month)."""
    day = int(context.partition_key[-2:])
    return [float(day * 10 + n) for n in range(5)]


@asset(partitions_def=daily)
def daily_revenue(context: AssetExecutionContext, daily_orders: list[float]) -> float:
    """The day's revenue (also recorded as the materialization's metadata)."""
    revenue = sum(daily_orders)
    context.add_output_metadata({"revenue": revenue})
    return revenue


@asset_check(asset=daily_revenue)
def revenue_is_not_negative(context: AssetCheckExecutionContext) -> AssetCheckResult:
    """Checks the revenue just materialized, from its metadata.

    (In Dagster 1.13 a check on a partitioned asset does not load the run's partition as an
    input, so it reads the materialization instead.)
    """
    event = context.instance.get_latest_materialization_event(daily_revenue.key)
    if event is None or event.asset_materialization is None:
        return AssetCheckResult(passed=False, metadata={"reason": "no materialization"})
    revenue = float(event.asset_materialization.metadata["revenue"].value)
    return AssetCheckResult(
        passed=revenue >= 0,
        metadata={"revenue": revenue, "partition": event.asset_materialization.partition or ""},
    )


daily_orders_job = define_asset_job(
    "daily_orders_job",
    selection=[daily_orders, daily_revenue],
    description="One day of orders and revenue, and the revenue check.",
)
