"""The benchmark jobs: a 20-op chain and a 50-op fan-out into one collector, trivial ops.

``chain_20`` and ``fan_out_50`` are in the code location (``defs``), on its default executor
(taskiq). ``bench_defs`` holds the same graphs on Dagster's ``multiprocess_executor`` and
``in_process_executor``, the baselines of ``nox -s bench -- executors``.
"""

from dagster import (
    Definitions,
    OpDefinition,
    OpExecutionContext,
    graph,
    in_process_executor,
    multiprocess_executor,
    op,
)

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


@graph(description=f"{CHAIN_LENGTH} trivial ops in a chain.")
def chain_graph() -> None:
    value = seed()
    for link in LINKS:
        value = link(value)


@graph(description=f"{FAN_OUT_WIDTH} trivial ops fanned out from one and into one collector.")
def fan_out_graph() -> None:
    value = seed()
    collect([leaf(value) for leaf in LEAVES])


chain_20 = chain_graph.to_job(name="chain_20")
fan_out_50 = fan_out_graph.to_job(name="fan_out_50")

bench_defs = Definitions(
    jobs=[
        chain_graph.to_job(name="chain_20_multiprocess", executor_def=multiprocess_executor),
        fan_out_graph.to_job(name="fan_out_50_multiprocess", executor_def=multiprocess_executor),
        chain_graph.to_job(name="chain_20_in_process", executor_def=in_process_executor),
        fan_out_graph.to_job(name="fan_out_50_in_process", executor_def=in_process_executor),
    ]
)
