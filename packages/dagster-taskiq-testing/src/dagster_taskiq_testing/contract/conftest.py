"""The contract tests take ``target``: one of the targets the plugin parametrises over."""

from __future__ import annotations

import pytest

from dagster_taskiq_testing.sqs_targets import SqsTarget


@pytest.fixture
def target(sqs_contract_target: SqsTarget) -> SqsTarget:
    return sqs_contract_target
