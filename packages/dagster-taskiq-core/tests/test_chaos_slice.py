"""A short slice of the chaos suite (issues 8 and 9): one seeded run of every fault scenario on
every backend whose broker worker processes can share: sqs (moto), redis, nats, rabbitmq.

The full suite (``nox -s chaos``: at least 200 randomized runs and the table, ``--backend`` to
pick one) lives in ``chaos/chaos_driver.py``; these are the same scenarios on one shared cluster per
backend (the broker behind a fault proxy, PostgreSQL store and ledger, three worker processes).
Each run must succeed with a clean ledger: no step lost, none recorded complete twice, no body
started after its step completed, one outcome event per step, and the scenario's own promises (a
paused worker's late finish rejected, completed steps of a killed run not run again).

On redis, nats and rabbitmq the broker outages are ``broker_restart`` /
``broker_down_at_start`` (the proxy in front of the server killed) instead of ``sqs_restart`` /
``sqs_down_at_start``. The redis, nats and rabbitmq cases skip when their server is not
reachable, and fail instead under ``DAGSTER_TASKIQ_REQUIRE_SERVICES=1``.

The in-memory stub (backend ``memory``) is not here: it lives in one process, so worker
processes cannot share it. Duplicates and vanished workers on in-process brokers are covered by
``test_executor_recovery.py`` (a duplicate delivery of a completed step, a worker that vanished
mid-step) and ``packages/dagster-taskiq-sqs/tests/test_sqs_with_the_core_worker.py`` (the core
worker on the stub: a duplicate of a finished step acked unrun).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import BACKENDS, Cluster, direct_target
from chaos.scenarios import BROKER_OUTAGES, SCENARIOS, run_scenario, scenarios_for
from support.store import require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SEEDS = {name: 8_000 + n for n, name in enumerate(SCENARIOS)}
# One kill / one stop, so the slice stays short; run_killed on a static job: re-executing a
# dynamic job from failure skips mapped steps that never started (Dagster's selection, see
# docs/reliability.md), which the full chaos session reports.
SEEDS.update(sigkill=8_003, sigterm=8_002, run_killed=8_010)
SEEDS.update({alias: SEEDS[name] for name, alias in BROKER_OUTAGES.items()})

CASES = [
    pytest.param(
        backend,
        name,
        id=f"{backend}-{name}",
        marks=[pytest.mark.sqs_server] if backend == "sqs" else [],
    )
    for backend in BACKENDS
    for name in scenarios_for(backend)
]


class _Clusters:
    """One cluster per backend, alive while that backend's cases run (they come in a row)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.cluster: Cluster | None = None
        self._stack = contextlib.ExitStack()

    def get(self, backend: str) -> Cluster:
        if self.cluster is not None and self.cluster.backend == backend:
            return self.cluster
        self.close()
        if backend != "sqs":
            direct_target(backend).require()  # skips, or fails under REQUIRE_SERVICES=1
        root: Path = self.tmp_path_factory.mktemp(f"chaos-{backend}")
        self.cluster = self._stack.enter_context(Cluster(root, backend=backend, workers=3))
        return self.cluster

    def close(self) -> None:
        self.cluster = None
        self._stack.close()


@pytest.fixture(scope="module")
def chaos_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Clusters]:
    require_postgres()
    clusters = _Clusters(tmp_path_factory)
    try:
        yield clusters
    finally:
        clusters.close()


@pytest.mark.parametrize(("backend", "scenario"), CASES)
def test_scenario(backend: str, scenario: str, chaos_clusters: _Clusters) -> None:
    result = run_scenario(scenario, chaos_clusters.get(backend), SEEDS[scenario])
    assert result.results, "the scenario ran no job"
    assert result.ok, result.describe()
    for run in result.results:
        assert run.check.executions >= 1
