"""The executor's loop for one run: launch ready steps, follow them to their end, recover.

The bookkeeping of the plan is Dagster's own ``ActiveExecution``, driven exactly as Dagster's
``StepDelegatingExecutor`` drives it (events tailed from the shared event log). What is ours:

* each launch goes through the idempotency store first (``ensure_pending``), so a step that is
  already COMPLETED (a resumed run) is never sent again;
* between iterations the loop waits on the store's outcome watch, not a fixed tick: a worker
  records a step's outcome right after the step's events, and on PostgreSQL that commit
  notifies the run (LISTEN/NOTIFY), so a run waiting for long steps asks nothing of any
  database; on SQLite the watch polls a cheap outcome version. The event log is read only when
  an outcome may have come (or the loop itself logged events to read back);
* maintenance, once a second, in one store read: a step whose record is final but whose Dagster
  outcome event never came (the worker failed outside the step, or a notification was lost)
  gets its events read or its failure reported; a step whose lease expired (its worker died) is
  reclaimed and re-enqueued with a new enqueue attempt. Every few seconds, messages that a
  dead-letter queue received become step failures with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from dagster import DagsterRunStatus, RunsFilter

from dagster_taskiq._dagster_compat import (
    ActiveExecution,
    DagsterEvent,
    EngineEventData,
    EventLogCursor,
    ExecutionPlan,
    ExecutionStep,
    InstanceConcurrencyContext,
    KnownExecutionState,
    PlanOrchestrationContext,
    SerializableErrorInfo,
    seconds_until_due,
)
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.errors import PayloadError
from dagster_taskiq.executor._broker_thread import BrokerThread
from dagster_taskiq.executor._config import step_priority, step_timeout
from dagster_taskiq.executor._event_tail import EventTail
from dagster_taskiq.executor._inflight_state import InFlightState
from dagster_taskiq.executor._tasks import make_task
from dagster_taskiq.idempotency import IdempotencyStore, RunSnapshot
from dagster_taskiq.instances import instance_ref_payload
from dagster_taskiq.messaging import STEP_TASK_NAME, DeadLetter
from dagster_taskiq.payloads import (
    STEP_INTERRUPTED,
    ExecutionResult,
    IdempotencyRecord,
    OpExecutionTask,
    TaskState,
)

if TYPE_CHECKING:
    from dagster_taskiq.executor._executor import DagsterTaskIQExecutor

_log = structlog.get_logger("dagster_taskiq.executor")

MAINTENANCE_INTERVAL = 1.0
"""Seconds between store reconciliations (lost outcomes, expired leases): one read each."""

DEAD_LETTER_INTERVAL = 5.0
"""Seconds between looks at the dead-letter queue (a broker request each)."""

CANCEL_CHECK_INTERVAL = 5.0
"""Seconds between looks at the run's status for a cancellation that did not interrupt this
process (the run marked CANCELING by run monitoring or another launcher); a step that a worker
gave up because its run is cancelled makes the loop look at once."""

_CANCELLED = [DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED]


@dataclasses.dataclass
class _InFlight:
    """One step the loop launched, until the event tail reads its outcome event."""

    step: ExecutionStep
    key: str
    retry_number: int
    enqueue_attempt: int
    launched_at: float
    tail_cursor: str | None = None
    """The event tail's cursor when the step was launched: its events all come after it."""
    state: InFlightState = InFlightState.PREPARING
    """Where it stands (``InFlightState``); changed only by :meth:`enter`."""
    state_since: float = dataclasses.field(default_factory=time.monotonic)
    """When (``time.monotonic``) it entered ``state``: for LEASE_EXPIRED, since when the lease
    is seen expired."""

    def enter(self, state: InFlightState) -> None:
        """Go to ``state`` (AssertionError if the table of ``InFlightState`` forbids it)."""
        self.state = self.state.to(state)
        self.state_since = time.monotonic()


class RunLoop:
    """Executes one run's plan through the broker. Use once, as an iterator of events."""

    def __init__(
        self,
        executor: DagsterTaskIQExecutor,
        plan_context: PlanOrchestrationContext,
        execution_plan: ExecutionPlan,
        *,
        broker: BrokerThread,
        store: IdempotencyStore,
    ) -> None:
        self.executor = executor
        self.settings = executor.settings
        self.ctx = plan_context
        self.plan = execution_plan
        self.broker = broker
        self.store = store
        self.instance = plan_context.instance
        self.run_id = plan_context.run_id
        self.pointer = pointer_for_job(plan_context.reconstructable_job)
        self.instance_ref = instance_ref_payload(self.instance)
        self.inflight: dict[str, _InFlight] = {}
        self.tail = EventTail(self.instance, self.run_id)
        self.owner = f"executor:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._next_maintenance = 0.0
        self._next_dead_letters = 0.0
        self._next_cancel_check = time.monotonic() + CANCEL_CHECK_INTERVAL
        self._step_interrupted = False
        """A worker recorded a step interrupted because the run is being cancelled."""
        self._outputs_release_steps = (
            not self.settings.step_dependency_config.require_upstream_step_success
        )
        """``step_dependency_config.require_upstream_step_success`` off: a step's consumers may
        start on its outputs before it ends, so the event log is read every maintenance tick
        while steps are in flight, not only when an outcome comes."""
        self._read_events = True
        """Whether the event log may hold events the loop has not read (an outcome came, or
        the loop logged events itself): read it on the next iteration."""

    # --- the loop ------------------------------------------------------------------------

    def events(self) -> Iterator[DagsterEvent]:
        DagsterEvent.engine_event(
            self.ctx,
            f"Executing steps on dagster-taskiq workers (backend "
            f"'{self.settings.backend}', lease {self.settings.visibility_timeout:g} s).",
            EngineEventData(),
        )
        run_tags = self.ctx.dagster_run.tags
        for step in self.plan.get_all_steps_in_topo_order():
            # A bad tag fails the run before any step is sent.
            step_timeout(step.key, step.tags)
            step_priority(step.key, step.tags, run_tags)
        watch = self.store.watch_outcomes(self.run_id)
        try:
            with (
                InstanceConcurrencyContext(self.instance, self.ctx.dagster_run) as concurrency,
                ActiveExecution(
                    self.plan,
                    retry_mode=self.settings.retries,
                    max_concurrent=self.settings.max_concurrent,
                    tag_concurrency_limits=[dict(t) for t in self.settings.tag_concurrency_limits]
                    or None,
                    instance_concurrency_context=concurrency,
                    step_dependency_config=self.settings.step_dependency_config,
                ) as active,
            ):
                if self.ctx.resume_from_failure:
                    yield from self._resume(active)
                while not active.is_complete:
                    if active.check_for_interrupts() or self._cancel_requested():
                        self._interrupt(active)
                        return
                    yield from self._step(active)
                    if not _is_complete(active) and watch.wait(self._sleep_seconds(active)):
                        self._read_events = True
        finally:
            watch.close()
            self.tail.close()

    def _step(self, active: ActiveExecution) -> Iterator[DagsterEvent]:
        now = time.monotonic()
        # The snapshot is read before the events, so that a record that is final in it has all
        # of its events in the log already (workers write events first, then finish).
        snapshot = self.store.run_snapshot(self.run_id) if now >= self._next_maintenance else None
        if snapshot is not None and self._outputs_release_steps and self.inflight:
            self._read_events = True  # outputs of steps still running may start their consumers
        unread = self._outcomes_unread(snapshot) if snapshot is not None else []
        if unread or self._read_events:
            self._read_events = False
            # An outcome recorded whose event the loop has not read: a notification that never
            # came, or an event PostgreSQL committed after later ones: read from its launch.
            since = min(unread, key=_cursor_order) if unread else None
            for event in self.tail.pop_since(since) if unread else self.tail.pop():
                yield event
                self._handle_event(active, event)
        if list(active.plan_events_iterator(self.ctx)):
            self._read_events = True  # skips the loop logged: read them back
        if snapshot is not None:
            self._next_maintenance = time.monotonic() + MAINTENANCE_INTERVAL
            self._reconcile(active, snapshot)
        if now >= self._next_dead_letters:
            self._next_dead_letters = now + DEAD_LETTER_INTERVAL
            self._handle_dead_letters(active)
        self._send_rearmed(active)
        list(active.concurrency_event_iterator(self.ctx))
        self._launch(active, list(active.get_steps_to_execute()))

    def _cancel_requested(self) -> bool:
        """Whether the run is CANCELING (or CANCELED) in Dagster: looked at every
        ``CANCEL_CHECK_INTERVAL``, and at once after a worker gave a step up for it."""
        now = time.monotonic()
        if now < self._next_cancel_check and not self._step_interrupted:
            return False
        self._next_cancel_check = now + CANCEL_CHECK_INTERVAL
        self._step_interrupted = False
        found = self.instance.get_run_ids(
            RunsFilter(run_ids=[self.run_id], statuses=_CANCELLED), limit=1
        )
        return bool(found)

    def _outcomes_unread(self, snapshot: RunSnapshot) -> list[str | None]:
        """The launch cursors of the steps in flight whose record is final: their events are
        in the log (a worker writes them before it records the outcome), not read yet."""
        cursors = []
        for record in snapshot.records:
            if record.result is not None and record.result.error_class == STEP_INTERRUPTED:
                self._step_interrupted = True
            flight = self.inflight.get(record.step_key)
            if (
                flight is not None
                and record.state.is_final
                and record.retry_number == flight.retry_number
                and flight.state is not InFlightState.OUTCOME_REPORTED
            ):
                cursors.append(flight.tail_cursor)
        return cursors

    def _sleep_seconds(self, active: ActiveExecution) -> float:
        """How long to wait for an outcome before the loop has something else to do."""
        seconds = self.settings.poll_interval
        retry_in = seconds_until_due(active)
        if retry_in is not None:
            seconds = min(seconds, retry_in)
        if self._read_events:
            return 0.0
        due = (
            min(self._next_maintenance, self._next_dead_letters, self._next_cancel_check)
            - time.monotonic()
        )
        return max(0.0, min(seconds, due + 0.001))

    # --- events --------------------------------------------------------------------------

    def _handle_event(self, active: ActiveExecution, event: DagsterEvent) -> None:
        step_key = event.step_key
        if event.is_step_skipped:
            assert step_key is not None
            active.verify_complete(self.ctx, step_key)
        elif event.is_resource_init_failure:
            active.handle_event(event)
            assert step_key is not None
            step_context = self.ctx.for_step(active.get_step_by_key(step_key))
            error = event.engine_event_data.error
            assert isinstance(error, SerializableErrorInfo)
            self.executor.log_failure_or_retry_event_after_error(
                step_context, error, active.get_known_state()
            )
        else:
            active.handle_event(event)
            if event.is_step_success or event.is_step_failure or event.is_step_up_for_retry:
                assert step_key is not None
                self.inflight.pop(step_key, None)
                if not event.is_step_up_for_retry:
                    active.verify_complete(self.ctx, step_key)

    # --- launching -----------------------------------------------------------------------

    def _launch(self, active: ActiveExecution, steps: list[ExecutionStep]) -> None:
        if not steps:
            return
        known_state = active.get_known_state()
        to_send: list[OpExecutionTask] = []
        for step in steps:
            task = self._task(step, known_state)
            flight = _InFlight(
                step=step,
                key=task.idempotency_key,
                retry_number=task.retry_number,
                enqueue_attempt=0,
                launched_at=time.monotonic(),
                tail_cursor=self.tail.cursor,
            )
            self.inflight[step.key] = flight
            sendable = self._prepare(task, flight)
            if sendable is not None:
                to_send.append(sendable)
        self.broker.send(to_send)

    def _task(self, step: ExecutionStep, known_state: KnownExecutionState) -> OpExecutionTask:
        """The step's message payload (``make_task`` with this run's fixed parts)."""
        return make_task(
            run_id=self.run_id,
            step=step,
            pointer=self.pointer,
            instance_ref=self.instance_ref,
            known_state=known_state,
            retry_mode=self.settings.retries,
            run_tags=self.ctx.dagster_run.tags,
            priority_lanes=self.settings.priority_lanes,
        )

    def _prepare(self, task: OpExecutionTask, flight: _InFlight) -> OpExecutionTask | None:
        """Record the step PENDING; return the task to send, or None if it must not be sent.

        ``flight`` comes in PREPARING and goes out WAITING_FOR_REARM or DISPATCHED."""
        record = self.store.ensure_pending(task)
        if record.retry_number < task.retry_number:
            # The previous try's worker has not recorded its FAILED outcome yet: wait for it.
            flight.enter(InFlightState.WAITING_FOR_REARM)
            return None
        flight.enter(InFlightState.DISPATCHED)
        if record.retry_number > task.retry_number or record.state.is_final:
            self._note(
                flight,
                f"Step {task.step_key} is already {record.state.value} in the idempotency store "
                f"(retry {record.retry_number}, attempt {record.attempt}): not sent again; its "
                "recorded outcome is taken from the event log.",
            )
            return None
        if record.state is TaskState.RUNNING:
            self._note(
                flight,
                f"Step {task.step_key} is already RUNNING on {record.owner}: not sent again.",
            )
            return None
        flight.enqueue_attempt = record.enqueue_attempt
        return dataclasses.replace(task, enqueue_attempt=record.enqueue_attempt)

    def _send_rearmed(self, active: ActiveExecution) -> None:
        waiting = [f for f in self.inflight.values() if f.state is InFlightState.WAITING_FOR_REARM]
        if not waiting:
            return
        known_state = active.get_known_state()
        to_send = []
        for flight in waiting:
            task = self._task(flight.step, known_state)
            flight.enter(InFlightState.PREPARING)
            sendable = self._prepare(task, flight)
            if sendable is not None:
                to_send.append(sendable)
        self.broker.send(to_send)

    # --- maintenance ---------------------------------------------------------------------

    def _reconcile(self, active: ActiveExecution, snapshot: RunSnapshot) -> None:
        by_step = {r.step_key: r for r in snapshot.records}
        expired = snapshot.expired
        now = time.monotonic()
        resend: list[OpExecutionTask] = []
        for step_key, flight in list(self.inflight.items()):
            record = by_step.get(step_key)
            if record is None or not flight.state.watched:
                continue
            if record.retry_number != flight.retry_number:
                continue
            if record.state.is_final:
                self._report_lost_outcome(active, flight, record)
            elif record.state is TaskState.RUNNING and record.key in expired:
                if flight.state is InFlightState.DISPATCHED:
                    flight.enter(InFlightState.LEASE_EXPIRED)
                # Give the broker one visibility timeout to redeliver the message first.
                if now - flight.state_since >= self.settings.visibility_timeout:
                    reclaimed = self.store.reclaim(record.key, record.attempt)
                    if reclaimed is not None:
                        resend.append(self._resend_task(active, flight, reclaimed))
            elif flight.state is InFlightState.LEASE_EXPIRED:
                flight.enter(InFlightState.DISPATCHED)  # its lease was renewed, or released
        self.broker.send(resend)

    def _resend_task(
        self, active: ActiveExecution, flight: _InFlight, record: IdempotencyRecord
    ) -> OpExecutionTask:
        flight.enqueue_attempt = record.enqueue_attempt
        flight.enter(InFlightState.DISPATCHED)
        self._note(
            flight,
            f"Step {flight.step.key}: its worker stopped heartbeating (lease expired, owner "
            f"{record.owner}); re-enqueued as attempt {record.enqueue_attempt}.",
        )
        task = self._task(flight.step, active.get_known_state())
        return dataclasses.replace(task, enqueue_attempt=record.enqueue_attempt)

    def _report_lost_outcome(
        self, active: ActiveExecution, flight: _InFlight, record: IdempotencyRecord
    ) -> None:
        """The record is final but Dagster never saw the step end: report it as a failure."""
        result = record.result
        if record.state is TaskState.COMPLETED:
            message = (
                f"Step {flight.step.key} is COMPLETED in the idempotency store but its success "
                "event is missing from the event log"
            )
            cls_name = "MissingStepEvents"
            stack: list[str] = []
        else:
            message = (result.error_message if result else None) or "the step failed"
            cls_name = (result.error_class if result else None) or "StepFailed"
            stack = [result.traceback] if result and result.traceback else []
        self._fail(active, flight, f"{message} (worker {record.owner})", cls_name, stack)

    def _fail(
        self,
        active: ActiveExecution,
        flight: _InFlight,
        message: str,
        cls_name: str,
        stack: list[str],
    ) -> None:
        flight.enter(InFlightState.OUTCOME_REPORTED)
        self._read_events = True  # the failure (or retry) event logged below
        step_context = self.ctx.for_step(flight.step)
        self.executor.log_failure_or_retry_event_after_error(
            step_context,
            SerializableErrorInfo(message=message, stack=stack, cls_name=cls_name),
            active.get_known_state(),
        )

    def _handle_dead_letters(self, active: ActiveExecution) -> None:
        if not self.broker.supports_dead_letters:
            return
        for letter in self.broker.dead_letters(10):
            self._handle_dead_letter(active, letter)

    def _handle_dead_letter(self, active: ActiveExecution, letter: DeadLetter) -> None:
        task = self._decode_dead_letter(letter)
        if task is None:
            _log.error("dead_letter_undecodable", message_id=letter.message_id)
            self.broker.ack_dead_letter(letter)
            return
        if task.run_id != self.run_id:
            other = self.instance.get_run_by_id(task.run_id)
            if other is None or other.is_finished:
                self.broker.ack_dead_letter(letter)  # nobody is waiting for it any more
            return  # else: visible again later, for that run's executor
        flight = self.inflight.get(task.step_key)
        receives = letter.receive_count
        reason = f"dead-lettered after {receives if receives is not None else 'too many'} receives"
        token = self.store.claim(
            task.idempotency_key,
            self.owner,
            self.settings.visibility_timeout,
            retry_number=task.retry_number,
        )
        if token is None:
            record = self.store.get(task.idempotency_key)
            if record is not None and (
                record.state.is_final or record.retry_number != task.retry_number
            ):
                self.broker.ack_dead_letter(letter)
            return  # a worker holds a live lease on it: look again later
        now = time.time()
        self.store.finish(
            task.idempotency_key,
            token,
            ExecutionResult(
                idempotency_key=task.idempotency_key,
                state=TaskState.FAILED,
                attempt=token,
                worker_id=self.owner,
                started_at=now,
                finished_at=now,
                error_class="DeadLettered",
                error_message=f"message of step {task.step_key} was {reason}",
            ),
        )
        self.broker.ack_dead_letter(letter)
        if flight is not None and flight.retry_number == task.retry_number:
            self._fail(
                active,
                flight,
                f"Step {task.step_key} failed: its message was {reason} (every worker that "
                "received it died or timed out before finishing it)",
                "DeadLettered",
                [],
            )

    def _decode_dead_letter(self, letter: DeadLetter) -> OpExecutionTask | None:
        try:
            message = self.broker.broker.formatter.loads(letter.body)
            if message.task_name != STEP_TASK_NAME or len(message.args) != 1:
                return None
            payload = message.args[0]
            if not isinstance(payload, str) or not self.broker.authentic(message.labels, payload):
                return None  # forged: never fails a step
            return OpExecutionTask.from_json(payload)
        except (PayloadError, ValueError, TypeError):
            return None

    # --- resume and termination -----------------------------------------------------------

    def _resume(self, active: ActiveExecution) -> Iterator[DagsterEvent]:
        DagsterEvent.engine_event(self.ctx, "Resuming execution from failure", EngineEventData())
        prior = self.tail.pop()
        yield from prior
        for step in active.rebuild_from_events(prior):
            self._launch(active, [step])

    def _interrupt(self, active: ActiveExecution) -> None:
        active.mark_interrupted()
        DagsterEvent.engine_event(
            self.ctx,
            "Run is being cancelled: steps in flight are interrupted by their workers (they "
            "watch the run's status and free a blocked step's slot after their interrupt "
            "grace); queued steps will not start.",
            EngineEventData.interrupted(list(self.inflight)),
        )

    def _note(self, flight: _InFlight, message: str) -> None:
        DagsterEvent.engine_event(self.ctx.for_step(flight.step), message, EngineEventData())


def _is_complete(active: ActiveExecution) -> bool:
    return active.is_complete


def _cursor_order(cursor: str | None) -> int:
    """Earlier cursors first; None (the run's start) before any."""
    return -1 if cursor is None else EventLogCursor.parse(cursor).storage_id()
