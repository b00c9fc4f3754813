"""Hypothesis stateful test: the store against a plain Python model of the state machine.

Runs on SQLite and on the real PostgreSQL, with an injected clock so that lease expiry is
explored without waiting.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from dagster_taskiq import (
    CodePointer,
    ExecutionResult,
    IdempotencyRecord,
    OpExecutionTask,
    SqlIdempotencyStore,
    TaskState,
    idempotency_key,
)
from dagster_taskiq_testing import FakeClock

STEPS = ("a", "b", "c")
OWNERS = ("w1", "w2", "w3")
LEASES = (1.0, 5.0, 10.0)
MAX_EXAMPLES = int(os.environ.get("DAGSTER_TASKIQ_STATEFUL_EXAMPLES", "100"))


@dataclasses.dataclass
class Model:
    """What the store must hold for one key."""

    state: TaskState = TaskState.PENDING
    attempt: int = 0
    owner: str | None = None
    lease_until: float | None = None
    retry_number: int = 0
    enqueue_attempt: int = 0
    result: ExecutionResult | None = None

    def matches(self, record: IdempotencyRecord) -> bool:
        return (
            self.state,
            self.attempt,
            self.owner,
            self.lease_until,
            self.retry_number,
            self.enqueue_attempt,
            self.result,
        ) == (
            record.state,
            record.attempt,
            record.owner,
            record.lease_until,
            record.retry_number,
            record.enqueue_attempt,
            record.result,
        )


def make_machine(store: SqlIdempotencyStore, clock: FakeClock) -> type[RuleBasedStateMachine]:
    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.run_id = uuid.uuid4().hex
            self.model: dict[str, Model] = {}
            # Every outcome the store accepted: (key, retry_number) -> count.
            self.outcomes: Counter[tuple[str, int]] = Counter()

        def key(self, step: str) -> str:
            return idempotency_key(self.run_id, step)

        def token_for(self, step: str, delta: int) -> int:
            record = self.model.get(self.key(step))
            return max(0, (record.attempt if record else 1) + delta)

        def live(self, m: Model) -> bool:
            return m.state is TaskState.RUNNING and (m.lease_until or 0) >= clock.now()

        @rule(step=st.sampled_from(STEPS), retry=st.integers(0, 2))
        def ensure_pending(self, step: str, retry: int) -> None:
            key = self.key(step)
            task = OpExecutionTask(
                run_id=self.run_id,
                step_key=step,
                idempotency_key=key,
                code=CodePointer(job_name="j", module="m"),
                instance_ref={},
                created_at=clock.now(),
                retry_number=retry,
            )
            m = self.model.get(key)
            if m is None:
                self.model[key] = Model(retry_number=retry)
            elif m.state is TaskState.FAILED and m.retry_number < retry:
                self.model[key] = dataclasses.replace(Model(retry_number=retry), attempt=m.attempt)
            record = store.ensure_pending(task)
            assert self.model[key].matches(record), (self.model[key], record)

        @rule(
            step=st.sampled_from(STEPS),
            owner=st.sampled_from(OWNERS),
            lease=st.sampled_from(LEASES),
            retry=st.none() | st.integers(0, 2),
        )
        def claim(self, step: str, owner: str, lease: float, retry: int | None) -> None:
            key = self.key(step)
            m = self.model.get(key)
            expected: int | None = None
            claimable = m is not None and (
                m.state is TaskState.PENDING
                or (m.state is TaskState.RUNNING and (m.lease_until or 0) < clock.now())
            )
            if m is not None and claimable and (retry is None or retry == m.retry_number):
                m.attempt += 1
                m.state, m.owner, m.lease_until = TaskState.RUNNING, owner, clock.now() + lease
                expected = m.attempt
            assert store.claim(key, owner, lease, retry_number=retry) == expected

        @rule(step=st.sampled_from(STEPS), delta=st.integers(-1, 1), lease=st.sampled_from(LEASES))
        def heartbeat(self, step: str, delta: int, lease: float) -> None:
            key, token = self.key(step), self.token_for(step, delta)
            m = self.model.get(key)
            ok = m is not None and m.state is TaskState.RUNNING and m.attempt == token
            if ok and m is not None:
                m.lease_until = clock.now() + lease
            assert store.heartbeat(key, token, lease) == ok

        @rule(
            step=st.sampled_from(STEPS),
            delta=st.integers(-1, 1),
            final=st.sampled_from([TaskState.COMPLETED, TaskState.FAILED]),
            worker=st.sampled_from(OWNERS),
        )
        def finish(self, step: str, delta: int, final: TaskState, worker: str) -> None:
            key, token = self.key(step), self.token_for(step, delta)
            if token < 1:
                return
            failed = final is TaskState.FAILED
            result = ExecutionResult(
                idempotency_key=key,
                state=final,
                attempt=token,
                worker_id=worker,
                started_at=clock.now() - 1,
                finished_at=clock.now(),
                error_class="Boom" if failed else None,
                error_message="boom" if failed else None,
            )
            m = self.model.get(key)
            ok = False
            if m is not None and m.state is TaskState.RUNNING and m.attempt == token:
                m.state, m.result, m.lease_until = final, result, None
                self.outcomes[(key, m.retry_number)] += 1
                ok = True
            elif m is not None and (m.state, m.attempt, m.result) == (final, token, result):
                ok = True  # the very same outcome again is acknowledged, not recorded twice
            assert store.finish(key, token, result) == ok

        @rule(step=st.sampled_from(STEPS), delta=st.integers(-1, 1))
        def release(self, step: str, delta: int) -> None:
            key, token = self.key(step), self.token_for(step, delta)
            m = self.model.get(key)
            ok = m is not None and m.state is TaskState.RUNNING and m.attempt == token
            if ok and m is not None:
                m.state, m.owner, m.lease_until = TaskState.PENDING, None, None
            assert store.release(key, token) == ok

        @rule(step=st.sampled_from(STEPS), delta=st.integers(-1, 1))
        def reclaim(self, step: str, delta: int) -> None:
            key, token = self.key(step), self.token_for(step, delta)
            m = self.model.get(key)
            ok = (
                m is not None
                and m.state is TaskState.RUNNING
                and m.attempt == token
                and (m.lease_until or 0) < clock.now()
            )
            if ok and m is not None:
                m.state, m.owner, m.lease_until = TaskState.PENDING, None, None
                m.enqueue_attempt += 1
            record = store.reclaim(key, token)
            assert (record is not None) == ok
            if record is not None:
                assert self.model[key].matches(record)

        @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 6.0, 11.0]))
        def advance(self, seconds: float) -> None:
            clock.advance(seconds)

        @invariant()
        def store_matches_model(self) -> None:
            records = {r.key: r for r in store.records_for_run(self.run_id)}
            assert set(records) == set(self.model)
            for key, m in self.model.items():
                assert m.matches(records[key]), (key, m, records[key])
            expired = {r.key for r in store.expired(run_id=self.run_id)}
            assert expired == {
                k
                for k, m in self.model.items()
                if m.state is TaskState.RUNNING and (m.lease_until or 0) < clock.now()
            }

        @invariant()
        def at_most_one_outcome_per_retry(self) -> None:
            assert all(count == 1 for count in self.outcomes.values()), self.outcomes

    return StoreMachine


def test_store_follows_the_model(
    make_store: Callable[..., SqlIdempotencyStore], clock: FakeClock
) -> None:
    store = make_store(clock=clock)
    run_state_machine_as_test(
        make_machine(store, clock),
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
