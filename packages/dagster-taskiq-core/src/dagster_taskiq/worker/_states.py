"""The states of a step on the worker, each an enum whose transitions are checked.

Three small machines, one per object that used to carry its state in a flag:

* ``SlotState``: one of the worker's ``concurrency`` slots, held by a message
  (``_consumer._Slot``);
* ``ActiveStepState``: a step the worker claimed, from its claim until its outcome is handled
  (``_consumer._Active``);
* ``FenceState``: whether the step's claim still gates its Dagster events (``_fence.StepFence``).

A state changes only through its enum's ``to``, which raises AssertionError naming both states
when the table below does not hold the transition: that is a bug in the worker, not a condition
of the step.
"""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = ["ActiveStepState", "FenceState", "SlotState"]


_S = TypeVar("_S", bound="_States")


class _States(enum.Enum):
    """An enum of states whose allowed transitions are listed in ``_NEXT``."""

    def to(self, new: _S) -> _S:
        """``new``, if this state may become it; AssertionError naming both if not (a state of
        another enum never is)."""
        if new not in _NEXT[self]:
            raise AssertionError(f"{type(self).__name__}: {self.name} -> {new.name} is not allowed")
        return new


class SlotState(_States):
    """A slot of the worker. ``HELD`` -> ``FREED``; freeing it again does nothing."""

    HELD = "held"
    """Taken for a message from its receipt on: the worker receives no message for it."""
    FREED = "freed"
    """Given back: the step is over (its outcome may still be being recorded, off the slot), or
    the message was handled without running a step."""


class ActiveStepState(_States):
    """A step this worker claimed and runs. ``RUNNING`` -> ``RELEASED``, ``GIVEN_UP`` or
    ``FINISHING``."""

    RUNNING = "running"
    """Claimed; its thread runs while the heartbeat extends its store lease and message. It is
    in the worker's table of active steps, so a stopping worker may release it."""
    RELEASED = "released"
    """Given back by a stopping worker after the grace period: its record is PENDING and its
    message visible again, its fence revoked and its thread interrupted. No outcome is recorded
    and the message is not acked: another worker runs the step."""
    GIVEN_UP = "given_up"
    """Interrupted (its run cancelled, or its timeout passed) and still running
    ``interrupt_grace`` seconds later: its fence is revoked (the thread writes no more events),
    its child processes are killed, its slot is freed and its failure recorded and acked. Its
    thread is left to end when its blocking call returns."""
    FINISHING = "finishing"
    """Its thread ended while the worker still held it: the worker records the outcome and acks
    the message (or, if the fence was revoked meanwhile, abandons the step). It is off the table
    of active steps: a stop can no longer release it."""


class FenceState(_States):
    """Whether a step's claim still lets its events through. ``HOLDING`` -> ``REVOKED``."""

    HOLDING = "holding"
    """The worker holds the claim as far as it knows: events pass (outcome events once the
    claim is confirmed)."""
    REVOKED = "revoked"
    """The worker released the step, lost its lease, or could not confirm it: every further
    event of the step is dropped and no outcome is recorded. Revoking again does nothing."""


_NEXT: dict[_States, frozenset[_States]] = {
    SlotState.HELD: frozenset({SlotState.FREED}),
    SlotState.FREED: frozenset(),
    ActiveStepState.RUNNING: frozenset(
        {ActiveStepState.RELEASED, ActiveStepState.GIVEN_UP, ActiveStepState.FINISHING}
    ),
    ActiveStepState.RELEASED: frozenset(),
    ActiveStepState.GIVEN_UP: frozenset(),
    ActiveStepState.FINISHING: frozenset(),
    FenceState.HOLDING: frozenset({FenceState.REVOKED}),
    FenceState.REVOKED: frozenset(),
}
"""The states each state may become."""
