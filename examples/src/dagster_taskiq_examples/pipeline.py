"""The example job: extract orders, clean each region in parallel, combine, publish.

Every op asks the ``knobs`` resource how long to work and whether to fail, so the demo can show
a slow or a failing step without another job.
"""

import time

from dagster import ConfigurableResource, Failure, OpDefinition, OpExecutionContext, job, op

REGIONS = ("emea", "apac", "amer", "latam", "anz", "nordics")


class DemoKnobs(ConfigurableResource):  # type: ignore[type-arg]
    """How long each op works, and which op (if any) fails on purpose."""

    step_seconds: float = 0.2
    fail_step: str = ""

    def work(self, context: OpExecutionContext) -> None:
        name = context.op.name
        if name == self.fail_step:
            raise Failure(
                description=f"op {name!r} failed on purpose (dagster-taskiq demo --fail-step)"
            )
        time.sleep(self.step_seconds)


@op
def extract_orders(context: OpExecutionContext, knobs: DemoKnobs) -> dict[str, list[float]]:
    """Order amounts by region."""
    knobs.work(context)
    return {region: [float(10 * (i + 1) + n) for n in range(3)] for i, region in enumerate(REGIONS)}


def _clean(region: str) -> OpDefinition:
    @op(name=f"clean_{region}")
    def clean(
        context: OpExecutionContext, knobs: DemoKnobs, orders: dict[str, list[float]]
    ) -> float:
        knobs.work(context)
        return sum(amount for amount in orders[region] if amount >= 0)

    return clean


CLEANERS = [_clean(region) for region in REGIONS]


@op
def combine(context: OpExecutionContext, knobs: DemoKnobs, totals: list[float]) -> float:
    knobs.work(context)
    return sum(totals)


@op
def publish_report(context: OpExecutionContext, knobs: DemoKnobs, total: float) -> str:
    knobs.work(context)
    report = f"revenue across {len(REGIONS)} regions: {total:.2f}"
    context.log.info(report)
    return report


@job(description="Extract, clean six regions in parallel, combine and publish: 9 steps.")
def orders_pipeline() -> None:
    orders = extract_orders()
    publish_report(combine([clean(orders) for clean in CLEANERS]))
