"""LocalStack 4.0.3 without Docker: its own virtualenv (built with uv, cached) and process.

LocalStack's pins clash with the workspace's, so it never enters the workspace lock. The last
release that runs without an auth token is 4.0.3; ``amazon-kclpy`` is overridden away because
its build downloads jars.

    python -m dagster_taskiq_testing.servers build-localstack   # build (or reuse) the env
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
from typing import IO

from dagster_taskiq_testing._errors import ServerUnavailableError
from dagster_taskiq_testing.servers._base import (
    ServerProcess,
    http_get,
)

LOCALSTACK_PINS: tuple[str, ...] = (
    "localstack-core[runtime]==4.0.3",
    "cbor2==5.6.5",
    "pyopenssl==24.2.1",
    "cryptography==42.0.8",
    "service-identity<25",
)
LOCALSTACK_OVERRIDES: tuple[str, ...] = ('amazon-kclpy ; sys_platform == "never"',)
LOCALSTACK_PYTHON = "3.11"
ENV_DIR_VARIABLE = "DAGSTER_TASKIQ_LOCALSTACK_ENV"
_COMPLETE_MARKER = ".dagster-taskiq-complete"


def localstack_env_dir() -> pathlib.Path:
    """Where the env lives: ``$DAGSTER_TASKIQ_LOCALSTACK_ENV``, else a cache dir keyed by pins."""
    explicit = os.environ.get(ENV_DIR_VARIABLE)
    if explicit:
        return pathlib.Path(explicit)
    cache_root = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    key = hashlib.sha256(
        json.dumps([LOCALSTACK_PYTHON, LOCALSTACK_PINS, LOCALSTACK_OVERRIDES]).encode()
    ).hexdigest()[:12]
    return cache_root / "dagster-taskiq-testing" / f"localstack-{key}"


def _python_of(env: pathlib.Path) -> pathlib.Path:
    return env / "bin" / "python"


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as exc:
        raise ServerUnavailableError("uv is needed to build LocalStack's environment") from exc
    return [str(find_uv_bin())]


def build_localstack_env(
    *, timeout: float = 600.0, env_dir: pathlib.Path | None = None, log: IO[str] | None = None
) -> pathlib.Path:
    """Build LocalStack's virtualenv once (reused while the pins are unchanged); its python.

    Raises ``ServerUnavailableError`` if the build fails or takes longer than ``timeout``.
    """
    env = env_dir or localstack_env_dir()
    if (env / _COMPLETE_MARKER).exists():
        return _python_of(env)
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (env / _COMPLETE_MARKER).exists():
            return _python_of(env)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f"{env.name}.", dir=env.parent))
        try:
            _install(staging, timeout=timeout, log=log)
            (staging / _COMPLETE_MARKER).write_text("\n".join(LOCALSTACK_PINS) + "\n")
            if env.exists():
                shutil.rmtree(env)
            staging.rename(env)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    # A virtualenv's scripts name their interpreter by absolute path; after the rename, run
    # everything through ``python -m`` so nothing depends on the staging path.
    return _python_of(env)


def _install(staging: pathlib.Path, *, timeout: float, log: IO[str] | None) -> None:
    deadline = time.monotonic() + timeout
    overrides = staging / "overrides.txt"
    uv = _uv()

    def run(*args: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerUnavailableError(f"building LocalStack's env took over {timeout:.0f} s")
        try:
            completed = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [*uv, *args],
                capture_output=True,
                text=True,
                timeout=remaining,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerUnavailableError(
                f"building LocalStack's env took over {timeout:.0f} s"
            ) from exc
        if log is not None:
            log.write(completed.stdout + completed.stderr)
        if completed.returncode != 0:
            raise ServerUnavailableError(
                f"building LocalStack's env failed (uv {args[0]}): {completed.stderr[-2000:]}"
            )

    run("venv", "--quiet", "--python", LOCALSTACK_PYTHON, "--seed", str(staging))
    overrides.write_text("\n".join(LOCALSTACK_OVERRIDES) + "\n")
    run(
        "pip",
        "install",
        "--quiet",
        "--python",
        str(_python_of(staging)),
        "--override",
        str(overrides),
        *LOCALSTACK_PINS,
    )


class LocalStackServer(ServerProcess):
    """``python -m localstack.runtime.main`` with ``SERVICES=sqs`` on a free loopback port."""

    name = "localstack"
    title = "LocalStack"

    def __init__(
        self, python: pathlib.Path | str | None = None, *, start_timeout: float = 90.0
    ) -> None:
        super().__init__(start_timeout=start_timeout, stop_timeout=15.0)
        self._python = pathlib.Path(python) if python is not None else None

    def start(self, *, build_timeout: float = 600.0) -> LocalStackServer:
        python = self._python or build_localstack_env(timeout=build_timeout)
        workdir, port = self._prepare()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "LOCALSTACK_", "VIRTUAL_ENV", "PYTHON"))
        }
        env.update(
            {
                "SERVICES": "sqs",
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                "DNS_ADDRESS": "0",
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "DISABLE_EVENTS": "1",
                "LOCALSTACK_VOLUME_DIR": str(workdir / "volume"),
                "TMPDIR": str(workdir),
            }
        )
        self._launch(
            [str(python), "-m", "localstack.runtime.main"], ready=self._ready, env=env, cwd=workdir
        )
        return self

    def _ready(self) -> bool:
        health = json.loads(http_get(f"{self.endpoint_url}/_localstack/health"))
        return health.get("services", {}).get("sqs") in {"available", "running"}
