"""Developer and CI sessions. Every session installs from uv.lock (``uv sync --locked``).

uv run nox -s tests        # unit + integration tests (PostgreSQL, real SQS server)
uv run nox -s lint         # ruff check + ruff format --check
uv run nox -s typecheck    # mypy --strict on the packages
uv run nox -s wheels       # build every wheel, install each in a fresh venv, import it
uv run nox -s bench -- store   # benchmarks (see docs/benchmarks.md)
uv run nox -s chaos        # >= 200 seeded fault-scenario runs, decoder fuzzing (reliability.md)
uv run nox -s soak         # 1,000-step fan-out, 50 concurrent runs, 10,000-message backlog
"""

from __future__ import annotations

import pathlib
import tempfile

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "typecheck", "tests", "wheels"]
nox.options.reuse_venv = "yes"

ROOT = pathlib.Path(__file__).parent
PACKAGES = {
    "dagster-taskiq-core": "dagster_taskiq",
    "dagster-taskiq-sqs": "dagster_taskiq_sqs",
    "dagster-taskiq-redis": "dagster_taskiq_redis",
    "dagster-taskiq-nats": "dagster_taskiq_nats",
    "dagster-taskiq-rabbitmq": "dagster_taskiq_rabbitmq",
    "dagster-taskiq-testing": "dagster_taskiq_testing",
    "dagster-taskiq-examples": "dagster_taskiq_examples",
}


def _sync(session: nox.Session, *args: str) -> None:
    """Install the locked environment into this session's virtualenv."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests of every package."""
    _sync(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    _sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the sources of the packages."""
    _sync(session)
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ``nox -s bench -- <target>`` (benchmarks/bench_<target>.py; ``all``)."""
    _sync(session)
    session.run("python", "-m", "benchmarks", *(session.posargs or ["--help"]))


CORE_TESTS = "packages/dagster-taskiq-core/tests"


@nox.session
def chaos(session: nox.Session) -> None:
    """Decoder fuzzing, then >= 200 seeded fault-scenario runs and their table (not default).

    ``nox -s chaos -- --runs 50 --seed 7``; driver options: --scenarios a,b, --replay SCEN:SEED,
    --backend sqs|redis|nats|rabbitmq (default sqs; the others need their local server).
    """
    _sync(session)
    session.run(
        "pytest",
        f"{CORE_TESTS}/test_payload_fuzz.py",
        "-q",
        "-p",
        "no:cacheprovider",
        env={"DAGSTER_TASKIQ_FUZZ_EXAMPLES": "10000"},
    )
    session.run(
        "python", f"{CORE_TESTS}/chaos/chaos_driver.py", *(session.posargs or ["--runs", "200"])
    )


@nox.session
def soak(session: nox.Session) -> None:
    """Load and soak on 4 workers: 1,000-step fan-out, 50 runs at once, 10,000 backlog.

    Every run is checked by the ledger; ``nox -s soak -- --only backlog --sqs-server localstack``
    (moto's FIFO queues stall past ~5,000 queued messages; LocalStack holds the 10,000).
    """
    _sync(session)
    session.run("python", f"{CORE_TESTS}/chaos/soak_driver.py", *session.posargs)


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel, install each into a fresh venv (deps pinned by uv.lock), import it."""
    dist = pathlib.Path(tempfile.mkdtemp(prefix="dagster-taskiq-dist-"))
    session.run("uv", "build", "--all-packages", "--wheel", "-o", str(dist), external=True)
    built = sorted(p.name for p in dist.glob("*.whl"))
    session.log(f"built: {built}")
    for project in PACKAGES:
        prefix = project.replace("-", "_") + "-"
        if not any(name.startswith(prefix) for name in built):
            session.error(f"no wheel was built for {project}")
    constraints = dist / "constraints.txt"
    session.run(
        "uv",
        "export",
        "--locked",
        "--all-packages",
        "--all-extras",
        "--no-dev",
        "--no-emit-workspace",
        "--no-hashes",
        "-o",
        str(constraints),
        external=True,
        silent=True,
    )
    for project, module in PACKAGES.items():
        venv = dist / f"venv-{project}"
        session.run("uv", "venv", "-q", str(venv), external=True)
        python = str(venv / "bin" / "python")
        session.run(
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            python,
            "--find-links",
            str(dist),
            "-c",
            str(constraints),
            project,
            external=True,
        )
        session.run(
            python,
            "-c",
            f"import {module}; print({module}.__name__, 'imports from', {module}.__file__)",
            external=True,
        )


@nox.session
def contract(session: nox.Session) -> None:
    """The SQS contract suite on the stub, moto and LocalStack; 1,000 differential examples."""
    _sync(session)
    # Build (or reuse) LocalStack's own virtualenv first, so a build failure is loud here.
    session.run("python", "-m", "dagster_taskiq_testing.servers", "build-localstack")
    session.run(
        "pytest",
        "packages/dagster-taskiq-testing/src/dagster_taskiq_testing/contract",
        "--sqs-contract-emulators=stub,moto,localstack",
        "--sqs-require-servers",
        "--sqs-differential-examples=1000",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )
