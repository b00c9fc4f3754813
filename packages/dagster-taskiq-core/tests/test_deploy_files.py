"""The deployment files of ``deploy/``, checked offline (no cluster, no image build here): the
Kubernetes manifests render with ``kubectl kustomize``; the worker command in them and in the
ECS task definition uses only options ``dagster-taskiq worker --help`` lists; the orchestrators
wait longer than the worker's grace period; the image runs the console script, as a user that
is not root, and stops on SIGTERM."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dagster_taskiq.cli import main

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"


def _worker_options() -> set[str]:
    result = CliRunner().invoke(main, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return set(re.findall(r"(--[a-z][a-z-]+)", result.output))


def _option_value(args: list[str], option: str) -> float:
    return float(args[args.index(option) + 1])


def _check_worker_command(args: list[str]) -> None:
    assert args[0] == "worker", args
    unknown = {a for a in args if a.startswith("--")} - _worker_options()
    assert not unknown, f"not options of dagster-taskiq worker: {unknown}"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_kubernetes_manifests_render_with_a_worker_of_the_worker_cli(
    rendered: list[dict[str, Any]],
) -> None:
    kinds = {doc["kind"] for doc in rendered}
    assert kinds == {"ConfigMap", "Deployment", "Service", "ScaledObject", "TriggerAuthentication"}
    [deployment] = [doc for doc in rendered if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = [str(a) for a in container["args"]]
    _check_worker_command(args)
    assert pod["terminationGracePeriodSeconds"] > _option_value(args, "--grace-period")
    port = _option_value(args, "--metrics-port")
    [named] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert named["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi")
    assert _option_value(args, "--max-memory") < float(limit[:-2]) * 1024
    [scaled] = [doc for doc in rendered if doc["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert float(trigger["metadata"]["queueLength"]) == _option_value(args, "--concurrency")


def test_the_ecs_task_runs_the_same_worker_command() -> None:
    task = json.loads((DEPLOY / "ecs" / "worker-task-definition.json").read_text())
    [container] = task["containerDefinitions"]
    args = container["command"]
    _check_worker_command(args)
    assert container["stopTimeout"] > _option_value(args, "--grace-period")
    assert container["stopTimeout"] <= 120  # Fargate's limit
    assert "/healthz" in " ".join(container["healthCheck"]["command"])
    policy = json.loads((DEPLOY / "ecs" / "scaling-policy.json").read_text())
    target = policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
    assert target == _option_value(args, "--concurrency")


def test_the_image_runs_the_console_script_as_a_user_that_is_not_root() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    final = dockerfile.split("\nFROM ")[-1]  # the last stage is the image
    scripts = tomllib.loads((ROOT / "packages/dagster-taskiq-core/pyproject.toml").read_text())
    [script] = scripts["project"]["scripts"]
    assert re.search(rf'^ENTRYPOINT \["{script}"\]$', final, re.MULTILINE)
    user = re.search(r"^USER (\S+)$", final, re.MULTILINE)
    assert user is not None
    assert user.group(1) not in ("root", "0")
    assert re.search(r"^STOPSIGNAL SIGTERM$", final, re.MULTILINE)
    assert "uv.lock" in dockerfile  # built from the repository's own lock
