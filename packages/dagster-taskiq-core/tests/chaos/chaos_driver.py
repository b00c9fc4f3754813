"""``nox -s chaos``: seeded randomized fault scenarios, then a table of what the ledger found.

    python packages/dagster-taskiq-core/tests/chaos/chaos_driver.py --runs 200 [--seed N]
        [--scenarios sigkill,pause] [--replay SCENARIO:SEED] [--backend sqs|redis|nats|rabbitmq]

Each scenario gets a fresh cluster (the backend's broker, sqs by default, behind a proxy;
PostgreSQL store and ledger; worker processes) and ``runs / len(scenarios)`` runs, each with its
own seed derived from the session seed. A failing run prints its seed and the command that
replays it; the exit status is 1 if any rule was broken or any run failed.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests folder

import structlog

from chaos.cluster import BACKENDS, cluster
from chaos.scenarios import ScenarioRun, run_scenario, scenarios_for

WORKERS = {"sigkill": 4, "pause": 3, "sigterm": 3, "sigkill_before_ack": 3}
"""Worker processes per scenario (default 2): 2-4 across the suite."""

COLUMNS = (
    "scenario",
    "runs",
    "steps",
    "faults",
    "lost",
    "double-completed",
    "re-executed-after-complete",
    "failed",
    "wall time",
)


def _quiet() -> None:
    """This script's own output only: the library's debug events would drown the table."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("dagster").setLevel(logging.WARNING)


def run_batch(name: str, seeds: list[int], out: list[ScenarioRun], backend: str = "sqs") -> float:
    started = time.monotonic()
    with cluster(backend=backend, workers=WORKERS.get(name, 2)) as c:
        for seed in seeds:
            print(f"[chaos] {name} seed={seed} ...", flush=True)
            try:
                result = run_scenario(name, c, seed)
                print(
                    f"[chaos]   {'ok' if result.ok else 'FAILED'} "
                    f"{sum(r.seconds for r in result.results):.1f} s, faults {result.faults}",
                    flush=True,
                )
            except Exception as exc:  # a crash of the scenario itself is a failure too
                result = ScenarioRun(name, seed, problems=[f"scenario raised {exc!r}"])
            out.append(result)
            if not result.ok:
                print(result.describe(), flush=True)
                again = "" if backend == "sqs" else f" --backend {backend}"
                print(
                    f"[chaos] FAILED: replay with: python {Path(__file__).as_posix()} "
                    f"--replay {name}:{seed}{again}",
                    flush=True,
                )
    return time.monotonic() - started


def table(results: list[ScenarioRun], walls: dict[str, float]) -> str:
    rows = []
    for name, wall in walls.items():
        mine = [r for r in results if r.scenario == name]
        checks = [x.check for r in mine for x in r.results]
        rows.append(
            (
                name,
                str(len(mine)),
                str(sum(c.steps for c in checks)),
                str(sum(r.faults for r in mine)),
                str(sum(len(c.lost) for c in checks)),
                str(sum(len(c.double_completed) for c in checks)),
                str(sum(len(c.reexecuted_after_complete) for c in checks)),
                str(sum(1 for r in mine if not r.ok)),
                f"{wall:.0f} s",
            )
        )
    totals = (
        "total",
        *(str(sum(int(r[i]) for r in rows)) for i in range(1, 8)),
        f"{sum(walls.values()):.0f} s",
    )
    rows.append(totals)
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLUMNS))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(COLUMNS), sep, *(line(r) for r in rows)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--backend", choices=BACKENDS, default="sqs")
    parser.add_argument(
        "--scenarios", default=None, help="comma-separated (default: all of the backend's)"
    )
    parser.add_argument("--replay", default=None, help="SCENARIO:SEED, one run")
    args = parser.parse_args(argv)
    scenarios = scenarios_for(args.backend)
    _quiet()
    if args.replay:
        name, seed = args.replay.split(":")
        plan = {name: [int(seed)]}
    else:
        session_seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
        print(
            f"[chaos] session seed {session_seed} ({args.runs} runs, backend {args.backend})",
            flush=True,
        )
        names = [n.strip() for n in (args.scenarios or ",".join(scenarios)).split(",")]
        names = [n for n in names if n]
        unknown = [n for n in names if n not in scenarios]
        if unknown:
            parser.error(f"unknown scenario(s) {unknown}; known: {sorted(scenarios)}")
        rng = random.Random(session_seed)
        plan = {n: [] for n in names}
        for i in range(args.runs):
            plan[names[i % len(names)]].append(rng.getrandbits(32))
    results: list[ScenarioRun] = []
    walls: dict[str, float] = {}
    for name, seeds in plan.items():
        walls[name] = run_batch(name, seeds, results, args.backend)
    print(table(results, walls), flush=True)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"[chaos] failed: {r.scenario} seed {r.seed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
