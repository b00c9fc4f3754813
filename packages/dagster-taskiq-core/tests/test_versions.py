"""Every package of the repository says which release it is, as its distribution does."""

from __future__ import annotations

import importlib
import importlib.metadata
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PACKAGES = [  # (import name, distribution, project folder)
    ("dagster_taskiq", "dagster-taskiq-core", "packages/dagster-taskiq-core"),
    ("dagster_taskiq_sqs", "dagster-taskiq-sqs", "packages/dagster-taskiq-sqs"),
    ("dagster_taskiq_redis", "dagster-taskiq-redis", "packages/dagster-taskiq-redis"),
    ("dagster_taskiq_nats", "dagster-taskiq-nats", "packages/dagster-taskiq-nats"),
    ("dagster_taskiq_testing", "dagster-taskiq-testing", "packages/dagster-taskiq-testing"),
    ("dagster_taskiq_examples", "dagster-taskiq-examples", "examples"),
]


@pytest.mark.parametrize(("module_name", "distribution", "project"), PACKAGES)
def test_version_is_the_distributions(module_name: str, distribution: str, project: str) -> None:
    module = importlib.import_module(module_name)
    assert "__version__" in module.__all__
    assert module.__version__ == importlib.metadata.version(distribution)
    # ... which is the project's, unless the installed metadata is stale (re-run uv sync)
    pyproject = tomllib.loads((ROOT / project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == distribution
    assert module.__version__ == pyproject["project"]["version"]
