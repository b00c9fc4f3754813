"""The benchmark jobs: a 20-op chain and a 50-op fan-out into one collector, trivial ops."""

from dagster import OpDefinition, OpExecutionContext, job, op

CHAIN_LENGTH = 20
FAN_OUT_WIDTH = 50


@op
def seed() -> int:
    return 0


def _link(n: int) -> OpDefinition:
    @op(name=f"link_{n:02d}")
    def link(value: int) -> int:
        return value + 1

    return link


def _leaf(n: int) -> OpDefinition:
    @op(name=f"leaf_{n:02d}")
    def leaf(value: int) -> int:
        return value + n

    return leaf


LINKS = [_link(n) for n in range(1, CHAIN_LENGTH)]
LEAVES = [_leaf(n) for n in range(FAN_OUT_WIDTH)]


@op
def collect(context: OpExecutionContext, values: list[int]) -> int:
    context.log.info(f"collected {len(values)} values")
    return sum(values)


@job(description=f"{CHAIN_LENGTH} trivial ops in a chain.")
def chain_20() -> None:
    value = seed()
    for link in LINKS:
        value = link(value)


@job(description=f"{FAN_OUT_WIDTH} trivial ops fanned out from one and into one collector.")
def fan_out_50() -> None:
    value = seed()
    collect([leaf(value) for leaf in LEAVES])
