"""Isolation: run each step in a fresh Python subprocess instead of a thread of the worker.

Slower (a process start and the job's imports per step) but a step cannot disturb the worker or
another step, and Dagster's per-step stdout/stderr capture works (one step per process). The
child is ``python -m dagster_taskiq.worker._subprocess_main``; it receives the payload on stdin
and writes its :class:`StepOutcome` to a file. Interrupting the step (a cancelled run, a worker
shutting down) sends the child SIGINT, which Dagster turns into an interrupted step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from dagster_taskiq.code_locations import CodeLocations
from dagster_taskiq.errors import CodeLocationError
from dagster_taskiq.instances import instance_from_ref
from dagster_taskiq.payloads import OpExecutionTask
from dagster_taskiq.worker._children import untracked
from dagster_taskiq.worker._fence import current_fence
from dagster_taskiq.worker._step_runner import StepOutcome, logged_outcome

_INTERRUPT_GRACE = 30.0


class SubprocessStepRunner:
    """Same interface as :class:`StepRunner`; each ``run`` starts a child process."""

    def __init__(self, code_locations: CodeLocations, *, python: str = sys.executable) -> None:
        self.code_locations = code_locations
        self.python = python

    def run(self, task: OpExecutionTask) -> StepOutcome:
        try:
            self.code_locations.check(task.code)
        except CodeLocationError as exc:
            return StepOutcome.failed("CodeLocationRefused", str(exc))
        fence = current_fence()
        if fence is not None and fence.token > 1:
            logged = logged_outcome(instance_from_ref(task.instance_ref), task)
            if logged is not None:
                return logged
        with tempfile.TemporaryDirectory(prefix="dagster-taskiq-step-") as tmp:
            outcome_path = os.path.join(tmp, "outcome.json")
            args = [self.python, "-m", "dagster_taskiq.worker._subprocess_main", outcome_path]
            for location in self.code_locations.locations:
                args += ["--module", location.module] if location.module else []
                args += ["--python-file", location.python_file] if location.python_file else []
            # Not one of the step's children (``_children``): this runner ends it itself.
            child = untracked(
                lambda: subprocess.Popen(args, stdin=subprocess.PIPE, text=True)  # noqa: S603
            )
            assert child.stdin is not None
            child.stdin.write(task.to_json())
            child.stdin.close()
            try:
                while True:
                    try:
                        code = child.wait(timeout=0.1)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            except BaseException:
                _interrupt(child)
                raise
            if os.path.exists(outcome_path):
                with open(outcome_path) as f:
                    return StepOutcome.from_json(f.read())
            return StepOutcome.failed(
                "StepProcessDied", f"step process exited with code {code} without an outcome"
            )


def _interrupt(child: subprocess.Popen[str]) -> None:
    if child.poll() is not None:
        return
    fence = current_fence()
    if fence is not None and fence.revoked:
        # The step was given up or lost: the child must write no more events (an interrupted
        # step would write a STEP_FAILURE), so it is killed, not interrupted.
        child.kill()
        child.wait()
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=_INTERRUPT_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    except BaseException:  # the worker gave the step up meanwhile
        child.kill()
        child.wait()
        raise
