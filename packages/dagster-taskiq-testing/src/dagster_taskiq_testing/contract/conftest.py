"""The contract tests take ``emulator``: one of the emulators the plugin parametrises over."""

from __future__ import annotations

import pytest

from dagster_taskiq_testing.sqs_emulators import SqsEmulator


@pytest.fixture
def emulator(sqs_contract_emulator: SqsEmulator) -> SqsEmulator:
    return sqs_contract_emulator
