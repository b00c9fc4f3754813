"""Child process of :class:`SubprocessStepRunner`: run one step, write its outcome, exit."""

from __future__ import annotations

import argparse
import os
import sys

from dagster import DagsterExecutionInterruptedError

from dagster_taskiq._dagster_compat import raise_interrupts_as
from dagster_taskiq.code_locations import CodeLocation, CodeLocations
from dagster_taskiq.instances import LogCapture
from dagster_taskiq.payloads import OpExecutionTask
from dagster_taskiq.worker._step_runner import StepOutcome, StepRunner


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dagster_taskiq.worker._subprocess_main")
    parser.add_argument("outcome_path")
    parser.add_argument("--module", action="append", default=[])
    parser.add_argument("--python-file", action="append", default=[])
    args = parser.parse_args(argv)
    locations = CodeLocations(
        [CodeLocation(module=m) for m in args.module]
        + [CodeLocation(python_file=f) for f in args.python_file]
    )
    task = OpExecutionTask.from_json(sys.stdin.read())
    runner = StepRunner(locations, log_capture=LogCapture.PROCESS)
    try:
        with raise_interrupts_as(DagsterExecutionInterruptedError):
            outcome = runner.run(task)
    except DagsterExecutionInterruptedError:
        outcome = StepOutcome.failed("DagsterExecutionInterruptedError", "step interrupted")
    tmp = args.outcome_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(outcome.to_json())
    os.replace(tmp, args.outcome_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
