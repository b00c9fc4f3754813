"""A user's jobs, as another project would define them: ``taskiq_executor`` as the executor."""

import os

from dagster import OpExecutionContext, RetryPolicy, job, op

from dagster_taskiq import taskiq_executor


@op
def numbers() -> list[int]:
    return [1, 2, 3]


@op(retry_policy=RetryPolicy(max_retries=2))
def total(context: OpExecutionContext, values: list[int]) -> int:
    if context.retry_number == 0:
        raise RuntimeError("first try fails; the retry succeeds")
    return sum(values)


@job(executor_def=taskiq_executor)
def summing() -> None:
    total(numbers())


LEDGER_ENV = "HARNESS_LEDGER"


@op
def write_ledger(context: OpExecutionContext) -> None:
    """Appends its run id to the file ``$HARNESS_LEDGER``: what ran, and for which run."""
    with open(os.environ[LEDGER_ENV], "a") as ledger:
        ledger.write(f"{context.run_id}\n")


@job(executor_def=taskiq_executor)
def ledgered() -> None:
    write_ledger()
