"""``DagsterTaskIQExecutor`` and the ``taskiq_executor`` executor definition."""

from __future__ import annotations

from collections.abc import Iterator

from dagster import (
    Executor,
    InitExecutorContext,
    executor,
    multiple_process_executor_requirements,
)
from taskiq import AsyncBroker

from dagster_taskiq._dagster_compat import (
    DagsterEvent,
    ExecutionPlan,
    PlanOrchestrationContext,
    RetryMode,
    StepDependencyConfig,
)
from dagster_taskiq.backends import create_broker
from dagster_taskiq.executor._broker_thread import BrokerThread
from dagster_taskiq.executor._config import TASKIQ_EXECUTOR_CONFIG_SCHEMA, ExecutorSettings
from dagster_taskiq.executor._run_loop import RunLoop
from dagster_taskiq.idempotency import IdempotencyStore, SqlIdempotencyStore
from dagster_taskiq.instances import default_store_url
from dagster_taskiq.signing import MessageSigner


class DagsterTaskIQExecutor(Executor):
    """Runs each step of a run on dagster-taskiq workers, through a TaskIQ broker.

    The broker and the store are made from ``settings`` when the run starts; tests and embedding
    code may inject them instead (``broker=``, ``store=``). Injected objects are not closed.
    """

    def __init__(
        self,
        settings: ExecutorSettings,
        *,
        broker: AsyncBroker | None = None,
        store: IdempotencyStore | None = None,
    ) -> None:
        self.settings = settings
        self._broker = broker
        self._store = store

    @property
    def retries(self) -> RetryMode:
        return self.settings.retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self.settings.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        store = self._store or SqlIdempotencyStore(
            self.settings.store_url or default_store_url(plan_context.instance),
            table_prefix=self.settings.table_prefix,
        )
        key = self.settings.signing_key
        broker = BrokerThread(
            self._broker or create_broker(self.settings.backend, self.settings.broker_settings),
            signer=None if key is None else MessageSigner(key),
        )
        try:
            loop = RunLoop(self, plan_context, execution_plan, broker=broker, store=store)
            yield from loop.events()
        finally:
            broker.close()
            if self._store is None:
                store.close()


@executor(
    name="taskiq",
    config_schema=TASKIQ_EXECUTOR_CONFIG_SCHEMA,
    requirements=multiple_process_executor_requirements(),
)
def taskiq_executor(init_context: InitExecutorContext) -> DagsterTaskIQExecutor:
    """Run every step of the job on long-lived dagster-taskiq workers, through a TaskIQ broker.

    Each step is sent as a versioned JSON message; a worker claims it in the idempotency store,
    runs it, records its outcome with a fence token and only then acks the message, so each step
    completes exactly once even when messages are delivered twice or workers die.

    Example:
        ```python
        from dagster import Definitions
        from dagster_taskiq import taskiq_executor

        defs = Definitions(
            jobs=[my_job],
            executor=taskiq_executor.configured(
                {"broker": {"backend": "sqs", "settings": {"queue_name": "steps.fifo"}},
                 "store_url": "postgresql://dagster@db/dagster"}
            ),
        )
        ```

    Workers: ``dagster-taskiq worker --backend sqs --store-url ... -m my_project.definitions``.
    Route an op to another queue with the op tag ``dagster-taskiq/queue``.
    """
    return DagsterTaskIQExecutor(ExecutorSettings.from_config(init_context.executor_config))
