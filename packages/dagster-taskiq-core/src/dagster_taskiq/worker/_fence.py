"""The fence over a step's Dagster events: only the claim's current holder writes its outcome.

The idempotency store fences the recorded outcome (``finish`` with the token), but a step's
events go straight to the run's Dagster event log, which the store cannot fence. Without this, a
worker that lost its claim while the step ran (paused past its lease: another worker took the
step over) would still write its STEP_SUCCESS when it wakes, and a step interrupted because its
worker is shutting down (released for another worker) would write an "interrupted" STEP_FAILURE
before running again elsewhere: either way the event log would show two outcomes for one step,
and the executor would act on both.

So every event a step writes from its worker thread passes ``StepFence``:

* once the fence is revoked (the worker released the step, or a heartbeat found the lease lost,
  or the holder could not be confirmed) every further event of that step is dropped;
* a step's outcome event (success, failure, up for retry) is written only while this claim
  surely still holds the step: either the claim (or a heartbeat) started less than half a lease
  ago by this process's monotonic clock, so its lease, which the database dated later, cannot
  have run out and nobody else can have claimed the step; or, failing that, the store confirms
  it there and then (``heartbeat`` with the token, which also extends the lease). If not, the
  event is dropped and the fence revoked.

The worker then records no outcome for a revoked step (a stale ``finish`` would be rejected
anyway) and gives the message back. The remaining window is between the confirmation and the
event's write (microseconds, and at least half a lease is left): only a pause longer than that
half lease at exactly that point could let a second holder's outcome follow. Most steps are
shorter than half a lease, so their outcome costs no extra store round trip.

Events that tell the user nothing per step are left out at the same gate (the policy and its
reasons: ``_quiet_events.py``).
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from dagster import DagsterEventType, DagsterInstance

from dagster_taskiq.idempotency import IdempotencyStore
from dagster_taskiq.worker._quiet_events import QuietEvents
from dagster_taskiq.worker._states import FenceState

_log = structlog.get_logger("dagster_taskiq.worker")

_T = TypeVar("_T")

OUTCOME_EVENTS = frozenset(
    {
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.STEP_UP_FOR_RETRY,
    }
)

CONFIRMED_FOR = 0.5
"""Fraction of the lease for which a claim or heartbeat counts as confirmation by itself."""

_current: contextvars.ContextVar[StepFence | None] = contextvars.ContextVar(
    "dagster_taskiq_step_fence", default=None
)
_installed_marker = "_dagster_taskiq_event_fence"
_install_lock = threading.Lock()


class StepFence:
    """Whether this worker still holds one claimed step (``key`` at fence ``token``)."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        key: str,
        run_id: str,
        step_key: str,
        token: int,
        lease_seconds: float,
        confirmed_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``confirmed_at``: when (by ``clock``) the claim that gave ``token``, with a lease of
        ``lease_seconds``, was sent to the store; None if unknown (every outcome event is then
        confirmed with the store)."""
        self.store = store
        self.key = key
        self.run_id = run_id
        self.step_key = step_key
        self.token = token
        self.lease_seconds = lease_seconds
        self.confirmed_at = confirmed_at
        self.clock = clock
        self.held: list[Any] = []
        """The step's events the gate holds back for now (see ``QuietEvents``)."""
        self.state = FenceState.HOLDING
        """HOLDING, then REVOKED for good (by :meth:`revoke` only, from any thread)."""
        self.reason: str | None = None
        """Why it was revoked (set with REVOKED)."""
        self._revoking = threading.Lock()
        self.dropped = 0
        self.outcome_admitted = False
        """Whether an outcome event of the step passed (set with the revoking lock held)."""

    @property
    def revoked(self) -> bool:
        return self.state is FenceState.REVOKED

    def revoke(self, reason: str) -> None:
        """From now on, none of the step's events are written (idempotent; first reason kept)."""
        with self._revoking:
            if self.state is FenceState.HOLDING:
                self.reason = reason
                self.state = self.state.to(FenceState.REVOKED)

    def give_up(self, reason: str) -> bool:
        """Revoke, unless an outcome event has passed already (then the step has ended and its
        result is on its way: False)."""
        with self._revoking:
            if self.outcome_admitted:
                return False
            if self.state is FenceState.HOLDING:
                self.reason = reason
                self.state = self.state.to(FenceState.REVOKED)
            return True

    def renewed(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (by ``clock``) found the claim held: count from it."""
        if self.confirmed_at is None or sent_at > self.confirmed_at:
            self.confirmed_at = sent_at

    def surely_held(self) -> bool:
        """True while less than half a lease has passed since the claim was last confirmed."""
        confirmed_at = self.confirmed_at
        return (
            confirmed_at is not None
            and self.clock() - confirmed_at < self.lease_seconds * CONFIRMED_FOR
        )

    def confirm(self) -> bool:
        """True if the claim still holds the step; else revoke, False.

        Without a store round trip while :meth:`surely_held`; otherwise the store is asked (and
        the lease extended)."""
        if self.revoked:
            return False
        if self.surely_held():
            return True
        sent_at = self.clock()
        try:
            held = self.store.heartbeat(self.key, self.token, self.lease_seconds)
        except Exception as exc:  # cannot tell: writing could give the step two outcomes
            self.revoke(f"the claim could not be confirmed: {exc}")
            return False
        if held:
            self.renewed(sent_at)
        else:
            self.revoke("lease lost: another worker holds the step")
        return held

    def admits(self, event_type: DagsterEventType) -> bool:
        if self.revoked:
            return False
        if event_type in OUTCOME_EVENTS:
            if not self.confirm():
                return False
            with self._revoking:
                if self.state is FenceState.REVOKED:  # given up while it was confirmed
                    return False
                self.outcome_admitted = True
        return True

    def run(self, fn: Callable[[], _T]) -> _T:
        """Call ``fn`` with this fence current (in this thread)."""
        reset = _current.set(self)
        try:
            return fn()
        finally:
            _current.reset(reset)


def current_fence() -> StepFence | None:
    """The fence of the step running in this thread, if any."""
    return _current.get()


def install_event_fence(instance: DagsterInstance, *, quiet: QuietEvents | None = None) -> None:
    """Gate ``instance``'s event writes by the current step's fence (once per instance); with
    ``quiet``, a fenced step's events that it leaves out are not written."""
    with _install_lock:
        if getattr(instance, _installed_marker, False):
            return
        write = instance.handle_new_event

        @functools.wraps(write)
        def handle_new_event(event: Any, *args: Any, **kwargs: Any) -> None:
            fence = _current.get()
            dagster_event = event.dagster_event
            if fence is None or dagster_event is None:
                write(event, *args, **kwargs)
                return
            for entry in [event] if quiet is None else quiet.to_write(event, fence.held):
                if _fenced_out(fence, entry):
                    continue
                write(entry, *args, **kwargs)

        instance.handle_new_event = handle_new_event  # type: ignore[method-assign]
        setattr(instance, _installed_marker, True)


def _fenced_out(fence: StepFence, entry: Any) -> bool:
    """Whether ``fence`` keeps ``entry`` (an event of its thread) out of the log (logged)."""
    dagster_event = entry.dagster_event
    if (
        entry.run_id != fence.run_id
        or dagster_event.step_key != fence.step_key
        or fence.admits(dagster_event.event_type)
    ):
        return False
    fence.dropped += 1
    _log.warning(
        "step_event_dropped",
        key=fence.key,
        token=fence.token,
        event_type=dagster_event.event_type_value,
        reason=fence.reason,
    )
    return True
