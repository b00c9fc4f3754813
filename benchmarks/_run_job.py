"""One Dagster run in this process, as production has it (a process per run).

    python -m benchmarks._run_job <module>:<job> [--attribute defs] --config '<run config JSON>'

The job is ``job_in_module(module, job, attribute)`` (the job as its ``Definitions`` resolve it,
loadable by workers started with ``-m module``), executed with ``dagster.execute_job`` on
``DagsterInstance.get()``, the instance of the ``DAGSTER_HOME`` in this process's environment.
The last line printed is ``RESULT_PREFIX`` and a JSON object: the run id, whether it succeeded,
this process's CPU seconds (user + system, from ``os.times()``) and its wall-clock start and end
(``time.time()``). The exit status is 0 only if the run succeeded.

Both builds of ``benchmarks._runs`` (the baseline worktree's packages first on ``PYTHONPATH``, or
the current ones) run this same file: it uses nothing the baseline lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

RESULT_PREFIX = "RUN_RESULT "


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._run_job", description=__doc__)
    parser.add_argument("target", help="<module>:<job name>")
    parser.add_argument("--attribute", default="defs", help="the module's Definitions attribute")
    parser.add_argument("--config", default="{}", help="the run config, as JSON")
    args = parser.parse_args(argv)
    module, _, job_name = args.target.partition(":")
    if not module or not job_name:
        parser.error(f"target {args.target!r} is not <module>:<job name>")
    started = time.time()

    from dagster import DagsterInstance, execute_job  # noqa: PLC0415

    from dagster_taskiq.code_locations import job_in_module  # noqa: PLC0415

    with DagsterInstance.get() as instance:
        result = execute_job(
            job_in_module(module, job_name, attribute=args.attribute),
            instance,
            run_config=json.loads(args.config),
        )
    times = os.times()
    outcome = {
        "run_id": result.run_id,
        "success": bool(result.success),
        "cpu_seconds": times.user + times.system,
        "started_at": started,
        "finished_at": time.time(),
    }
    print(RESULT_PREFIX + json.dumps(outcome), flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
