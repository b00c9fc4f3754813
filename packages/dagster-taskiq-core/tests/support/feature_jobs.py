"""Jobs for the Dagster features the executor passes through: tag concurrency limits, step
dependency config. In-process workers import this module by name (``support.feature_jobs``), so
its module-level gauges are shared with the test that reads them."""

import subprocess
import sys
import threading
import time

from dagster import In, Out, Output, job, op

from support.job_shapes import injected_executor

TAG = {"database": "warehouse"}


class Gauge:
    """How many op bodies run at once, and the most seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> "Gauge":
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.now = self.most = 0


TAGGED = Gauge()
ALL = Gauge()


def _busy(gauges: tuple[Gauge, ...]) -> None:
    for gauge in gauges:
        gauge.__enter__()
    try:
        time.sleep(0.6)
    finally:
        for gauge in gauges:
            gauge.__exit__()


def _tagged_op(n: int):
    @op(name=f"tagged_{n}", tags=TAG)
    def tagged() -> int:
        _busy((TAGGED, ALL))
        return n

    return tagged


def _plain_op(n: int):
    @op(name=f"plain_{n}")
    def plain() -> int:
        _busy((ALL,))
        return n

    return plain


TAGGED_OPS = [_tagged_op(n) for n in range(6)]
PLAIN_OPS = [_plain_op(n) for n in range(2)]


@job(executor_def=injected_executor)
def tagged_fan_out():
    for tagged in TAGGED_OPS:
        tagged()
    for plain in PLAIN_OPS:
        plain()


DOWNSTREAM_STARTED = threading.Event()


@op(out={"early": Out(int), "late": Out(bool)})
def two_outputs():
    yield Output(1, "early")
    # With require_upstream_step_success off, the consumer of "early" starts now, while this
    # step still runs; otherwise it waits for this step to end (and this wait times out).
    yield Output(DOWNSTREAM_STARTED.wait(timeout=20), "late")


@op(ins={"early": In(int)})
def uses_early(early: int) -> int:
    DOWNSTREAM_STARTED.set()
    return early + 1


@op(ins={"late": In(bool)})
def uses_late(late: bool) -> bool:
    return late


@job(executor_def=injected_executor)
def early_output():
    early, late = two_outputs()
    uses_early(early)
    uses_late(late)


# --- step logs ------------------------------------------------------------------------------

BOTH_PRINTING = threading.Barrier(2, timeout=30)
"""Both talking steps print at once (each waits for the other before it starts)."""


def _talk(name: str) -> None:
    BOTH_PRINTING.wait()
    for n in range(20):
        print(f"{name} says {n}")
        print(f"{name} warns {n}", file=sys.stderr)
        time.sleep(0.005)


@op
def talk_a() -> None:
    _talk("talk_a")


@op
def talk_b() -> None:
    _talk("talk_b")


@job(executor_def=injected_executor)
def talking():
    talk_a()
    talk_b()


@op
def talk_through_a_child() -> None:
    print("talk_through_a_child says hello")
    subprocess.run(["echo", "child process says hello"], check=True)


@job(executor_def=injected_executor)
def talking_child():
    talk_through_a_child()


# --- pools ----------------------------------------------------------------------------------

POOL = "warehouse_pool"
POOLED = Gauge()


def _pooled_op(n: int):
    @op(name=f"pooled_{n}", pool=POOL)
    def pooled() -> int:
        _busy((POOLED,))
        return n

    return pooled


POOLED_OPS = [_pooled_op(n) for n in range(4)]


@job(executor_def=injected_executor)
def pooled_fan_out():
    for pooled in POOLED_OPS:
        pooled()


# --- priority lanes -------------------------------------------------------------------------


@op(tags={"dagster/priority": "5"})
def urgent() -> int:
    return 1


@op(tags={"dagster/priority": "-1"})
def whenever() -> int:
    return 2


@op
def unmarked() -> int:
    return 3


@op(tags={"dagster/priority": "5", "dagster-taskiq/queue": "its-own"})
def routed() -> int:
    return 4


@job(executor_def=injected_executor)
def prioritised():
    urgent()
    whenever()
    unmarked()
    routed()


@op(tags={"dagster/priority": "high"})
def badly_marked() -> int:
    return 5


@job(executor_def=injected_executor)
def badly_prioritised():
    badly_marked()
