"""Where a step the run loop launched stands, from its launch until its outcome event is read.

The run loop keeps one entry per step in flight (``_run_loop._InFlight``); its ``state`` is one
of these, and it changes only through :meth:`InFlightState.to`, which refuses a transition the
table below does not hold (a bug in the loop, not a condition of the run). The entry is dropped,
in whatever state, once the event tail reads the step's success, failure or retry event.

::

    PREPARING --> WAITING_FOR_REARM --> PREPARING
    PREPARING --> DISPATCHED <--> LEASE_EXPIRED
    DISPATCHED, LEASE_EXPIRED --> OUTCOME_REPORTED
"""

from __future__ import annotations

import enum

__all__ = ["InFlightState"]


class InFlightState(enum.Enum):
    """The state of one step in flight in the executor's run loop."""

    PREPARING = "preparing"
    """Launched (or re-armed) a moment ago: the idempotency store is being asked whether to
    send it (``ensure_pending``). Only ever seen inside ``RunLoop._prepare``."""
    WAITING_FOR_REARM = "waiting_for_rearm"
    """Not sent: a retry whose previous try the store does not hold FAILED yet (its worker has
    not recorded the outcome). Each iteration of the loop prepares it again."""
    DISPATCHED = "dispatched"
    """With the workers: sent now, or found RUNNING or final in the store (sent before, not
    again). The loop waits for its outcome event and watches its record and lease."""
    LEASE_EXPIRED = "lease_expired"
    """Its record is RUNNING with an expired lease (its worker died or stalled). After one
    visibility timeout in this state (the broker's chance to redeliver) the loop reclaims and
    re-sends it; a record that moves on (lease renewed, released) takes it back to DISPATCHED."""
    OUTCOME_REPORTED = "outcome_reported"
    """The loop logged its failure itself (a lost outcome event, a dead letter): nothing more
    is done for it but to wait for the event tail to read that failure back."""

    def to(self, new: InFlightState) -> InFlightState:
        """``new``, if a step in flight may go from this state to it; AssertionError if not."""
        if new not in _NEXT[self]:
            raise AssertionError(f"InFlightState: {self.name} -> {new.name} is not allowed")
        return new

    @property
    def watched(self) -> bool:
        """Whether maintenance checks the step's record (lost outcome, expired lease)."""
        return self in (InFlightState.DISPATCHED, InFlightState.LEASE_EXPIRED)


_NEXT: dict[InFlightState, frozenset[InFlightState]] = {
    InFlightState.PREPARING: frozenset({InFlightState.WAITING_FOR_REARM, InFlightState.DISPATCHED}),
    InFlightState.WAITING_FOR_REARM: frozenset({InFlightState.PREPARING}),
    InFlightState.DISPATCHED: frozenset(
        {InFlightState.LEASE_EXPIRED, InFlightState.OUTCOME_REPORTED}
    ),
    InFlightState.LEASE_EXPIRED: frozenset(
        {InFlightState.DISPATCHED, InFlightState.OUTCOME_REPORTED}
    ),
    InFlightState.OUTCOME_REPORTED: frozenset(),
}
"""The states each state may become (the ``to`` of every transition the loop makes)."""
