"""The worker's loop: receive step messages, claim, run, heartbeat, finish, ack.

For each message (see ``docs/architecture.md``):

1. with signing keys (``dagster_taskiq.signing``), check its signature before decoding the
   payload: a message unsigned, signed with an unknown key, altered, or signed for another
   queue is refused (a warning with the reason and message id, ``refused`` counted) and deleted,
   never claimed or run; then decode it: a malformed, foreign or unknown-version payload is
   logged with its reason and acked (both would fail the same way on every worker), never
   crashing the worker;
2. ``claim`` it in the idempotency store; a lost claim (another worker holds it, or it is final
   already: a duplicate delivery) is acked without running any user code;
3. run the step on its own daemon thread while a heartbeat extends both the store lease and the
   message's visibility, and a watcher interrupts the step if its run is being cancelled or its
   timeout (op tag ``dagster-taskiq/timeout``) passes: the thread is sent an exception and the
   step's child processes SIGTERM; a step still running ``interrupt_grace`` seconds later (blocked
   in C: a sleep, a database call, a wait) is given up: its slot is freed and its failure recorded,
   and its thread left to end when the blocking call returns. The step's Dagster events pass a
   ``StepFence`` (``_fence.py``): its outcome event is written only while the store confirms the
   claim, and none once the worker lost or gave the step up;
4. ``finish`` with the fence token, and only then ack (delete) the message.

On stop (SIGTERM): no new messages are taken; steps in flight get ``grace_period`` seconds to
finish; what is left is interrupted and released (store record back to PENDING, message visible
again) for another worker. A SIGKILLed worker loses nothing either: its leases expire.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from dagster import (
    DagsterExecutionInterruptedError,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from taskiq import AsyncBroker
from taskiq.acks import AckableMessage

from dagster_taskiq.errors import (
    DagsterTaskIQError,
    MessageRefusedError,
    PayloadError,
    StepTimeoutError,
    StoreUnavailableError,
)
from dagster_taskiq.idempotency import AsyncIdempotencyStore, IdempotencyStore
from dagster_taskiq.instances import instance_from_ref
from dagster_taskiq.messaging import (
    STEP_TASK_NAME,
    MessageControl,
    SupportsMessageControl,
    SupportsOrigin,
    SupportsQueueDepth,
    SupportsReceiveLimit,
)
from dagster_taskiq.payloads import STEP_INTERRUPTED, ExecutionResult, OpExecutionTask, TaskState
from dagster_taskiq.signing import MessageVerifier, Refusal
from dagster_taskiq.worker._children import children_of, signal_children, track_children
from dagster_taskiq.worker._fence import StepFence
from dagster_taskiq.worker._health import Health
from dagster_taskiq.worker._metrics import WorkerMetrics
from dagster_taskiq.worker._recycling import RecycleReason, resident_mib
from dagster_taskiq.worker._states import ActiveStepState, SlotState
from dagster_taskiq.worker._step_runner import RunsSteps, StepOutcome
from dagster_taskiq.worker._threads import StepThread

_log = structlog.get_logger("dagster_taskiq.worker")

_CANCELLED = [DagsterRunStatus.CANCELING, DagsterRunStatus.CANCELED]

SAMPLE_EVERY = 15.0
"""Seconds between the worker's looks at its queues' depth and at the store (readiness)."""

TAKEOVER_AFTER = 1.0
"""Seconds into a step after which the worker extends its message itself (see _heartbeat)."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """How a worker runs steps."""

    concurrency: int = max(1, os.cpu_count() or 1)
    visibility_timeout: float = 300.0
    """The step lease and message visibility without a heartbeat, seconds (the executor's
    ``visibility_timeout``)."""
    heartbeat_interval: float | None = None
    """Seconds between heartbeats; default a third of the lease."""
    cancel_check_interval: float = 1.0
    interrupt_grace: float = 5.0
    """Seconds an interrupted step (its run cancelled, or its timeout passed) gets to end before
    the worker gives it up and frees its slot."""
    grace_period: float = 30.0
    worker_id: str = dataclasses.field(default_factory=default_worker_id)
    max_steps: int | None = None
    """Recycle after this many steps: stop taking messages, finish the steps in flight, return
    (the CLI exits 0 for its supervisor to restart it). None: never."""
    max_memory: float | None = None
    """Recycle once the process's resident memory passes this many MiB. None: never."""
    memory_check_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise DagsterTaskIQError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.visibility_timeout <= 0:
            raise DagsterTaskIQError(
                f"visibility_timeout must be > 0, got {self.visibility_timeout}"
            )
        if self.interrupt_grace < 0:
            raise DagsterTaskIQError(
                f"interrupt_grace must be >= 0 seconds, got {self.interrupt_grace}"
            )
        if self.heartbeat_interval is not None and not (
            0 < self.heartbeat_interval < self.visibility_timeout
        ):
            raise DagsterTaskIQError(
                f"heartbeat_interval must be in (0, visibility_timeout={self.visibility_timeout}), "
                f"got "
                f"{self.heartbeat_interval}"
            )

        if self.max_steps is not None and self.max_steps < 1:
            raise DagsterTaskIQError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_memory is not None and self.max_memory <= 0:
            raise DagsterTaskIQError(f"max_memory must be > 0 MiB, got {self.max_memory}")

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or self.visibility_timeout / 3


class _Slot:
    """One of the worker's ``concurrency`` slots, held by a message from its receipt until its
    step is over (its outcome is recorded and the message acked afterwards, off the slot)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self.state = SlotState.HELD

    def free(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        if self.state is SlotState.HELD:
            self.state = self.state.to(SlotState.FREED)
            self._release()

    def freed(self, _: object) -> None:
        """``free`` as a task's done callback."""
        self.free()


class StopReason(enum.Enum):
    """Why the worker interrupts a step it runs."""

    CANCELLED = "cancelled"
    """Its run is being cancelled (CANCELING or CANCELED in Dagster)."""
    TIMED_OUT = "timed_out"
    """It ran past its op tag ``dagster-taskiq/timeout``."""


@dataclasses.dataclass
class _Active:
    """A step this worker claimed, from its claim until its outcome is handled."""

    task: OpExecutionTask
    token: int
    message: AckableMessage
    control: MessageControl | None
    thread: StepThread[StepOutcome]
    fence: StepFence
    children: list[subprocess.Popen[Any]] = dataclasses.field(default_factory=list)
    """The processes the step's thread started (``_children``)."""
    state: ActiveStepState = ActiveStepState.RUNNING
    """Changed only by :meth:`enter` (``ActiveStepState`` checks the transition)."""
    stop: StopReason | None = None
    """Why the worker interrupted the step, once it did (the first reason only)."""
    stopping: asyncio.Task[None] | None = None
    """Interrupts the step, then gives it up if it is still running after the grace."""
    given_up: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def enter(self, state: ActiveStepState) -> None:
        self.state = self.state.to(state)


class Worker:
    """Consumes step messages from ``broker`` until ``stop`` is set."""

    def __init__(
        self,
        broker: AsyncBroker,
        store: IdempotencyStore,
        runner: RunsSteps,
        options: WorkerOptions | None = None,
        *,
        verifier: MessageVerifier | None = None,
    ) -> None:
        if verifier is not None and not isinstance(broker, SupportsOrigin):
            raise DagsterTaskIQError(
                f"signing keys need a broker that says which queue a message came from; "
                f"{type(broker).__name__} cannot (use a dagster-taskiq broker backend)"
            )
        self.broker = broker
        self._origins = broker if isinstance(broker, SupportsOrigin) else None
        self.verifier = verifier
        """Checks each message's signature; None: messages are not authenticated."""
        self.refused: collections.Counter[Refusal] = collections.Counter()
        """Messages refused by the signature check, by reason."""
        self.metrics = WorkerMetrics()
        """Its Prometheus metrics (served by ``MetricsServer`` with ``--metrics-port``)."""
        self.health = Health()
        """What ``/healthz`` and ``/readyz`` answer."""
        self.store = AsyncIdempotencyStore(
            store, max_threads=max(4, 2 * (options or WorkerOptions()).concurrency)
        )
        self.runner = runner
        self.options = options or WorkerOptions()
        self._active: dict[str, _Active] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._free_slots = self.options.concurrency
        """Slots not holding a message (those waiting for a receive included)."""
        self.processed = 0
        """Messages handled to their end (run, skipped as duplicate, or refused)."""
        self.steps_started = 0
        """Steps claimed (and so run) by this worker, or about to be."""
        self.recycled: RecycleReason | None = None
        """Why the worker stopped taking messages on its own, if it did."""
        self._taking = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Start the broker, consume until ``stop``, drain, shut the broker down."""
        log = _log.bind(worker=self.options.worker_id)
        self.broker.is_worker_process = True
        if isinstance(self.broker, SupportsReceiveLimit):
            # The receive is for the slot just acquired, plus any other free one.
            self.broker.limit_receives(lambda: self._free_slots + 1)
        self._check_memory_mark()
        await self.broker.startup()
        track_children()
        log.info(
            "worker_started",
            concurrency=self.options.concurrency,
            max_steps=self.options.max_steps,
            max_memory=self.options.max_memory,
        )
        if self.verifier is None:
            log.warning(
                "messages_not_authenticated",
                detail="no signing key: this worker runs any step message written to its "
                "queues; give it the executor's signing_key (--signing-key-file) and "
                "--require-signed (docs/security.md)",
            )
        else:
            log.info("messages_authenticated", key_ids=list(self.verifier.key_ids))
        self._taking = taking = asyncio.Event()  # set: take no more messages
        helpers = [
            asyncio.create_task(self._watch_cancellations()),
            asyncio.create_task(_relay(stop, taking)),
            asyncio.create_task(self._beat()),
            asyncio.create_task(self._sample()),
        ]
        if self.options.max_memory is not None:
            helpers.append(asyncio.create_task(self._watch_memory()))
        try:
            await self._consume(taking)
        finally:
            if self.recycled is not None:
                await self._finish_in_flight(stop, log)
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._drain()
            await self.broker.shutdown()
            log.info(
                "worker_stopped",
                processed=self.processed,
                refused={reason.value: n for reason, n in self.refused.items()},
            )

    async def _consume(self, stop: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.options.concurrency)
        messages = self.broker.listen()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if not await self._acquire(slots, stopped):
                    break  # stopped while every slot was busy
                self._free_slots -= 1
                message = await self._next(messages, stopped)
                if message is None:
                    self._release(slots)
                    break
                slot = _Slot(lambda: self._release(slots))
                task = asyncio.create_task(self._handle(message, slot))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(slot.freed)
        finally:
            stopped.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await messages.aclose()

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._free_slots += 1
        slots.release()

    @staticmethod
    async def _acquire(slots: asyncio.Semaphore, stopped: asyncio.Future[Any]) -> bool:
        """Wait for a free slot; False if ``stopped`` comes first."""
        acquire = asyncio.ensure_future(slots.acquire())
        done, _ = await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if acquire in done:
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
        if acquire.done() and not acquire.cancelled():
            slots.release()  # acquired just as we gave up
        return False

    @staticmethod
    async def _next(
        messages: AsyncIterator[bytes | AckableMessage], stopped: asyncio.Future[Any]
    ) -> AckableMessage | None:
        receive = asyncio.ensure_future(anext(messages))
        done, _ = await asyncio.wait({receive, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if receive in done:
            message = receive.result()
            if isinstance(message, bytes):  # a broker without acknowledgements
                return AckableMessage(data=message, ack=_no_ack)
            return message
        receive.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await receive
        return None

    # --- one message ----------------------------------------------------------------------

    async def _handle(self, message: AckableMessage, slot: _Slot) -> None:
        self.metrics.received.inc()
        try:
            await self._process(message, slot)
        except Exception as exc:  # never let one message take the worker down
            _log.exception("message_handling_failed", error=repr(exc))
        finally:
            self.processed += 1

    async def _process(self, message: AckableMessage, slot: _Slot) -> None:
        task = self._decode(message)
        if task is None:
            await _ack(message)
            return
        log = _log.bind(
            key=task.idempotency_key, retry=task.retry_number, worker=self.options.worker_id
        )
        claim_sent_at = time.monotonic()
        token = await self._claim(task, message, log)
        if token is None:
            return
        control = self._control(message)
        started = time.time()
        self.metrics.claimed.inc()
        self.metrics.handoff.observe(max(0.0, started - task.created_at))
        self.metrics.in_flight.inc()
        fence = StepFence(
            self.store.store,
            key=task.idempotency_key,
            run_id=task.run_id,
            step_key=task.step_key,
            token=token,
            lease_seconds=self.options.visibility_timeout,
            confirmed_at=claim_sent_at,
        )
        children: list[subprocess.Popen[Any]] = []
        thread = StepThread(
            lambda: children_of(children, lambda: fence.run(lambda: self.runner.run(task))),
            name=f"step:{task.step_key}",
        )
        active = _Active(task, token, message, control, thread, fence, children)
        self._active[task.idempotency_key] = active
        heartbeat = asyncio.create_task(self._heartbeat(active))
        limit = asyncio.create_task(self._time_limit(active)) if task.timeout else None
        log.info("step_started", token=token)
        try:
            outcome = await self._outcome(active)
        except BaseException as exc:  # an interrupt that escaped Dagster's own handling
            outcome = StepOutcome.failed(type(exc).__name__, str(exc) or "step interrupted")
        finally:
            helpers = [t for t in (heartbeat, limit, active.stopping) if t is not None]
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)  # none left pending
            self._active.pop(task.idempotency_key, None)
            self.metrics.in_flight.dec()
            if active.state is ActiveStepState.RUNNING:
                active.enter(ActiveStepState.FINISHING)
            slot.free()  # the step is over: the next message may start while this one ends
        if active.state is ActiveStepState.RELEASED:
            return  # given back to another worker while shutting down
        if active.state is ActiveStepState.GIVEN_UP or outcome is None:
            outcome = await self._given_up(active, log)  # fence revoked: still ours to record
        elif active.stop is StopReason.CANCELLED:
            await self._free_pool_slot(active, log)
        if fence.revoked and active.state is not ActiveStepState.GIVEN_UP:
            await self._abandon(active, log)
            return
        await self._finish(
            task=task, token=token, outcome=outcome, started=started, message=message, log=log
        )
        self._check_recycling()

    async def _claim(self, task: OpExecutionTask, message: AckableMessage, log: Any) -> int | None:
        """The claim's fence token; None if the step is not this worker's to run: it is
        recycling (the message given back), or the step is held by another worker or final
        already (a duplicate delivery: the message acked without running anything)."""
        if self.recycled is not None or not self._reserve_step():
            self.metrics.refuse("recycling")
            await self._give_back(message, log)  # for another worker
            return None
        owner = f"{self.options.worker_id}/{uuid.uuid4().hex[:8]}"
        token = await self.store.claim(
            task.idempotency_key,
            owner,
            self.options.visibility_timeout,
            retry_number=task.retry_number,
        )
        if token is None:
            self.steps_started -= 1  # not a step of this worker's after all
            record = await self.store.get(task.idempotency_key)
            final = record is not None and record.state.is_final
            self.metrics.refuse("completed_already" if final else "duplicate")
            log.info(
                "claim_lost_acked_without_running",
                state=None if record is None else record.state.value,
                owner=None if record is None else record.owner,
            )
            await _ack(message)
        elif self.options.max_steps is not None and self.steps_started >= self.options.max_steps:
            self._recycle(RecycleReason.MAX_STEPS)  # this step is the last: take no more
        return token

    async def _outcome(self, active: _Active) -> StepOutcome | None:
        """The step's outcome when its thread ends, or None if the worker gives it up first."""
        result = asyncio.ensure_future(active.thread.result())
        given_up = asyncio.ensure_future(active.given_up.wait())
        try:
            await asyncio.wait({result, given_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            given_up.cancel()
        if active.state is ActiveStepState.GIVEN_UP:
            result.cancel()  # the thread runs on, detached; its result is not awaited
            return None
        return await result

    async def _time_limit(self, active: _Active) -> None:
        assert active.task.timeout is not None
        await asyncio.sleep(active.task.timeout)
        self._stop(active, StopReason.TIMED_OUT)

    def _stop(self, active: _Active, reason: StopReason) -> None:
        """Interrupt ``active`` for ``reason`` (once; a later reason is ignored)."""
        if active.stop is None and active.state is ActiveStepState.RUNNING:
            active.stop = reason
            active.stopping = asyncio.create_task(self._interrupt(active))

    async def _interrupt(self, active: _Active) -> None:
        """Send the step's thread an exception and its children SIGTERM; after the grace, if it
        still runs, give it up."""
        key, task = active.task.idempotency_key, active.task
        error: type[BaseException] = DagsterExecutionInterruptedError
        if active.stop is StopReason.TIMED_OUT and task.timeout is not None:
            error = StepTimeoutError.after(task.timeout)
        interrupted = active.thread.interrupt(error)
        signal_children(active.children, signal.SIGTERM, key=key)
        _log.info("step_interrupted", key=key, reason=active.stop and active.stop.value)
        if not interrupted:
            return
        await asyncio.sleep(self.options.interrupt_grace)
        if active.thread.done or active.state is not ActiveStepState.RUNNING:
            return
        reason = f"given up: {self.options.interrupt_grace:g} s after its interrupt"
        if not active.fence.give_up(reason):
            return  # its outcome is written: its thread is ending
        active.enter(ActiveStepState.GIVEN_UP)
        signal_children(active.children, signal.SIGKILL, key=key)
        active.thread.interrupt(error)  # again: a runner waiting in Python ends its child
        active.given_up.set()

    async def _given_up(self, active: _Active, log: Any) -> StepOutcome:
        """The failure recorded for a step the worker gave up; noted in the run's event log."""
        task, grace = active.task, self.options.interrupt_grace
        if active.stop is StopReason.TIMED_OUT and task.timeout is not None:
            error_class = StepTimeoutError.__name__
            cause = str(StepTimeoutError.after(task.timeout)())
        else:
            error_class = STEP_INTERRUPTED
            cause = f"step interrupted: run {task.run_id} is being cancelled"
        message = (
            f"{cause}; it did not stop within {grace:g} s of its interrupt (blocked in a call "
            "that cannot be interrupted from another thread), so the worker gave it up and freed "
            "its slot; its thread ends when that call returns, and writes nothing more"
        )
        log.warning("step_given_up", token=active.token, reason=error_class)
        try:
            await asyncio.to_thread(_note_given_up, task, message)
        except Exception as exc:
            log.warning("step_note_failed", error=repr(exc))
        if active.stop is StopReason.CANCELLED:
            await self._free_pool_slot(active, log)
        return StepOutcome.failed(error_class, message)

    @staticmethod
    async def _free_pool_slot(active: _Active, log: Any) -> None:
        """Give back the Dagster pool slot of a step of a cancelled run: its run process, which
        frees a step's slot when it reads the step's outcome, has stopped following the run."""
        task = active.task
        try:
            instance = instance_from_ref(task.instance_ref)
            await asyncio.to_thread(
                instance.event_log_storage.free_concurrency_slot_for_step,
                task.run_id,
                task.step_key,
            )
        except Exception as exc:
            log.warning("pool_slot_not_freed", error=repr(exc))

    async def _finish(
        self,
        *,
        task: OpExecutionTask,
        token: int,
        outcome: StepOutcome,
        started: float,
        message: AckableMessage,
        log: Any,
    ) -> None:
        result = ExecutionResult(
            idempotency_key=task.idempotency_key,
            state=outcome.state,
            attempt=token,
            worker_id=self.options.worker_id,
            started_at=started,
            finished_at=time.time(),
            error_class=outcome.error_class,
            error_message=outcome.error_message,
            traceback=outcome.traceback,
        )
        try:
            recorded = await self.store.finish(task.idempotency_key, token, result)
        except StoreUnavailableError as exc:
            # Not recorded: do not ack; the message comes back after its visibility timeout.
            log.error("finish_not_recorded", error=str(exc))
            return
        if recorded:
            log.info("step_finished", state=outcome.state.value, token=token)
            done = (
                self.metrics.completed
                if outcome.state is TaskState.COMPLETED
                else self.metrics.failed
            )
            done.inc()
            self.metrics.duration.observe(max(0.0, result.finished_at - started))
        else:
            log.warning("stale_finish_rejected", token=token, state=outcome.state.value)
        await _ack(message)

    async def _abandon(self, active: _Active, log: Any) -> None:
        """The step's claim was lost (or could not be confirmed) while it ran: its events were
        dropped, so record no outcome. Give the claim back if it is still ours (the message
        becomes visible at once); otherwise leave the message, which comes back after its
        visibility timeout and is dropped at the claim by whoever receives it."""
        key = active.task.idempotency_key
        self.metrics.released.inc()
        log.warning(
            "step_abandoned",
            token=active.token,
            reason=active.fence.reason,
            events_dropped=active.fence.dropped,
        )
        try:
            if await self.store.release(key, active.token) and active.control is not None:
                await active.control.release()
        except Exception as exc:
            log.warning("release_failed", error=repr(exc))

    def _decode(self, message: AckableMessage) -> OpExecutionTask | None:
        try:
            taskiq_message = self.broker.formatter.loads(message.data)
        except Exception as exc:
            self.metrics.refuse("not_a_step")
            _log.error("message_rejected", reason=f"not a TaskIQ message: {exc}")
            return None
        if taskiq_message.task_name != STEP_TASK_NAME:
            self.metrics.refuse("not_a_step")
            _log.error(
                "message_rejected",
                reason=f"task {taskiq_message.task_name!r} is not a dagster-taskiq step",
            )
            return None
        if len(taskiq_message.args) != 1 or not isinstance(taskiq_message.args[0], str):
            self.metrics.refuse("not_a_step")
            _log.error("message_rejected", reason="a step message has one string argument")
            return None
        payload = taskiq_message.args[0]
        if self.verifier is not None and not self._authentic(
            message, taskiq_message.labels, payload
        ):
            return None
        try:
            return OpExecutionTask.from_json(payload)
        except PayloadError as exc:
            self.metrics.refuse("bad_payload")
            _log.error("message_rejected", reason=str(exc), field=exc.field)
            return None

    def _authentic(self, message: AckableMessage, labels: dict[str, Any], payload: str) -> bool:
        """Whether the message passes the signature check; a refused one is counted and logged
        (reason, queue, message id; never the key, the signature or the body), then deleted by
        the caller: every worker with these keys would refuse it the same way, and handing it
        to the dead letters would give the executor a forged message to act on."""
        assert self.verifier is not None
        assert self._origins is not None
        origin = self._origins.origin(message)
        try:
            if origin is None:
                raise MessageRefusedError(
                    Refusal.OTHER_QUEUE, "the broker cannot say which queue it came from"
                )
            self.verifier.verify(labels, origin.queue, payload)
        except MessageRefusedError as exc:
            self.refused[exc.reason] += 1
            self.metrics.refuse(exc.reason.value)
            _log.warning(
                "message_refused",
                reason=exc.reason.value,
                detail=exc.detail,
                queue=None if origin is None else origin.queue,
                message_id=None if origin is None else origin.message_id,
                action="deleted",
            )
            return False
        return True

    # --- recycling ----------------------------------------------------------------------

    def _reserve_step(self) -> bool:
        """Count a step about to be claimed; False once ``max_steps`` are (claimed, or being
        claimed: a lost claim gives its place back)."""
        limit = self.options.max_steps
        if limit is not None and self.steps_started >= limit:
            return False
        self.steps_started += 1
        return True

    def _check_recycling(self) -> None:
        mark = self.options.max_memory
        if mark is not None and self.recycled is None and resident_mib() > mark:
            self._recycle(RecycleReason.MAX_MEMORY)

    def _check_memory_mark(self) -> None:
        mark = self.options.max_memory
        if mark is not None and (size := resident_mib()) >= mark:
            raise DagsterTaskIQError(
                f"max_memory ({mark:g} MiB) is below this worker's size before its first step "
                f"({size:.0f} MiB): give a mark above it, with room for the steps (e.g. "
                f"{max(2 * size, size + 512):.0f})"
            )

    def _recycle(self, reason: RecycleReason) -> None:
        """Take no more messages (the steps in flight finish; then ``run`` returns)."""
        if self.recycled is None:
            self.recycled = reason
            _log.info(
                "worker_recycling",
                reason=reason.value,
                steps=self.steps_started,
                memory_mib=round(resident_mib()),
                in_flight=len(self._active),
                worker=self.options.worker_id,
            )
            self._taking.set()

    async def _watch_memory(self) -> None:
        while self.recycled is None:
            await asyncio.sleep(self.options.memory_check_interval)
            self._check_recycling()

    async def _finish_in_flight(self, stop: asyncio.Event, log: Any) -> None:
        """Wait for the steps in flight to end, unless ``stop`` comes first (then the usual
        drain applies: the grace period, then release)."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while self._tasks and not stop.is_set():
                await asyncio.wait({*self._tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        log.info("worker_recycled", reason=self.recycled and self.recycled.value)

    async def _give_back(self, message: AckableMessage, log: Any) -> None:
        """A message this worker will not run (it is recycling): visible again at once."""
        control = self._control(message)
        try:
            if control is not None:
                await control.release()
        except Exception as exc:  # it comes back after its visibility timeout all the same
            log.warning("release_failed", error=repr(exc))

    def _control(self, message: AckableMessage) -> MessageControl | None:
        if isinstance(self.broker, SupportsMessageControl):
            return self.broker.message_control(message)
        return None

    # --- while a step runs ---------------------------------------------------------------

    async def _heartbeat(self, active: _Active) -> None:
        """Extend the store lease and the message's visibility every ``heartbeat_every``.

        The message is taken over from the broker's own visibility heartbeat (which keeps it
        invisible from its receipt on) only once the step has run for ``TAKEOVER_AFTER``
        seconds: most steps are acked before, and cost no visibility request at all. The
        store lease needs no early beat: the claim has just set it."""
        key, lease = active.task.idempotency_key, self.options.visibility_timeout
        if active.control is not None:
            await asyncio.sleep(min(TAKEOVER_AFTER, self.options.heartbeat_every))
            try:
                await active.control.extend_lease(lease)
            except Exception as exc:
                self.metrics.heartbeat_failures.inc()
                _log.warning("heartbeat_failed", key=key, error=repr(exc))
        while True:
            await asyncio.sleep(self.options.heartbeat_every)
            sent_at = time.monotonic()
            try:
                held = await self.store.heartbeat(key, active.token, lease)
                if active.control is not None:
                    await active.control.extend_lease(lease)
            except Exception as exc:
                self.metrics.heartbeat_failures.inc()
                _log.warning("heartbeat_failed", key=key, error=repr(exc))
                continue
            if held:
                active.fence.renewed(sent_at)
            else:
                # Another worker holds the step now: stop it here; its events are dropped.
                self.metrics.lease_losses.inc()
                _log.warning("lease_lost", key=key, token=active.token)
                active.fence.revoke("lease lost: another worker holds the step")
                active.thread.interrupt()
                return

    # --- health and sampled metrics -------------------------------------------------------

    async def _beat(self) -> None:
        """Tell ``/healthz`` the event loop runs, every second."""
        while True:
            self.health.beat()
            await asyncio.sleep(1.0)

    async def _sample(self) -> None:
        """Every ``SAMPLE_EVERY`` seconds: the queues' depth (which is also the broker's
        readiness) and one round trip to the store."""
        while True:
            problems = []
            try:
                if isinstance(self.broker, SupportsQueueDepth):
                    for queue, depth in (await self.broker.queue_depths()).items():
                        self.metrics.queue_depth.labels(queue).set(depth)
            except Exception as exc:
                problems.append(f"broker: {exc!r}"[:300])
            try:
                await self.store.ping()
            except Exception as exc:
                problems.append(f"store: {exc!r}"[:300])
            self.health.problem = "; ".join(problems) or None
            await asyncio.sleep(SAMPLE_EVERY)

    async def _watch_cancellations(self) -> None:
        """Once every ``cancel_check_interval``, interrupt the steps of runs being cancelled:
        one query per Dagster instance for all the runs this worker holds steps of (it reads
        their ids only), not one per run."""
        while True:
            await asyncio.sleep(self.options.cancel_check_interval)
            actives = list(self._active.values())
            if not actives:
                continue
            try:
                cancelled = await asyncio.to_thread(_cancelled_runs, actives)
            except Exception as exc:
                _log.warning("run_status_check_failed", error=repr(exc))
                continue
            for active in actives:
                if active.task.run_id in cancelled:
                    self._stop(active, StopReason.CANCELLED)

    # --- stopping ------------------------------------------------------------------------

    async def _drain(self) -> None:
        if self._tasks:
            _log.info("draining", in_flight=len(self._tasks), grace=self.options.grace_period)
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.options.grace_period)
            if pending:
                await self._release_all()
                await asyncio.wait(pending, timeout=5)

    async def _release_all(self) -> None:
        for active in list(self._active.values()):
            if active.state is not ActiveStepState.RUNNING:
                continue  # its thread ended while an earlier step was being released: it finishes
            active.enter(ActiveStepState.RELEASED)
            active.fence.revoke("released: the worker is stopping")
            active.thread.interrupt()
            key = active.task.idempotency_key
            try:
                await self.store.release(key, active.token)
                if active.control is not None:
                    await active.control.release()
                self.metrics.released.inc()
                _log.info("step_released", key=key, token=active.token)
            except Exception as exc:
                _log.warning("release_failed", key=key, error=repr(exc))


async def _relay(stop: asyncio.Event, taking: asyncio.Event) -> None:
    """Set ``taking`` (take no more messages) once ``stop`` is set."""
    await stop.wait()
    taking.set()


def _note_given_up(task: OpExecutionTask, message: str) -> None:
    """An engine event on the step, so the run's log says what became of it."""
    instance = instance_from_ref(task.instance_ref)
    run = instance.get_run_by_id(task.run_id)
    if run is not None:
        instance.report_engine_event(message, run, step_key=task.step_key)


def _cancelled_runs(actives: list[_Active]) -> set[str]:
    """The ids of the runs of ``actives`` that are being cancelled or were."""
    by_instance: dict[int, tuple[DagsterInstance, set[str]]] = {}
    for active in actives:
        instance = instance_from_ref(active.task.instance_ref)
        by_instance.setdefault(id(instance), (instance, set()))[1].add(active.task.run_id)
    cancelled: set[str] = set()
    for instance, run_ids in by_instance.values():
        found = instance.get_run_ids(RunsFilter(run_ids=sorted(run_ids), statuses=_CANCELLED))
        cancelled.update(found)
    return cancelled


async def _ack(message: AckableMessage) -> None:
    result = message.ack()
    if result is not None:
        await result


def _no_ack() -> None:
    return None
