"""Daily-partitioned assets with a check: one partition is one run of three steps."""

from dagster import (
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
def daily_revenue(daily_orders: list[float]) -> float:
    """The day's revenue."""
    return sum(daily_orders)


@asset_check(asset=daily_revenue)
def revenue_is_not_negative(daily_revenue: float) -> AssetCheckResult:
    return AssetCheckResult(passed=daily_revenue >= 0, metadata={"revenue": daily_revenue})


daily_orders_job = define_asset_job(
    "daily_orders_job",
    selection=[daily_orders, daily_revenue],
    description="One day of orders and revenue, and the revenue check.",
)
