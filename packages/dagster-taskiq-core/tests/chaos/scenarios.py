"""Fault scenarios: each runs real jobs on a ``Cluster`` while it injects one kind of fault.

A scenario is ``scenario(cluster, rng) -> ScenarioRun``; every random choice comes from ``rng``
(seeded by the caller), so a failure replays with its seed (timing is real, so a replay takes
the same decisions, not necessarily at the same instants). Every run is checked by
``chaos.ledger.check_run``; scenario-specific promises (a paused worker's late finish rejected,
completed steps of a killed run not run again) go in ``problems``.

Scenarios are per backend (``scenarios_for``): every scenario runs on sqs, redis, nats and
rabbitmq. The broker outages keep their historical names on sqs (``sqs_restart``,
``sqs_down_at_start``: moto stopped behind its proxy) and are ``broker_restart`` /
``broker_down_at_start`` on the others (the proxy in front of the server killed, then serving
again). ``duplicates`` and
``sigkill_before_ack`` take each backend's own way to hold a message or an ack (see
``Cluster.ack_marker`` and the duplicate sources below).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from dagster import DagsterRunStatus, ReexecutionOptions

from chaos.cluster import Cluster, RunResult, pids_of_client_ports
from chaos.ledger import outcome_events
from dagster_taskiq import TaskState
from dagster_taskiq_testing.servers import boto3_client
from support.worker_processes import NATS_URL, RABBITMQ_URL, REDIS_URL

SHAPES = ("chaos_fan_out", "chaos_chain", "chaos_dynamic")


@dataclasses.dataclass
class ScenarioRun:
    scenario: str
    seed: int
    results: list[RunResult] = dataclasses.field(default_factory=list)
    faults: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.check.ok for r in self.results)

    def describe(self) -> str:
        lines = [f"scenario {self.scenario} seed {self.seed}: faults {self.faults}"]
        lines += [f"  {r.check.describe()} success={r.success}" for r in self.results]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class FaultStop(threading.Event):
    """A fault's stop signal, and when the fault began (``since``: before its run started)."""

    def __init__(self) -> None:
        super().__init__()
        self.since = time.time()


class Fault:
    """Runs ``fn(stop)`` on a thread while the run executes; re-raises its error at the end."""

    def __init__(self, fn: Callable[[threading.Event], None]) -> None:
        self.stop = FaultStop()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)

    def _run(self, fn: Callable[[threading.Event], None]) -> None:
        try:
            fn(self.stop)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Fault:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise self.error


def _busy(c: Cluster, since: float | None = None) -> list[tuple[str, int]]:
    """(step, pid) of bodies running now on live worker processes (started ``since``).

    ``since`` leaves out the rows of earlier runs whose bodies never ended on a worker that is
    still alive (a step interrupted when its worker lost the lease): picking one of those would
    pause or kill a worker that is not running that step.
    """
    assert c.workers is not None
    alive = set(c.workers.pids)
    return [(step, pid) for step, pid in c.ledger.started_pids(since=since) if pid in alive]


def _wait_busy(c: Cluster, stop: threading.Event, timeout: float = 30) -> list[tuple[str, int]]:
    since = stop.since if isinstance(stop, FaultStop) else None
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        busy = _busy(c, since)
        if busy:
            return busy
        time.sleep(0.02)
    return []


def _expect_success(run: ScenarioRun, result: RunResult, c: Cluster) -> None:
    run.results.append(result)
    if not result.success:
        run.problems.append(f"run {result.run_id} failed; worker logs tail:\n{c.logs()[-4000:]}")


# --- worker deaths ---------------------------------------------------------------------------


def sigkill(c: Cluster, rng: random.Random) -> ScenarioRun:
    """SIGKILL a worker at a random moment of a step (incl. heartbeats), 1-3 times per run."""
    # heartbeats every visibility/3 = 1 s: a kill within 1.2 s of a step's start may beat them
    return _signalled_run(
        c,
        rng,
        ScenarioRun("sigkill", 0),
        signal.SIGKILL,
        rng.randint(1, 3),
        wait=(0.0, 1.2),
        then=(0.3, 2.0),
        step_seconds=(0.3, 2.0),
    )


def _signalled_run(
    c: Cluster,
    rng: random.Random,
    run: ScenarioRun,
    signum: signal.Signals,
    times: int,
    *,
    wait: tuple[float, float],
    then: tuple[float, float],
    step_seconds: tuple[float, float],
) -> ScenarioRun:
    """A run of a random shape (steps of ``step_seconds``) during which busy workers are sent
    ``signum`` (``_signal_busy_workers``); it must succeed."""
    fault = _signal_busy_workers(c, rng, run, signum, times, wait=wait, then=then)
    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=step_seconds)
    _expect_success(run, result, c)
    return run


def _signal_busy_workers(
    c: Cluster,
    rng: random.Random,
    run: ScenarioRun,
    signum: signal.Signals,
    times: int,
    *,
    wait: tuple[float, float],
    then: tuple[float, float],
) -> Callable[[threading.Event], None]:
    """A fault that, ``times`` times, waits for a busy worker, ``wait`` seconds more (a random
    point of a step), sends it ``signum`` and pauses ``then`` seconds before the next."""

    def fault(stop: threading.Event) -> None:
        while run.faults < times and not stop.is_set():
            busy = _wait_busy(c, stop, timeout=5)
            if not busy:
                continue
            time.sleep(rng.uniform(*wait))
            _step, pid = rng.choice(busy)
            assert c.workers is not None
            if pid in c.workers.pids:
                c.workers.kill(pid, signum)
                run.faults += 1
            time.sleep(rng.uniform(*then))

    return fault


def sigkill_before_ack(c: Cluster, rng: random.Random) -> ScenarioRun:
    """SIGKILL a worker after its ``finish`` is recorded and before its ack reaches the broker.

    The broker proxy holds every ack (SQS DeleteMessage, the Redis ACK script's EVALSHA, the
    JetStream ``+ACK``: ``Cluster.ack_marker``) from the chosen moment; the workers whose acks
    are held are killed, then the proxy lets the rest through. Their messages come back after
    the visibility timeout, for steps already COMPLETED: they must be acked unrun.
    """
    run = ScenarioRun("sigkill_before_ack", 0)
    killed_steps: list[str] = []

    def fault(stop: threading.Event) -> None:
        time.sleep(rng.uniform(0.0, 1.5))
        if not _wait_busy(c, stop):
            return
        c.sqs_proxy.hold(c.ack_marker())
        try:
            ports = c.sqs_proxy.held(timeout=15)
            assert c.workers is not None
            pids = pids_of_client_ports(ports, c.workers.pids)
            for pid in pids:
                c.workers.kill(pid, signal.SIGKILL)
                run.faults += 1
        finally:
            c.sqs_proxy.release()
        for record in c.store.records_for_run(_latest_run_id(c)):
            if record.result is not None and any(
                record.result.worker_id.endswith(f":{pid}") for pid in pids
            ):
                killed_steps.append(record.step_key)

    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=(0.2, 1.0))
    _expect_success(run, result, c)
    run.notes.append(f"steps finished by killed workers before their ack: {killed_steps}")
    return run


def sigterm(c: Cluster, rng: random.Random) -> ScenarioRun:
    """SIGTERM a worker mid-step: it drains within its grace period (1 s) or releases."""
    return _signalled_run(
        c,
        rng,
        ScenarioRun("sigterm", 0),
        signal.SIGTERM,
        rng.randint(1, 2),
        wait=(0.0, 0.8),
        then=(1.0, 3.0),
        step_seconds=(0.3, 2.5),
    )


def pause(c: Cluster, rng: random.Random) -> ScenarioRun:
    """SIGSTOP a worker mid-step for longer than its lease, then SIGCONT it.

    Another worker takes the step over (the message's visibility and the lease both expire);
    when the paused worker wakes, its late finish must be rejected: one outcome only.
    """
    run = ScenarioRun("pause", 0)
    paused: list[tuple[str, int]] = []
    lease = c.target.visibility_timeout

    def fault(stop: threading.Event) -> None:
        busy = _wait_busy(c, stop)
        if not busy:
            return
        time.sleep(rng.uniform(0.0, 0.5))
        step, pid = rng.choice(busy)
        run_id = _latest_run_id(c)
        assert c.workers is not None
        c.workers.kill(pid, signal.SIGSTOP)
        run.faults += 1
        paused.append((step, pid))
        try:
            # Until someone else holds the step (lease + visibility expired, redelivered).
            deadline = time.monotonic() + 6 * lease
            while time.monotonic() < deadline:
                others = [p for s, p in c.ledger.started_pids(run_id) if s == step and p != pid]
                if others:
                    break
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
        finally:
            c.workers.kill(pid, signal.SIGCONT)

    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=(1.5, 3.0))
    _expect_success(run, result, c)
    for step, pid in paused:
        holders = {e.pid for e in c.ledger.executions(result.run_id) if e.step_key == step}
        if pid not in holders or len(holders) < 2:
            run.problems.append(f"{step}: held by {sorted(holders)} (paused {pid}): no takeover")
            continue
        record = c.store.get(f"{result.run_id}:{step}")
        if record is None or record.state is not TaskState.COMPLETED or record.result is None:
            run.problems.append(f"{step}: not COMPLETED after the takeover: {record}")
        elif record.result.worker_id.endswith(f":{pid}"):
            run.problems.append(f"{step}: the paused worker {pid}'s late finish was recorded")
        key = f"{result.run_id}:{step}"
        # Three ways to notice: the heartbeat finds the lease gone (``lease_lost``), the fence
        # refuses the outcome event (``step_abandoned`` with this reason: seen on redis, whose
        # heartbeat of the message fails first), or the store rejects the late finish.
        noticed = ("stale_finish_rejected", "lease_lost", "lease lost: another worker holds")
        if not _wait_for_log(c, key, noticed):
            run.problems.append(
                f"{step}: the paused worker {pid} logged no lost lease / stale finish"
            )
    return run


def _wait_for_log(c: Cluster, key: str, events: tuple[str, ...], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = c.logs()
        if any(
            f'"key": "{key}"' in line and e in line for line in logs.splitlines() for e in events
        ):
            return True
        time.sleep(0.2)
    return False


# --- duplicates ------------------------------------------------------------------------------


def duplicates(c: Cluster, rng: random.Random) -> ScenarioRun:
    """Exact copies of step messages while their steps are PENDING, RUNNING or COMPLETED.

    The fault takes a pending message off the queue itself (as a consumer would), sends a copy
    (another deduplication id and group, same body and attributes) that the workers run, and
    lets the original come back (visibility 0) at a random later state of the step.

    On redis, nats and rabbitmq the same with ``RedisDuplicates`` / ``NatsDuplicates`` /
    ``RabbitMqDuplicates``.
    """
    if c.backend != "sqs":
        sources = {"redis": RedisDuplicates, "nats": NatsDuplicates, "rabbitmq": RabbitMqDuplicates}
        return _duplicates_with(c, rng, sources[c.backend](c))
    run = ScenarioRun("duplicates", 0)
    sqs = boto3_client(c.moto.endpoint_url)
    states: list[str] = []

    def fault(stop: threading.Event) -> None:
        url = _queue_url(sqs, c.target.queue_name, stop)
        for n in range(rng.randint(1, 3)):
            when = rng.choice(["pending", "running", "completed"])
            message = None
            deadline = time.monotonic() + 10
            while message is None and not stop.is_set() and time.monotonic() < deadline:
                got = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=1,
                    VisibilityTimeout=120,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["MessageGroupId"],
                ).get("Messages", [])
                message = got[0] if got else None
            if message is None:
                return
            group = message["Attributes"]["MessageGroupId"]
            sqs.send_message(
                QueueUrl=url,
                MessageBody=message["Body"],
                MessageAttributes=message.get("MessageAttributes", {}),
                MessageGroupId=f"{group}-copy{n}",
                MessageDeduplicationId=f"chaos-copy-{n}-{rng.getrandbits(64):x}",
            )
            key = _key_of(message)
            states.append(f"{key.split(':', 1)[1]}:{when}")
            _wait_for_state(c, key, when, stop)
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            run.faults += 1

    job_name = rng.choice(SHAPES)
    with Fault(fault):
        result = c.execute(job_name, step_seconds=(0.3, 1.2))
    _expect_success(run, result, c)
    _wait_queue_empty(c, run)
    # The originals may come back after the run ended: check again once they are handled.
    started = time.monotonic() - result.seconds
    run.results[-1] = c.result(result.run_id, result.success, started, job_name=job_name)
    run.notes.append(f"copies: {states}")
    return run


class RedisDuplicates:
    """Duplicates on a Redis stream: the fault reads a new entry in the workers' group under a
    consumer of its own (``XREADGROUP >``: it holds the entry as a worker would), ``XADD``s an
    exact copy of its fields (bypassing the send script's deduplication), keeps the original's
    idle time low with the broker's own ``KEEP`` script while it waits, then releases it (idle
    time set to the visibility timeout): the next reclaim pass of a worker takes it."""

    consumer = "chaos-duplicates"

    def __init__(self, c: Cluster) -> None:
        import redis  # noqa: PLC0415

        from dagster_taskiq_redis import scripts  # noqa: PLC0415

        self.client = redis.Redis.from_url(REDIS_URL)
        self.stream = c.target.broker_settings()["stream"]
        self.group = "dagster-taskiq"  # RedisSettings.group's default (the workers' group)
        self.visibility_ms = int(c.target.visibility_timeout * 1000)
        self.keep_script = self.client.register_script(scripts.KEEP)

    def take(self, stop: threading.Event) -> tuple[str, Any] | None:
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                got = self.client.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=1, block=1000
                )
            except redis_errors() as exc:  # the group is created by the first broker
                if "NOGROUP" not in str(exc):
                    raise
                time.sleep(0.1)
                continue
            for _, entries in got or []:
                for entry_id, fields in entries:
                    body = json.loads(fields[b"data"])
                    return str(json.loads(body["args"][0])["idempotency_key"]), (entry_id, fields)
        return None

    def copy(self, handle: Any, n: int, rng: random.Random) -> None:
        self.client.xadd(self.stream, handle[1])

    def keep(self, handle: Any) -> None:
        self.keep_script(keys=[self.stream], args=[self.group, handle[0], self.consumer, 0])

    def release(self, handle: Any) -> None:
        self.keep_script(
            keys=[self.stream], args=[self.group, handle[0], self.consumer, self.visibility_ms]
        )

    def close(self) -> None:
        self.client.close()


def redis_errors() -> type[Exception]:
    import redis  # noqa: PLC0415

    return redis.ResponseError


class NatsDuplicates:
    """Duplicates on a JetStream stream: the fault binds to the workers' durable consumer (a
    work-queue stream allows no second one), fetches a message (it holds it as a worker would),
    publishes an exact copy (same payload and headers, another ``Nats-Msg-Id``, so the stream's
    deduplication lets it through), keeps the original with in-progress acks while it waits,
    then NAKs it: redelivered at once."""

    def __init__(self, c: Cluster) -> None:
        self.loop = asyncio.new_event_loop()
        self.settings = c.target.broker_settings()
        self.nc: Any = None
        self.sub: Any = None

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _connect(self) -> None:
        import nats  # noqa: PLC0415

        self.nc = await nats.connect(NATS_URL, connect_timeout=2)
        js = self.nc.jetstream()
        deadline = time.monotonic() + 30
        while True:  # the first broker creates the stream and the consumer
            try:
                self.sub = await js.pull_subscribe_bind(
                    durable="dagster-taskiq-workers", stream=self.settings["stream"]
                )
                await js.consumer_info(self.settings["stream"], "dagster-taskiq-workers")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def take(self, stop: threading.Event) -> tuple[str, Any] | None:
        import nats.errors  # noqa: PLC0415

        if self.sub is None:
            self._run(self._connect())
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                msgs = self._run(self.sub.fetch(1, timeout=1))
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                body = json.loads(msg.data)
                return str(json.loads(body["args"][0])["idempotency_key"]), msg
        return None

    def copy(self, handle: Any, n: int, rng: random.Random) -> None:
        headers = {
            **(handle.headers or {}),
            "Nats-Msg-Id": f"chaos-copy-{n}-{rng.getrandbits(64):x}",
        }

        async def publish() -> None:
            await self.nc.jetstream().publish(handle.subject, payload=handle.data, headers=headers)

        self._run(publish())

    def keep(self, handle: Any) -> None:
        async def progress() -> None:
            await handle.in_progress()
            await self.nc.flush()

        self._run(progress())

    def release(self, handle: Any) -> None:
        async def nak() -> None:
            await handle.nak()
            await self.nc.flush()

        self._run(nak())

    def close(self) -> None:
        if self.nc is not None:
            self._run(self.nc.close())
        self.loop.close()


class RabbitMqDuplicates:
    """Duplicates on a RabbitMQ quorum queue: the fault takes a message with ``basic.get`` on a
    connection of its own (it holds the message unacked, as a worker would; RabbitMQ deduplicates
    nothing, so) publishes an exact copy (same body and headers) to the queue, holds the original
    while it waits (the connection has no AMQP heartbeat: it stays open between the fault's
    calls, and RabbitMQ has no lease to extend), then NAKs it with requeue: delivered again at
    once."""

    def __init__(self, c: Cluster) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue = c.target.broker_settings()["queue_name"]
        self.connection: Any = None
        self.channel: Any = None

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _connect(self) -> None:
        import aio_pika  # noqa: PLC0415

        self.connection = await aio_pika.connect(f"{RABBITMQ_URL}?heartbeat=0", timeout=2)
        self.channel = await self.connection.channel()

    def take(self, stop: threading.Event) -> tuple[str, Any] | None:
        import aiormq.exceptions  # noqa: PLC0415

        if self.channel is None:
            self._run(self._connect())
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:  # the first broker declares the queue
                queue = self._run(self.channel.get_queue(self.queue, ensure=False))
                message = self._run(queue.get(no_ack=False, fail=False))
            except aiormq.exceptions.ChannelNotFoundEntity:
                self.channel = self._run(self.connection.channel())
                message = None
            if message is None:
                time.sleep(0.05)
                continue
            body = json.loads(message.body)
            return str(json.loads(body["args"][0])["idempotency_key"]), message
        return None

    def copy(self, handle: Any, n: int, rng: random.Random) -> None:
        import aio_pika  # noqa: PLC0415

        copy = aio_pika.Message(
            body=handle.body,
            headers={k: v for k, v in (handle.headers or {}).items() if not k.startswith("x-")},
            message_id=f"chaos-copy-{n}-{rng.getrandbits(64):x}",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        self._run(self.channel.default_exchange.publish(copy, routing_key=self.queue))

    def keep(self, handle: Any) -> None:
        """Nothing to do: the message stays with this connection until it is settled."""

    def release(self, handle: Any) -> None:
        self._run(handle.nack(requeue=True))

    def close(self) -> None:
        if self.connection is not None:
            self._run(self.connection.close())
        self.loop.close()


DuplicateSource = RedisDuplicates | NatsDuplicates | RabbitMqDuplicates


def _duplicates_with(c: Cluster, rng: random.Random, source: DuplicateSource) -> ScenarioRun:
    """``duplicates`` off sqs: take, copy, wait for the state (keeping the original
    held), release; then the queue must drain and the run is checked again."""
    run = ScenarioRun("duplicates", 0)
    states: list[str] = []

    def fault(stop: threading.Event) -> None:
        for n in range(rng.randint(1, 3)):
            when = rng.choice(["pending", "running", "completed"])
            taken = source.take(stop)
            if taken is None:
                return
            key, handle = taken
            source.copy(handle, n, rng)
            states.append(f"{key.split(':', 1)[1]}:{when}")
            _wait_for_state(c, key, when, stop, keep=lambda h=handle: source.keep(h))
            source.release(handle)
            run.faults += 1

    job_name = rng.choice(SHAPES)
    try:
        with Fault(fault):
            result = c.execute(job_name, step_seconds=(0.3, 1.2))
    finally:
        source.close()
    _expect_success(run, result, c)
    _wait_queue_empty(c, run)
    started = time.monotonic() - result.seconds
    run.results[-1] = c.result(result.run_id, result.success, started, job_name=job_name)
    run.notes.append(f"copies: {states}")
    return run


def _queue_url(sqs: Any, name: str, stop: threading.Event, timeout: float = 30) -> str:
    """The queue's URL once it exists (the executor or a worker creates it at startup)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
        except sqs.exceptions.QueueDoesNotExist:
            if stop.is_set() or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _key_of(message: dict[str, Any]) -> str:
    import json  # noqa: PLC0415

    body = json.loads(message["Body"])
    return str(json.loads(body["args"][0])["idempotency_key"])


def _wait_for_state(
    c: Cluster,
    key: str,
    when: str,
    stop: threading.Event,
    keep: Callable[[], None] | None = None,
) -> None:
    """Until ``key``'s step is in state ``when`` (or final); ``keep()`` every 0.5 s meanwhile
    (a heartbeat of the held original)."""
    deadline = time.monotonic() + 30
    kept = time.monotonic()
    while time.monotonic() < deadline and not stop.is_set():
        record = c.store.get(key)
        state = record.state if record is not None else None
        if when == "pending" or (when == "running" and state is TaskState.RUNNING):
            return
        if state is not None and state.is_final:
            return
        if keep is not None and time.monotonic() - kept > 0.5:
            keep()
            kept = time.monotonic()
        time.sleep(0.02)


def _wait_queue_empty(c: Cluster, run: ScenarioRun, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while c.queue_depth() > 0:
        if time.monotonic() > deadline:
            run.problems.append(f"queue not drained after {timeout} s")
            return
        time.sleep(0.2)


# --- SQS and PostgreSQL outages ----------------------------------------------------------------


def sqs_restart(c: Cluster, rng: random.Random) -> ScenarioRun:
    """SQS stopped mid-run (port closed, connections reset) and restarted 1-5 s later.

    ``broker_restart`` off sqs: the proxy in front of the server killed and serving
    again 1-5 s later.
    """
    run = ScenarioRun("sqs_restart" if c.backend == "sqs" else "broker_restart", 0)

    def fault(stop: threading.Event) -> None:
        if not _wait_busy(c, stop):
            return
        time.sleep(rng.uniform(0.0, 1.0))
        c.stop_broker()
        run.faults += 1
        time.sleep(rng.uniform(1.0, 5.0))
        c.start_broker()

    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=(0.3, 1.5))
    _expect_success(run, result, c)
    return run


def sqs_down_at_start(c: Cluster, rng: random.Random) -> ScenarioRun:
    """SQS unreachable when the run starts, for 2-8 s (``broker_down_at_start`` on redis and
    nats: the proxy in front of the server killed)."""
    run = ScenarioRun("sqs_down_at_start" if c.backend == "sqs" else "broker_down_at_start", 0)
    c.stop_broker()
    run.faults += 1

    def fault(stop: threading.Event) -> None:
        time.sleep(rng.uniform(2.0, 8.0))
        c.start_broker()

    try:
        with Fault(fault):
            result = c.execute(rng.choice(SHAPES), step_seconds=(0.1, 0.6))
    finally:
        c.start_broker()
    _expect_success(run, result, c)
    return run


def pg_terminate(c: Cluster, rng: random.Random) -> ScenarioRun:
    """``pg_terminate_backend`` on every store connection, 2-5 times during the run."""
    run = ScenarioRun("pg_terminate", 0)
    times = rng.randint(2, 5)

    def fault(stop: threading.Event) -> None:
        if not _wait_busy(c, stop):
            return
        for _ in range(times):
            if stop.is_set():
                return
            if c.terminate_store_connections():
                run.faults += 1
            time.sleep(rng.uniform(0.1, 1.0))

    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=(0.2, 1.0))
    _expect_success(run, result, c)
    return run


def pg_terminate_waiting(c: Cluster, rng: random.Random) -> ScenarioRun:
    """Every store connection terminated, the executor's LISTEN connection among them, while
    the run waits for long steps: their outcomes must still be seen (the watch re-listens and
    looks; the once-a-second reconciliation finds what a lost notification did not say)."""
    run = ScenarioRun("pg_terminate_waiting", 0)
    times = rng.randint(1, 3)

    def fault(stop: threading.Event) -> None:
        if not _wait_busy(c, stop):
            return
        for _ in range(times):
            if stop.is_set():
                return
            time.sleep(rng.uniform(0.2, 1.0))
            listeners = c.store_listeners()
            if c.terminate_store_connections():
                run.faults += 1
                if listeners:
                    run.notes.append(f"{listeners} LISTEN connection(s) terminated")

    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=(1.5, 3.0))
    _expect_success(run, result, c)
    if c.store.notifies and not any("LISTEN" in note for note in run.notes) and run.faults:
        run.problems.append("no LISTEN connection was open while the run waited")
    return run


def pg_down(c: Cluster, rng: random.Random) -> ScenarioRun:
    """The store's database unreachable (port closed, connections reset) for 0.5-2.5 s."""
    run = ScenarioRun("pg_down", 0)

    def fault(stop: threading.Event) -> None:
        if not _wait_busy(c, stop):
            return
        time.sleep(rng.uniform(0.0, 1.0))
        c.pg_proxy.kill()
        run.faults += 1
        try:
            time.sleep(rng.uniform(0.5, 2.5))
        finally:
            c.pg_proxy.start()

    with Fault(fault):
        result = c.execute(rng.choice(SHAPES), step_seconds=(0.2, 1.0))
    _expect_success(run, result, c)
    return run


# --- the run process killed ----------------------------------------------------------------------


def run_killed(c: Cluster, rng: random.Random) -> ScenarioRun:
    """The run process SIGKILLed mid-run; the run is marked failed (as run monitoring does)
    and re-executed from failure: steps that completed in it are not run again."""
    run = ScenarioRun("run_killed", 0)
    job_name = rng.choice(SHAPES)
    started = time.monotonic()
    dagster_run = c.create_run(job_name, step_seconds=(0.2, 0.8))
    child = c.launch_run_process(dagster_run, job_name)
    completed_before_kill = rng.randint(1, 4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        done = [r for r in c.store.records_for_run(dagster_run.run_id) if r.state.is_final]
        if len(done) >= completed_before_kill:
            break
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.5))
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
        run.faults += 1
    else:
        log = c.root / "logs" / f"run-{dagster_run.run_id}.log"
        run.problems.append(
            f"the run process exited by itself ({child.returncode}) before the kill:\n"
            f"{log.read_text(errors='replace')[-3000:]}"
        )
        if child.returncode != 0:
            return run  # nothing to re-execute from: the log above says why
    child.wait(30)
    parent = c.instance.get_run_by_id(dagster_run.run_id)
    assert parent is not None
    if parent.status == DagsterRunStatus.SUCCESS:
        run.notes.append("the run finished before the kill")
        run.results.append(c.result(parent.run_id, True, started, job_name=job_name))
        return run
    if not parent.is_finished:
        c.instance.report_run_failed(parent)
    # Steps in flight finish (or are refused: the run is over) before re-executing.
    _wait_all_final(c, parent.run_id)
    run.results.append(c.result(parent.run_id, False, started))
    succeeded = {
        step
        for step, counts in outcome_events(c.instance, parent.run_id).items()
        if counts["success"]
    }
    run.notes.append(f"{len(succeeded)} step(s) completed before the kill")
    if len(succeeded) >= _steps_of(job_name):
        # Killed after its last step, before the run's own success: Dagster refuses to
        # re-execute from failure a run with nothing left to run (the "in-memory io managers"
        # error, an empty plan), and nothing is.
        run.notes.append("every step completed before the kill: nothing to re-execute")
        return run
    options = ReexecutionOptions.from_failure(parent.run_id, c.instance)
    try:
        child_result = c.execute(job_name, step_seconds=(0.2, 0.8), reexecution=options)
    except Exception as exc:
        run.problems.append(f"re-execution from failure of {parent.run_id} raised {exc!r}")
        return run
    _expect_success(run, child_result, c)
    executed = {e.step_key for e in c.ledger.executions(child_result.run_id)}
    again = executed & succeeded
    if again:
        run.problems.append(f"steps completed in the killed run were run again: {sorted(again)}")
    total = len(succeeded | executed)
    if child_result.success and total < _steps_of(job_name):
        run.problems.append(
            f"only {total} of {_steps_of(job_name)} steps succeeded across the two runs"
        )
    return run


def _steps_of(job_name: str) -> int:
    from chaos import jobs as chaos_jobs  # noqa: PLC0415

    return chaos_jobs.JOB_STEPS[job_name]


def _wait_all_final(c: Cluster, run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = c.store.records_for_run(run_id)
        if all(r.state.is_final for r in records):
            return
        time.sleep(0.1)


def _latest_run_id(c: Cluster) -> str:
    runs = c.instance.get_runs(limit=1)
    return runs[0].run_id if runs else ""


SCENARIOS: dict[str, Callable[[Cluster, random.Random], ScenarioRun]] = {
    "sigkill": sigkill,
    "sigkill_before_ack": sigkill_before_ack,
    "sigterm": sigterm,
    "pause": pause,
    "duplicates": duplicates,
    "sqs_restart": sqs_restart,
    "sqs_down_at_start": sqs_down_at_start,
    "pg_terminate": pg_terminate,
    "pg_down": pg_down,
    "run_killed": run_killed,
    "pg_terminate_waiting": pg_terminate_waiting,
}


BROKER_OUTAGES = {"sqs_restart": "broker_restart", "sqs_down_at_start": "broker_down_at_start"}
"""The sqs outage scenarios and their names on the other backends (same functions)."""


def scenarios_for(backend: str) -> dict[str, Callable[[Cluster, random.Random], ScenarioRun]]:
    """The scenario table of ``backend``: every scenario, the outages renamed off sqs."""
    if backend == "sqs":
        return dict(SCENARIOS)
    return {BROKER_OUTAGES.get(name, name): fn for name, fn in SCENARIOS.items()}


def run_scenario(name: str, c: Cluster, seed: int) -> ScenarioRun:
    """One seeded run of scenario ``name`` (a name of ``scenarios_for(c.backend)``) on ``c``."""
    result = scenarios_for(c.backend)[name](c, random.Random(seed))
    result.seed = seed
    return result
