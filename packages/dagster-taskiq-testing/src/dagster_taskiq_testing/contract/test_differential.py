"""Differential test: random SQS call sequences give the same results on the stub and a server.

The server is LocalStack where it can be built, else moto. ``--sqs-differential-examples``
(or ``$DAGSTER_TASKIQ_DIFFERENTIAL_EXAMPLES``) sets the number of examples (default 200).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from dagster_taskiq_testing.contract._differential import DifferentialMachine
from dagster_taskiq_testing.pytest_plugin import differential_examples
from dagster_taskiq_testing.sqs_emulators import SqsEmulator


@pytest.mark.sqs_server
def test_stub_and_real_server_agree(
    sqs_reference_emulator: SqsEmulator, pytestconfig: pytest.Config
) -> None:
    machine = type("Machine", (DifferentialMachine,), {"reference": sqs_reference_emulator})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=differential_examples(pytestconfig),
            stateful_step_count=15,
            deadline=None,
            database=None,
            # Shrinking against a real server can take many minutes; the failing sequence of
            # calls is printed unshrunk instead.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
