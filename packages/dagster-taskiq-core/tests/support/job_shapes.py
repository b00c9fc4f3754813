"""Jobs of every shape the executor must handle, at module level (reconstructable by file).

Every op body appends one line to a side-effect ledger (a file per run in the directory named by
``DAGSTER_TASKIQ_TEST_LEDGER``, if set), so tests can count how many times each body ran.
"""

import os
import time
import uuid

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    ConfigurableResource,
    Definitions,
    DynamicOut,
    DynamicOutput,
    OpExecutionContext,
    RetryPolicy,
    StaticPartitionsDefinition,
    asset,
    asset_check,
    define_asset_job,
    executor,
    job,
    mem_io_manager,
    multiple_process_executor_requirements,
    op,
)

from dagster_taskiq import TASKIQ_EXECUTOR_CONFIG_SCHEMA, DagsterTaskIQExecutor, ExecutorSettings

LEDGER_ENV = "DAGSTER_TASKIQ_TEST_LEDGER"

# In-process tests put the broker, store and settings the executor must use here (their workers
# share them); otherwise the executor is built from run config exactly like taskiq_executor.
INJECTED: dict[str, object] = {}


@executor(
    name="taskiq_injected",
    config_schema=TASKIQ_EXECUTOR_CONFIG_SCHEMA,
    requirements=multiple_process_executor_requirements(),
)
def injected_executor(init_context):
    if "broker" not in INJECTED:
        return DagsterTaskIQExecutor(ExecutorSettings.from_config(init_context.executor_config))
    settings = INJECTED.get("settings") or ExecutorSettings(backend="injected", poll_interval=0.2)
    return DagsterTaskIQExecutor(
        settings,  # type: ignore[arg-type]
        broker=INJECTED["broker"],  # type: ignore[arg-type]
        store=INJECTED["store"],  # type: ignore[arg-type]
    )


def record(context: OpExecutionContext | AssetExecutionContext, note: str = "") -> None:
    """Append one line per execution of an op body to the run's ledger file."""
    directory = os.environ.get(LEDGER_ENV)
    if not directory:
        return
    step = context.get_step_execution_context().step.key
    fields = [step, str(context.retry_number), str(os.getpid()), uuid.uuid4().hex, note]
    line = "\t".join(fields) + "\n"
    with open(os.path.join(directory, f"{context.run_id}.ledger"), "a") as f:
        f.write(line)


def read_ledger(directory: str, run_id: str) -> list[str]:
    """The step keys whose bodies ran, once per execution."""
    path = os.path.join(directory, f"{run_id}.ledger")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split("\t")[0] for line in f if line.strip()]


# --- chain and diamond --------------------------------------------------------------------


@op
def start(context: OpExecutionContext) -> int:
    record(context)
    return 1


@op
def add_one(context: OpExecutionContext, x: int) -> int:
    record(context)
    return x + 1


@op
def add(context: OpExecutionContext, a: int, b: int) -> int:
    record(context)
    return a + b


@job(executor_def=injected_executor)
def chain() -> None:
    value = start()
    for _ in range(5):
        value = add_one(value)


@job(executor_def=injected_executor)
def diamond() -> None:
    top = start()
    add(add_one(top), add_one(top))


# --- wide fan-out and fan-in ----------------------------------------------------------------


@op
def total(context: OpExecutionContext, values: list[int]) -> int:
    record(context)
    return sum(values)


@job(executor_def=injected_executor)
def fan_out() -> None:
    root = start()
    total([add_one.alias(f"leaf_{n}")(root) for n in range(50)])


# --- dynamic outputs ----------------------------------------------------------------------


@op(out=DynamicOut(int))
def emit(context: OpExecutionContext):
    record(context)
    for n in range(4):
        yield DynamicOutput(n, mapping_key=f"k{n}")


@op
def square(context: OpExecutionContext, n: int) -> int:
    record(context)
    return n * n


@job(executor_def=injected_executor)
def dynamic() -> None:
    total(emit().map(square).collect())


# --- retries and failures -----------------------------------------------------------------


@op(retry_policy=RetryPolicy(max_retries=3, delay=0.2))
def flaky(context: OpExecutionContext) -> int:
    record(context)
    if context.retry_number < 2:
        raise RuntimeError(f"flaky failure on try {context.retry_number}")
    return context.retry_number


@job(executor_def=injected_executor)
def retries() -> None:
    add_one(flaky())


@op
def broken(context: OpExecutionContext) -> int:
    record(context)
    raise ValueError("this op always fails")


@job(executor_def=injected_executor)
def failing() -> None:
    value = broken()
    add_one(add_one(value))
    add_one.alias("independent")(start())


# --- config and resources -----------------------------------------------------------------


class MultiplyConfig(Config):
    factor: int


class Offset(ConfigurableResource):  # type: ignore[misc]
    amount: int


@op
def configured(context: OpExecutionContext, config: MultiplyConfig, offset: Offset) -> int:
    record(context)
    return config.factor * 10 + offset.amount


@job(executor_def=injected_executor, resource_defs={"offset": Offset(amount=7)})
def config_and_resource() -> None:
    add_one(configured())


CONFIG_RUN_CONFIG = {"ops": {"configured": {"config": {"factor": 3}}}}


# --- slow op (termination, SIGKILL) ---------------------------------------------------------


@op
def slow(context: OpExecutionContext) -> int:
    record(context, "start")
    deadline = time.monotonic() + float(os.environ.get("DAGSTER_TASKIQ_TEST_SLOW_SECONDS", "3"))
    while time.monotonic() < deadline:
        time.sleep(0.05)
    record(context, "end")
    return 1


@job(executor_def=injected_executor)
def slow_job() -> None:
    add_one(slow())


# --- partitioned assets with a check --------------------------------------------------------

letters = StaticPartitionsDefinition(["a", "b", "c"])


@asset(partitions_def=letters)
def raw(context: AssetExecutionContext) -> str:
    record(context)
    return context.partition_key * 2


@asset(partitions_def=letters)
def upper(context: AssetExecutionContext, raw: str) -> str:
    record(context)
    return raw.upper()


@asset_check(asset=upper)
def upper_is_upper() -> AssetCheckResult:
    return AssetCheckResult(passed=True, metadata={"checked": "upper"})


defs = Definitions(
    assets=[raw, upper],
    asset_checks=[upper_is_upper],
    jobs=[define_asset_job("partitioned_assets")],
    executor=injected_executor,
)


def partitioned_assets():
    return defs.resolve_job_def("partitioned_assets")


# --- fails the first time, then succeeds (re-execution from failure) -------------------------


@op
def fail_first_time(context: OpExecutionContext, x: int) -> int:
    record(context)
    marker = os.environ["DAGSTER_TASKIQ_TEST_FAIL_ONCE"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("failing the first time on purpose")
    return x


@job(executor_def=injected_executor)
def fails_once() -> None:
    add_one(fail_first_time(start()))


# --- an IO manager that cannot cross processes ----------------------------------------------


@job(executor_def=injected_executor, resource_defs={"io_manager": mem_io_manager})
def in_memory_io() -> None:
    add_one(start())


# --- a step that kills every worker that runs it (a poison message) ------------------------


@op
def kills_its_worker(context: OpExecutionContext) -> int:
    record(context)
    if os.environ.get("DAGSTER_TASKIQ_TEST_DIE") == "1":
        os._exit(17)  # the whole worker process dies, as on an OOM kill
    return 1


@job(executor_def=injected_executor)
def poison() -> None:
    add_one(kills_its_worker())
