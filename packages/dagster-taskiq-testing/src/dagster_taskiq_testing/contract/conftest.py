"""The contract tests take ``backend``: one of the backends the plugin parametrises over."""

from __future__ import annotations

import pytest

from dagster_taskiq_testing.backends import SqsBackend


@pytest.fixture
def backend(sqs_contract_backend: SqsBackend) -> SqsBackend:
    return sqs_contract_backend
