"""pytest plugin (entry point ``pytest11``): SQS fixtures for the stub and real servers.

Fixtures:

* ``sqs_clock``: a ``FakeClock``; ``sqs_stub``: a fresh ``InMemorySqs`` on it;
* ``sqs_server``: a real SQS server for the session (``--sqs-server=moto|localstack``), skipped
  with the reason when it cannot start; ``moto_sqs_server`` / ``localstack_sqs_server`` for one
  in particular;
* ``sqs_emulator``: a ``SqsEmulator``, parametrised over ``--sqs-emulators`` (default
  ``stub,moto``), so a test taking it runs once per emulator;
* ``sqs_contract_emulator``: the same over ``--sqs-contract-emulators`` (default all three), used
  by the contract suite in ``dagster_taskiq_testing.contract``;
* ``debug_logs``: every structlog level reaches ``capture_logs`` during the test;
* ``dagster_taskiq``: a factory of ``InProcessTaskIQ`` harnesses that run your Dagster jobs
  through ``taskiq_executor`` on in-process workers over the stub (no network).

Markers: ``sqs_deviation(emulator, reason)`` turns into ``xfail(strict=True)`` on that emulator
only; ``sqs_fake_time(reason)`` skips the test on real servers (it needs minutes of real time).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dagster_taskiq_testing._clock import FakeClock
from dagster_taskiq_testing._errors import ServerUnavailableError
from dagster_taskiq_testing.servers import LocalStackServer, MotoServer, SqsServer
from dagster_taskiq_testing.sqs import InMemorySqs
from dagster_taskiq_testing.sqs_emulators import EMULATOR_NAMES, LOCALSTACK, MOTO, STUB, SqsEmulator

# before the broker backends' tests import it: its assertions get pytest's detailed messages
pytest.register_assert_rewrite("dagster_taskiq_testing.broker_helpers")

if TYPE_CHECKING:
    from dagster_taskiq_testing.dagster_harness import InProcessTaskIQ

_EMULATOR_FIXTURES = ("sqs_emulator", "sqs_contract_emulator")
_MISSING: dict[str, str] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dagster-taskiq-testing", "SQS stub and servers")
    group.addoption(
        "--sqs-emulators",
        default=None,
        help="emulators the sqs_emulator fixture runs over, comma-separated from "
        "stub,moto,localstack (default: $DAGSTER_TASKIQ_SQS_EMULATORS or stub,moto)",
    )
    group.addoption(
        "--sqs-contract-emulators",
        default=None,
        help="emulators the contract suite runs over (default: "
        "$DAGSTER_TASKIQ_SQS_CONTRACT_EMULATORS or stub,moto,localstack)",
    )
    group.addoption(
        "--sqs-server",
        default=None,
        choices=(MOTO, LOCALSTACK),
        help="the real server behind the sqs_server fixture (default moto)",
    )
    group.addoption(
        "--localstack-build-timeout",
        type=float,
        default=None,
        help="seconds allowed to build LocalStack's env before its tests are skipped "
        "(default: $DAGSTER_TASKIQ_LOCALSTACK_BUILD_TIMEOUT or 300)",
    )
    group.addoption(
        "--sqs-require-servers",
        action="store_true",
        default=False,
        help="fail, instead of skipping, the tests of a real server that cannot start",
    )
    group.addoption(
        "--sqs-differential-examples",
        type=int,
        default=None,
        help="Hypothesis examples of the stub-vs-server differential test (default: "
        "$DAGSTER_TASKIQ_DIFFERENTIAL_EXAMPLES or 200)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqs_deviation(emulator, reason): xfail(strict=True) on that emulator only"
    )
    config.addinivalue_line(
        "markers", "sqs_fake_time(reason): needs the stub's fake clock; skipped on real servers"
    )
    config.addinivalue_line(
        "markers", "sqs_server: needs a real SQS server (moto or LocalStack), started by the tests"
    )
    for fixture in _EMULATOR_FIXTURES:
        emulator_names(config, fixture)  # a typo in an option is a usage error, reported early


def _names(config: pytest.Config, option: str, variable: str, default: str) -> list[str]:
    raw = config.getoption(option) or os.environ.get(variable) or default
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(names) - set(EMULATOR_NAMES))
    if unknown:
        raise pytest.UsageError(f"unknown SQS emulators {unknown}; choose from {EMULATOR_NAMES}")
    return names


def emulator_names(config: pytest.Config, fixture: str) -> list[str]:
    if fixture == "sqs_contract_emulator":
        return _names(
            config,
            "--sqs-contract-emulators",
            "DAGSTER_TASKIQ_SQS_CONTRACT_EMULATORS",
            ",".join(EMULATOR_NAMES),
        )
    return _names(config, "--sqs-emulators", "DAGSTER_TASKIQ_SQS_EMULATORS", f"{STUB},{MOTO}")


def differential_examples(config: pytest.Config) -> int:
    value = config.getoption("--sqs-differential-examples")
    if value is None:
        value = int(os.environ.get("DAGSTER_TASKIQ_DIFFERENTIAL_EXAMPLES", "200"))
    return int(value)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture in _EMULATOR_FIXTURES:
        if fixture in metafunc.fixturenames:
            names = emulator_names(metafunc.config, fixture)
            metafunc.parametrize(fixture, names, indirect=True, ids=names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        emulator = next(
            (callspec.params[f] for f in _EMULATOR_FIXTURES if f in callspec.params), None
        )
        if emulator is None:
            continue
        if emulator != STUB:
            item.add_marker(pytest.mark.sqs_server)
            for mark in item.iter_markers("sqs_fake_time"):
                reason = mark.args[0] if mark.args else mark.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"needs the stub's fake clock: {reason}"))
        for mark in item.iter_markers("sqs_deviation"):
            names = mark.args[0]
            emulators = {names} if isinstance(names, str) else set(names)
            if emulator in emulators:
                reason = mark.kwargs.get("reason") or (mark.args[1] if len(mark.args) > 1 else "")
                item.add_marker(
                    pytest.mark.xfail(strict=True, reason=f"{emulator} deviates from AWS: {reason}")
                )


# -- servers ----------------------------------------------------------------------------------


def _start(name: str, config: pytest.Config) -> SqsServer:
    if name in _MISSING:
        pytest.skip(_MISSING[name])
    try:
        if name == MOTO:
            return MotoServer().start()
        timeout = config.getoption("--localstack-build-timeout")
        if timeout is None:
            timeout = float(os.environ.get("DAGSTER_TASKIQ_LOCALSTACK_BUILD_TIMEOUT", "300"))
        return LocalStackServer().start(build_timeout=timeout)
    except ServerUnavailableError as exc:
        if config.getoption("--sqs-require-servers"):
            pytest.fail(f"{name} SQS server unavailable: {exc}")
        _MISSING[name] = f"{name} SQS server unavailable, its tests are skipped: {exc}"
        pytest.skip(_MISSING[name])


@pytest.fixture(scope="session")
def moto_sqs_server(pytestconfig: pytest.Config) -> Iterator[SqsServer]:
    """moto's server, in-process on a free port, for the whole session."""
    server = _start(MOTO, pytestconfig)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def localstack_sqs_server(pytestconfig: pytest.Config) -> Iterator[SqsServer]:
    """LocalStack in its own env and process, for the whole session (skipped if unbuildable)."""
    server = _start(LOCALSTACK, pytestconfig)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqs_server(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> SqsServer:
    """The real SQS server chosen by ``--sqs-server`` (moto by default)."""
    name = pytestconfig.getoption("--sqs-server") or MOTO
    server: SqsServer = request.getfixturevalue(f"{name}_sqs_server")
    return server


# -- stub -------------------------------------------------------------------------------------


@pytest.fixture
def sqs_clock() -> FakeClock:
    """The ``FakeClock`` behind ``sqs_stub``: ``sqs_clock.advance(31)``."""
    return FakeClock()


@pytest.fixture
def sqs_stub(sqs_clock: FakeClock) -> Iterator[InMemorySqs]:
    """A fresh ``InMemorySqs`` whose time is ``sqs_clock``."""
    stub = InMemorySqs(clock=sqs_clock)
    yield stub
    stub.close()


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Let every structlog level through to ``structlog.testing.capture_logs`` for the test:
    another package's conftest in the same session may have configured structlog to drop
    DEBUG and INFO events."""
    from dagster_taskiq_testing.broker_helpers import debug_logs as every_level  # noqa: PLC0415

    with every_level():
        yield


@pytest.fixture
def dagster_taskiq(tmp_path: Path) -> Callable[..., InProcessTaskIQ]:
    """Factory of :class:`InProcessTaskIQ` harnesses in this test's temporary directory.

    ``with dagster_taskiq(modules=["my_project.jobs"]) as taskiq: taskiq.execute(my_job)`` runs
    a job whose executor is ``taskiq_executor`` on in-process workers over the SQS stub.
    """
    from dagster_taskiq_testing.dagster_harness import InProcessTaskIQ  # noqa: PLC0415

    made = 0

    def factory(**kwargs: Any) -> InProcessTaskIQ:
        nonlocal made
        made += 1
        kwargs.setdefault("directory", tmp_path / f"dagster-taskiq-{made}")
        return InProcessTaskIQ(**kwargs)

    return factory


# -- emulators ---------------------------------------------------------------------------------


def _emulator(request: pytest.FixtureRequest) -> Iterator[SqsEmulator]:
    name: str = getattr(request, "param", STUB)
    if name == STUB:
        emulator = SqsEmulator.for_stub()
    else:
        server: Any = request.getfixturevalue(f"{name}_sqs_server")
        emulator = SqsEmulator(name, endpoint_url=server.endpoint_url)
    yield emulator
    emulator.close()


@pytest.fixture
def sqs_emulator(request: pytest.FixtureRequest) -> Iterator[SqsEmulator]:
    """One of ``--sqs-emulators``: the test runs once per emulator (stub and moto by default)."""
    yield from _emulator(request)


@pytest.fixture
def sqs_reference_emulator(request: pytest.FixtureRequest) -> Iterator[SqsEmulator]:
    """The real server the differential test compares the stub with: LocalStack where it can
    be built and is among ``--sqs-contract-emulators``, else moto."""
    names = emulator_names(request.config, "sqs_contract_emulator")
    reasons: list[str] = []
    for name in (LOCALSTACK, MOTO):
        if name not in names:
            continue
        try:
            server: Any = request.getfixturevalue(f"{name}_sqs_server")
        except pytest.skip.Exception as exc:
            reasons.append(str(exc))
            continue
        emulator = SqsEmulator(name, endpoint_url=server.endpoint_url)
        yield emulator
        emulator.close()
        return
    pytest.skip("no real SQS server to compare the stub with: " + ("; ".join(reasons) or "none"))


@pytest.fixture
def sqs_contract_emulator(request: pytest.FixtureRequest) -> Iterator[SqsEmulator]:
    """One of ``--sqs-contract-emulators`` (stub, moto and LocalStack by default)."""
    yield from _emulator(request)
