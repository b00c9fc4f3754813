"""The deployment files of ``deploy/``, checked offline (no cluster, no AWS, no image build).

* The Kubernetes manifests render with ``kubectl kustomize`` (skipped without kubectl); their
  worker command uses only options ``dagster-taskiq worker --help`` lists; the kubelet waits
  longer than the worker's grace period; the probes, the Service and KEDA use the worker's
  metrics port and concurrency; the Redis and NATS triggers kept aside are well-formed.
* The ECS task runs the same worker command, stops later than the grace period, and both ECS
  files are valid requests for botocore's models of the two AWS APIs.
* The image's last stage runs the ``[project.scripts]`` console script, as a user that is not
  root, stops on SIGTERM, and installs the workspace packages from the repository's uv.lock.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dagster_taskiq.cli import main

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
ECS = DEPLOY / "ecs"

# An option's line in click's help: two spaces, then its names ("-m, --module TEXT"), then two
# or more spaces before the help text (or the end of the line).
_OPTION_COLUMN = re.compile(r"^  (-\S.*?)(?:\s{2,}|$)", re.MULTILINE)
_OPTION_NAME = re.compile(r"(?<![\w-])(--?[a-z0-9][a-z0-9-]*)")
# Kubernetes memory quantities, in MiB.
_QUANTITY_MIB = {
    "Ki": 1 / 1024,
    "Mi": 1.0,
    "Gi": 1024.0,
    "K": 1e3 / 2**20,
    "M": 1e6 / 2**20,
    "G": 1e9 / 2**20,
}


@functools.cache
def _worker_options() -> frozenset[str]:
    """The option names (``--long`` and ``-s``) ``dagster-taskiq worker --help`` lists."""
    result = CliRunner().invoke(main, ["worker", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    names = {
        name
        for column in _OPTION_COLUMN.findall(result.output)
        for name in _OPTION_NAME.findall(column)
    }
    assert {"--concurrency", "--grace-period", "-m"} <= names, result.output  # the parse worked
    return frozenset(names)


def _options_in(args: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in args if arg.startswith("-")}


def _value(args: list[str], option: str) -> str:
    assert option in args, f"{option} not in {args}"
    return args[args.index(option) + 1]


def _number(args: list[str], option: str) -> float:
    return float(_value(args, option))


def _mib(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)", quantity)
    assert match is not None, f"not a memory quantity these tests read: {quantity!r}"
    return float(match.group(1)) * _QUANTITY_MIB[match.group(2)]


def _project_names() -> set[str]:
    pyprojects = [*ROOT.glob("packages/*/pyproject.toml"), ROOT / "examples" / "pyproject.toml"]
    return {tomllib.loads(path.read_text())["project"]["name"] for path in pyprojects}


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """``kubectl kustomize deploy/kubernetes``, by kind (one object of each)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: cannot render deploy/kubernetes with kustomize")
    out = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc]
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), kinds
    return {doc["kind"]: doc for doc in docs}


def _pod(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]
    return pod


def _worker(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [container] = _pod(rendered)["containers"]
    assert isinstance(container, dict)
    return container


def _args(rendered: dict[str, dict[str, Any]]) -> list[str]:
    return [str(arg) for arg in _worker(rendered)["args"]]


def test_kustomize_renders_the_worker_objects_and_not_the_secret(
    rendered: dict[str, dict[str, Any]],
) -> None:
    assert set(rendered) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceAccount",
    }
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert "keda-alternatives.yaml" not in kustomization["resources"]
    assert rendered["Deployment"]["metadata"]["name"] == "dagster-taskiq-worker"
    assert rendered["Service"]["metadata"]["name"] == "dagster-taskiq-worker-metrics"
    pod = _pod(rendered)
    assert pod["serviceAccountName"] == rendered["ServiceAccount"]["metadata"]["name"]
    # The Secret is created by hand (kustomization.yaml says how), never rendered from here.
    comments = (KUBERNETES / "kustomization.yaml").read_text()
    assert "kubectl create secret generic dagster-taskiq" in comments
    assert "--from-literal=store-url=" in comments
    assert "--from-file=signing-key=" in comments


def test_the_kubernetes_worker_command_uses_only_options_of_the_worker(
    rendered: dict[str, dict[str, Any]],
) -> None:
    args = _args(rendered)
    assert args[0] == "worker", args
    unknown = _options_in(args) - _worker_options()
    assert not unknown, f"not options of `dagster-taskiq worker`: {sorted(unknown)}"


def test_the_kubelet_waits_longer_than_the_grace_period_and_probes_the_metrics_port(
    rendered: dict[str, dict[str, Any]],
) -> None:
    pod, worker, args = _pod(rendered), _worker(rendered), _args(rendered)
    assert pod["terminationGracePeriodSeconds"] > _number(args, "--grace-period")
    port = int(_number(args, "--metrics-port"))
    [named] = [p for p in worker["ports"] if p["name"] == "metrics"]
    assert named["containerPort"] == port
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert worker["startupProbe"]["httpGet"]["port"] == "metrics"
    service = rendered["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    [service_port] = service["spec"]["ports"]
    assert service_port["port"] == port
    assert service_port["targetPort"] == "metrics"
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_worker_runs_unprivileged_with_its_settings_and_its_key(
    rendered: dict[str, dict[str, Any]],
) -> None:
    pod, worker, args = _pod(rendered), _worker(rendered), _args(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's user (deploy/Dockerfile), not root.
    instructions = _instructions((DEPLOY / "Dockerfile").read_text())
    image_user = [arguments for keyword, arguments in instructions if keyword == "USER"][-1]
    assert pod["securityContext"]["runAsUser"] == int(image_user.split(":")[0]) != 0
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in worker["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The memory limit is above the worker's own recycling mark.
    assert _mib(worker["resources"]["limits"]["memory"]) > _number(args, "--max-memory")
    # Settings from the ConfigMap, the store URL from the Secret.
    [source] = worker["envFrom"]
    assert source["configMapRef"]["name"] == rendered["ConfigMap"]["metadata"]["name"]
    assert {
        "DAGSTER_TASKIQ_SQS_QUEUE_NAME",
        "DAGSTER_TASKIQ_SQS_REGION",
        "DAGSTER_HOME",
    } <= set(rendered["ConfigMap"]["data"])
    env = {item["name"]: item for item in worker["env"]}
    assert env["DAGSTER_TASKIQ_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-taskiq",
        "key": "store-url",
    }
    # --signing-key-file is the Secret's `signing-key`, mounted read-only.
    key_file = PurePosixPath(_value(args, "--signing-key-file"))
    assert "--require-signed" in args
    key_volume = volumes[mounts[str(key_file.parent)]]
    assert key_volume["secret"]["secretName"] == "dagster-taskiq"
    assert key_volume["secret"]["items"] == [{"key": "signing-key", "path": key_file.name}]


def test_keda_scales_the_deployment_on_the_sqs_queue_by_its_concurrency(
    rendered: dict[str, dict[str, Any]],
) -> None:
    args = _args(rendered)
    scaled = rendered["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == rendered["Deployment"]["metadata"]["name"]
    assert scaled["minReplicaCount"] in (0, 1)
    assert scaled["maxReplicaCount"] == 20
    assert scaled["cooldownPeriod"] == 300
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    metadata = trigger["metadata"]
    assert set(metadata) <= {"queueURL", "queueLength", "awsRegion", "awsEndpoint"}
    assert float(metadata["queueLength"]) == _number(args, "--concurrency")
    settings = rendered["ConfigMap"]["data"]
    assert metadata["awsRegion"] == settings["DAGSTER_TASKIQ_SQS_REGION"]
    assert metadata["queueURL"].endswith("/" + settings["DAGSTER_TASKIQ_SQS_QUEUE_NAME"])
    assert f".{settings['DAGSTER_TASKIQ_SQS_REGION']}." in metadata["queueURL"]
    auth = rendered["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"


def _commented_triggers(text: str) -> list[dict[str, Any]]:
    """The ``triggers:`` blocks kept as comments in keda-alternatives.yaml, parsed."""
    triggers: list[dict[str, Any]] = []
    for block in re.findall(r"^#   triggers:\n(?:^#     .*\n?)+", text, re.MULTILINE):
        uncommented = "\n".join(line[4:] for line in block.splitlines())
        triggers.extend(yaml.safe_load(uncommented)["triggers"])
    return triggers


def test_the_redis_and_nats_triggers_count_waiting_and_running_steps() -> None:
    concurrency = _number(_ecs_command(), "--concurrency")  # the Kubernetes one's too (below)
    text = (KUBERNETES / "keda-alternatives.yaml").read_text()
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines())
    triggers = {trigger["type"]: trigger["metadata"] for trigger in _commented_triggers(text)}
    assert set(triggers) == {"redis-streams", "nats-jetstream"}
    redis = triggers["redis-streams"]
    assert redis["stream"] == "dagster-taskiq"
    # XLEN (acked entries are deleted: waiting + running), not a consumer group's PEL or lag.
    assert "consumerGroup" not in redis
    assert float(redis["streamLength"]) == concurrency
    nats = triggers["nats-jetstream"]
    assert set(nats) == {
        "natsServerMonitoringEndpoint",
        "account",
        "stream",
        "consumer",
        "lagThreshold",
    }
    assert (nats["account"], nats["stream"], nats["consumer"]) == (
        "$G",
        "DAGSTER_TASKIQ",
        "dagster-taskiq-workers",
    )
    assert float(nats["lagThreshold"]) == concurrency


# --- ECS -------------------------------------------------------------------------------------


def _task_definition() -> dict[str, Any]:
    task: dict[str, Any] = json.loads((ECS / "worker-task-definition.json").read_text())
    return task


def _scaling_policy() -> dict[str, Any]:
    policy: dict[str, Any] = json.loads((ECS / "scaling-policy.json").read_text())
    return policy


def _ecs_command() -> list[str]:
    [container] = _task_definition()["containerDefinitions"]
    return [str(arg) for arg in container["command"]]


def test_the_ecs_worker_command_uses_only_options_of_the_worker() -> None:
    args = _ecs_command()
    assert args[0] == "worker", args
    unknown = _options_in(args) - _worker_options()
    assert not unknown, f"not options of `dagster-taskiq worker`: {sorted(unknown)}"


def test_the_ecs_task_runs_the_kubernetes_command_with_its_key_from_secrets_manager(
    rendered: dict[str, dict[str, Any]],
) -> None:
    kubernetes = _args(rendered)
    key_file = kubernetes.index("--signing-key-file")
    # ECS secrets are environment variables: the key comes as DAGSTER_TASKIQ_SIGNING_KEY.
    assert _ecs_command() == kubernetes[:key_file] + kubernetes[key_file + 2 :]


def test_the_ecs_task_stops_after_the_grace_period_and_checks_healthz() -> None:
    task = _task_definition()
    [container] = task["containerDefinitions"]
    args = _ecs_command()
    assert _number(args, "--grace-period") < container["stopTimeout"] <= 120  # Fargate's most
    assert "FARGATE" in task["requiresCompatibilities"]
    assert int(task["memory"]) > _number(args, "--max-memory")
    port = int(_number(args, "--metrics-port"))
    assert [m["containerPort"] for m in container["portMappings"]] == [port]
    check = container["healthCheck"]["command"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert f"http://127.0.0.1:{port}/healthz" in check[3]
    compile(check[3], "healthCheck", "exec")  # the one-liner is Python
    secrets = {secret["name"] for secret in container["secrets"]}
    assert secrets == {"DAGSTER_TASKIQ_STORE_URL", "DAGSTER_TASKIQ_SIGNING_KEY"}
    assert container["logConfiguration"]["logDriver"] == "awslogs"


def test_the_scaling_policy_tracks_steps_per_task_at_the_concurrency() -> None:
    policy = _scaling_policy()
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == _number(_ecs_command(), "--concurrency")
    metrics = config["CustomizedMetricSpecification"]["Metrics"]
    [returned] = [m for m in metrics if m["ReturnData"]]
    assert "Expression" in returned
    queried = {m["MetricStat"]["Metric"]["MetricName"]: m for m in metrics if "MetricStat" in m}
    assert set(queried) == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "RunningTaskCount",
    }
    ids = {m["Id"] for m in queried.values()}
    assert set(re.findall(r"[a-z][A-Za-z0-9_]*", returned["Expression"])) - {"IF"} == ids
    [container] = _task_definition()["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    queue = environment["DAGSTER_TASKIQ_SQS_QUEUE_NAME"]
    for name in ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"):
        assert queried[name]["MetricStat"]["Metric"]["Dimensions"] == [
            {"Name": "QueueName", "Value": queue}
        ]
    tasks = {
        d["Name"]: d["Value"]
        for d in queried["RunningTaskCount"]["MetricStat"]["Metric"]["Dimensions"]
    }
    assert policy["ResourceId"] == f"service/{tasks['ClusterName']}/{tasks['ServiceName']}"


@pytest.mark.parametrize(
    ("service", "operation", "name"),
    [
        ("ecs", "RegisterTaskDefinition", "worker-task-definition.json"),
        ("application-autoscaling", "PutScalingPolicy", "scaling-policy.json"),
    ],
)
def test_the_ecs_files_are_valid_requests_of_their_api(
    service: str, operation: str, name: str
) -> None:
    botocore_session = pytest.importorskip("botocore.session")
    validate = pytest.importorskip("botocore.validate")
    model = botocore_session.get_session().get_service_model(service).operation_model(operation)
    report = validate.ParamValidator().validate(
        json.loads((ECS / name).read_text()), model.input_shape
    )
    assert not report.has_errors(), report.generate_report()


# --- the image -------------------------------------------------------------------------------


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")),
    )
    instructions: list[tuple[str, str]] = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def test_the_image_runs_the_console_script_as_a_user_that_is_not_root() -> None:
    instructions = _instructions((DEPLOY / "Dockerfile").read_text())
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(stages) >= 2, "a multi-stage build"
    final = instructions[stages[-1] :]
    assert final[0] == ("FROM", "python:3.11-slim")
    last = {keyword: arguments for keyword, arguments in final}  # the last of each
    core = tomllib.loads((ROOT / "packages/dagster-taskiq-core/pyproject.toml").read_text())
    [script] = core["project"]["scripts"]
    assert json.loads(last["ENTRYPOINT"]) == [script]
    assert json.loads(last["CMD"]) == ["worker", "--help"]
    user = last["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert last["STOPSIGNAL"] == "SIGTERM"
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final


def test_the_image_installs_the_workspace_packages_from_the_lock() -> None:
    instructions = _instructions((DEPLOY / "Dockerfile").read_text())
    assert ("COPY", "pyproject.toml uv.lock ./") in instructions
    runs = [shlex.split(arguments) for keyword, arguments in instructions if keyword == "RUN"]
    [export] = [words for words in runs if "export" in words]
    assert "--locked" in export
    assert "--no-dev" in export
    packages = {export[i + 1] for i, word in enumerate(export) if word == "--package"}
    required = {
        "dagster-taskiq-core",
        "dagster-taskiq-sqs",
        "dagster-taskiq-redis",
        "dagster-taskiq-nats",
    }
    assert required <= packages <= _project_names()
    assert _value(export, "--extra") == "postgres"
