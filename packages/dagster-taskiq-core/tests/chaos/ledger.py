"""The PostgreSQL ledger of op-body executions and the exactly-once checker of a run.

``chaos.jobs``' ops write one ledger row per execution of a body (run, step, retry number,
worker pid, start, end). ``check_run`` holds a run to the rules of issue 8:

* **lost**: every step of a successful run has a COMPLETED record in the idempotency store (and
  a finished body in the ledger); for a job with a known size, every step is there;
* **double-completed**: no step has more than one recorded success: at most one STEP_SUCCESS
  event in Dagster's event log, never a success and a final failure;
* **re-executed after complete**: no body of a COMPLETED step started after the completion
  (the recorded result's ``finished_at``);
* **events**: Dagster's event log shows exactly one success or one final failure for every step
  whose body ran or whose record is final.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter, defaultdict
from typing import Any

import psycopg
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from dagster_taskiq import IdempotencyRecord, SqlIdempotencyStore, TaskState
from support.store import POSTGRES_URL

LEDGER_URL = POSTGRES_URL


@dataclasses.dataclass(frozen=True)
class Execution:
    """One ledger row: one execution of an op body."""

    run_id: str
    step_key: str
    retry_number: int
    pid: int
    started_at: float
    ended_at: float | None


class Ledger:
    """A ledger table of its own (``chaos_ledger_<hex>``) in the test PostgreSQL database."""

    def __init__(self, url: str = LEDGER_URL, table: str | None = None) -> None:
        self.url = url
        self.table = table or f"chaos_ledger_{uuid.uuid4().hex[:10]}"
        self._conn = psycopg.connect(url, autocommit=True, application_name="chaos_ledger")
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "id bigserial PRIMARY KEY, run_id text NOT NULL, step_key text NOT NULL, "
            "retry_number integer NOT NULL, pid integer NOT NULL, "
            "started_at double precision NOT NULL, ended_at double precision)"
        )
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_run ON {self.table} (run_id)")

    def env(self) -> dict[str, str]:
        """What the op bodies (in worker processes) need to write here."""
        return {
            "DAGSTER_TASKIQ_CHAOS_LEDGER_URL": self.url,
            "DAGSTER_TASKIQ_CHAOS_LEDGER_TABLE": self.table,
        }

    def executions(self, run_id: str) -> list[Execution]:
        rows = self._conn.execute(
            f"SELECT run_id, step_key, retry_number, pid, started_at, ended_at "
            f"FROM {self.table} WHERE run_id = %s ORDER BY id",
            (run_id,),
        ).fetchall()
        return [Execution(*row) for row in rows]

    def started_pids(
        self, run_id: str | None = None, since: float | None = None
    ) -> list[tuple[str, int]]:
        """(step key, pid) of bodies started and not ended yet (of one run, or of any; started
        at or after ``since``, a ``time.time()``, if given)."""
        sql = f"SELECT step_key, pid FROM {self.table} WHERE ended_at IS NULL"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " AND run_id = %s"
            params = (run_id,)
        if since is not None:
            sql += " AND started_at >= %s"
            params = (*params, since)
        return [(str(s), int(p)) for s, p in self._conn.execute(sql, params).fetchall()]

    def count(self) -> int:
        row = self._conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        assert row is not None
        return int(row[0])

    def per_run_step_counts(self) -> Counter[tuple[str, str]]:
        rows = self._conn.execute(
            f"SELECT run_id, step_key, count(*) FROM {self.table} GROUP BY run_id, step_key"
        ).fetchall()
        return Counter({(r, s): int(n) for r, s, n in rows})

    def drop(self) -> None:
        self._conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        self._conn.close()


@dataclasses.dataclass
class RunCheck:
    """What ``check_run`` found for one run; ``ok`` when every rule holds."""

    run_id: str
    status: str
    steps: int
    executions: int
    lost: list[str] = dataclasses.field(default_factory=list)
    double_completed: list[str] = dataclasses.field(default_factory=list)
    reexecuted_after_complete: list[str] = dataclasses.field(default_factory=list)
    event_violations: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.double_completed
            or self.reexecuted_after_complete
            or self.event_violations
        )

    def describe(self) -> str:
        parts = [f"run {self.run_id} ({self.status}, {self.steps} steps)"]
        for name in ("lost", "double_completed", "reexecuted_after_complete", "event_violations"):
            found = getattr(self, name)
            if found:
                parts.append(f"{name}: {found}")
        return "; ".join(parts)


def outcome_events(instance: DagsterInstance, run_id: str) -> dict[str, Counter[str]]:
    """step key -> counts of its STEP_SUCCESS / STEP_FAILURE events in the run's log."""
    kinds = {DagsterEventType.STEP_SUCCESS: "success", DagsterEventType.STEP_FAILURE: "failure"}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        kind = kinds.get(event.event_type)
        if kind is not None:
            counts[event.step_key][kind] += 1
    return counts


def check_run(
    instance: DagsterInstance,
    store: SqlIdempotencyStore,
    ledger: Ledger,
    run_id: str,
    *,
    expected_steps: int | None = None,
    records: list[IdempotencyRecord] | None = None,
) -> RunCheck:
    """Check one run against the ledger, the store and Dagster's event log."""
    run = instance.get_run_by_id(run_id)
    status = run.status.value if run is not None else "MISSING"
    records = store.records_for_run(run_id) if records is None else records
    by_step = {r.step_key: r for r in records}
    executions = ledger.executions(run_id)
    events = outcome_events(instance, run_id)
    steps = set(by_step) | set(events) | {e.step_key for e in executions}
    check = RunCheck(run_id, status, len(steps), len(executions))
    succeeded = run is not None and run.status == DagsterRunStatus.SUCCESS

    if succeeded:
        for step in sorted(steps):
            record = by_step.get(step)
            finished = any(e.step_key == step and e.ended_at is not None for e in executions)
            if record is None or record.state is not TaskState.COMPLETED or not finished:
                state = record.state.value if record else "no record"
                check.lost.append(f"{step} ({state}, body finished: {finished})")
        if expected_steps is not None and len(steps) < expected_steps:
            check.lost.append(f"{expected_steps - len(steps)} step(s) never seen")

    for step in sorted(steps):
        counted = events.get(step, Counter())
        if counted["success"] > 1 or (counted["success"] and counted["failure"]):
            check.double_completed.append(f"{step} (events {dict(counted)})")
        record = by_step.get(step)
        ran = any(e.step_key == step for e in executions)
        outcomes = counted["success"] + counted["failure"]
        # A run that was killed or failed may leave steps whose outcome nobody reported.
        if (ran or (record is not None and record.state.is_final)) and (
            outcomes > 1 or (succeeded and outcomes != 1)
        ):
            check.event_violations.append(f"{step} (events {dict(counted)})")
        if record is not None and record.state is TaskState.COMPLETED and record.result:
            done = record.result.finished_at
            late = [e for e in executions if e.step_key == step and e.started_at > done]
            if late:
                check.reexecuted_after_complete.append(
                    f"{step} (completed at {done:.3f}, started again at "
                    f"{[round(e.started_at, 3) for e in late]} by {[e.pid for e in late]})"
                )
    return check
