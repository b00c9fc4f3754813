"""The jobs of ``nox -s bench -- idle``: runs that wait on steps that sleep.

``idle_pair``: two independent ops, ``nap_a`` and ``nap_b``, on ``taskiq_executor``; each sleeps
``seconds`` and then until the file ``release_file`` exists (op config; none: no wait), so that
no step ends before the benchmark's measurement window does, however long the runs took to
start. The wait looks at the file system only, never at a database.

Both builds the benchmark compares import this module (workers with ``-m benchmarks.idle_jobs``,
run processes through ``benchmarks._run_job``): it uses nothing but ``dagster`` and
``taskiq_executor``. (No ``from __future__ import annotations``: Dagster reads the ops'
``context`` annotation at definition time.)
"""

import os
import time

from dagster import Definitions, Field, OpDefinition, OpExecutionContext, job, op

from dagster_taskiq import taskiq_executor

HOLD_MAX_SECONDS = 900.0
"""The longest a step waits for its release file after its sleep (a lost benchmark)."""


def _nap(name: str) -> OpDefinition:
    @op(
        name=name,
        config_schema={
            "seconds": Field(float, default_value=30.0),
            "release_file": Field(str, default_value=""),
        },
    )
    def nap(context: OpExecutionContext) -> None:
        time.sleep(float(context.op_config["seconds"]))
        release_file = str(context.op_config["release_file"])
        deadline = time.monotonic() + HOLD_MAX_SECONDS
        while release_file and not os.path.exists(release_file):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not released after {HOLD_MAX_SECONDS:.0f} s")
            time.sleep(0.2)

    return nap


nap_a = _nap("nap_a")
nap_b = _nap("nap_b")


@job(executor_def=taskiq_executor)
def idle_pair() -> None:
    nap_a()
    nap_b()


defs = Definitions(jobs=[idle_pair], executor=taskiq_executor)
