"""Hypothesis state machines over the transition tables of the run loop's and the worker's states.

Each machine walks one state enum through random sequences of transitions, allowed and
forbidden, against the table written out here (on purpose apart from the code's own table): an
allowed transition ends in its target, a forbidden one raises AssertionError naming both states
and changes nothing. Tests of the objects that hold these states follow.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Mapping

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dagster_taskiq.executor._inflight_state import InFlightState
from dagster_taskiq.worker._consumer import _Slot
from dagster_taskiq.worker._fence import StepFence
from dagster_taskiq.worker._states import ActiveStepState, FenceState, SlotState

_I = InFlightState
EXPECTED: dict[type[enum.Enum], tuple[enum.Enum, Mapping[enum.Enum, frozenset[enum.Enum]]]] = {
    InFlightState: (
        _I.PREPARING,
        {
            _I.PREPARING: frozenset({_I.WAITING_FOR_REARM, _I.DISPATCHED}),
            _I.WAITING_FOR_REARM: frozenset({_I.PREPARING}),
            _I.DISPATCHED: frozenset({_I.LEASE_EXPIRED, _I.OUTCOME_REPORTED}),
            _I.LEASE_EXPIRED: frozenset({_I.DISPATCHED, _I.OUTCOME_REPORTED}),
            _I.OUTCOME_REPORTED: frozenset(),
        },
    ),
    ActiveStepState: (
        ActiveStepState.RUNNING,
        {
            ActiveStepState.RUNNING: frozenset(
                {ActiveStepState.RELEASED, ActiveStepState.GIVEN_UP, ActiveStepState.FINISHING}
            ),
            ActiveStepState.RELEASED: frozenset(),
            ActiveStepState.GIVEN_UP: frozenset(),
            ActiveStepState.FINISHING: frozenset(),
        },
    ),
    SlotState: (
        SlotState.HELD,
        {SlotState.HELD: frozenset({SlotState.FREED}), SlotState.FREED: frozenset()},
    ),
    FenceState: (
        FenceState.HOLDING,
        {FenceState.HOLDING: frozenset({FenceState.REVOKED}), FenceState.REVOKED: frozenset()},
    ),
}
"""Per state enum: its first state and the states each state may become."""


def _machine(states: type[enum.Enum]) -> type[RuleBasedStateMachine]:
    """A state machine that moves one value of ``states`` against ``EXPECTED[states]``."""
    first, table = EXPECTED[states]

    class Transitions(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.state = first
            self.path = [first]

        def _to(self, new: enum.Enum) -> enum.Enum:
            result: enum.Enum = self.state.to(new)  # type: ignore[attr-defined]
            return result

        @rule(new=st.sampled_from(list(states)))
        def try_any(self, new: enum.Enum) -> None:
            """Any state: allowed moves there, forbidden raises and stays."""
            if new in table[self.state]:
                assert self._to(new) is new
                self.state = new
                self.path.append(new)
            else:
                with pytest.raises(AssertionError, match=f"{self.state.name} -> {new.name}"):
                    self._to(new)

        @precondition(lambda self: bool(table[self.state]))
        @rule(data=st.data())
        def take_allowed(self, data: st.DataObject) -> None:
            """One of the allowed next states, so that walks go deep."""
            new = data.draw(st.sampled_from(sorted(table[self.state], key=lambda s: s.name)))
            assert self._to(new) is new
            self.state = new
            self.path.append(new)

        @rule()
        def start_again(self) -> None:
            """A new object in the first state (a final state ends one walk, not the test)."""
            self.state = first
            self.path = [first]

        @invariant()
        def the_path_is_made_of_allowed_steps(self) -> None:
            for old, new in zip(self.path, self.path[1:], strict=False):
                assert new in table[old]

    Transitions.__name__ = f"{states.__name__}Transitions"
    return Transitions


@pytest.mark.parametrize("states", list(EXPECTED), ids=lambda s: s.__name__)
def test_transitions_follow_the_table(states: type[enum.Enum]) -> None:
    run_state_machine_as_test(
        _machine(states), settings=settings(max_examples=50, stateful_step_count=20, deadline=None)
    )


@pytest.mark.parametrize("states", list(EXPECTED), ids=lambda s: s.__name__)
def test_every_state_has_a_docstring(states: type[enum.Enum]) -> None:
    """Each state says what it means (the enum's own docs are what a reader has)."""
    assert states.__doc__
    source = inspect.getsource(states)
    for member in states:
        assert f'{member.name} = "{member.value}"\n    """' in source, member


def test_a_state_of_another_enum_is_never_a_transition() -> None:
    with pytest.raises(AssertionError, match="HELD -> REVOKED"):
        SlotState.HELD.to(FenceState.REVOKED)


# --- the objects that hold these states -------------------------------------------------------


def test_a_slot_is_given_back_once() -> None:
    given_back: list[None] = []
    slot = _Slot(lambda: given_back.append(None))
    assert slot.state is SlotState.HELD
    slot.free()
    slot.freed(object())
    slot.free()
    assert slot.state is SlotState.FREED
    assert given_back == [None]


def test_a_fence_keeps_the_first_reason_it_was_revoked_for() -> None:
    fence = StepFence(
        store=None,  # type: ignore[arg-type]  # not asked: revocation is local
        key="k",
        run_id="r",
        step_key="s",
        token=1,
        lease_seconds=10.0,
    )
    assert fence.state is FenceState.HOLDING
    assert not fence.revoked
    fence.revoke("lease lost")
    fence.revoke("released")
    assert fence.state is FenceState.REVOKED
    assert fence.revoked
    assert fence.reason == "lease lost"
    assert not fence.confirm()
