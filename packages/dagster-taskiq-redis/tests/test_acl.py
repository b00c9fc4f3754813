"""The Redis ACLs of ``docs/security.md``, read from that page and run on the local Redis: the
run process's user sends steps and reads dead letters, the worker's user receives, acks and
dead-letters them, and cannot append a step to the step stream (no injection)."""

from __future__ import annotations

import re
import secrets
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dagster_taskiq_testing.broker_helpers import deliver_and_dead_letter

SECURITY_DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"
DOC_STREAM = "dagster-taskiq"


def documented_acls() -> dict[str, str]:
    """The rules of ``dagster-run`` and ``dagster-worker`` (``ACL SETUSER`` lines) in the doc."""
    text = SECURITY_DOC.read_text()
    found = dict(re.findall(r"^ACL SETUSER (dagster-\w+) (.*)$", text, re.MULTILINE))
    assert set(found) == {"dagster-run", "dagster-worker"}, found
    return found


@pytest.fixture
def users(harness: Any) -> Iterator[dict[str, str]]:
    """The documented users for this test's stream, with fresh names and passwords: their
    broker URLs by role."""
    admin: redis.Redis[Any] = harness.client
    urls, names = {}, []
    for role, line in documented_acls().items():
        name, password = f"{role}-{uuid.uuid4().hex[:8]}", secrets.token_hex(16)
        rules = [
            word.replace(DOC_STREAM, harness.stream)
            .replace("RUN_PASSWORD", password)
            .replace("WORKER_PASSWORD", password)
            for word in shlex.split(line)
        ]
        admin.execute_command("ACL", "SETUSER", name, *rules)
        names.append(name)
        urls[role] = f"redis://{name}:{password}@127.0.0.1:6379"
    yield urls
    admin.execute_command("ACL", "DELUSER", *names)


async def test_the_documented_acls_send_receive_ack_and_dead_letter(
    harness: Any, users: dict[str, str]
) -> None:
    run = await harness.broker(url=users["dagster-run"], max_deliveries=1)
    worker = await harness.broker(
        url=users["dagster-worker"], max_deliveries=1, heartbeat_enabled=False
    )
    await deliver_and_dead_letter(run, worker)
    assert (harness.pending(), harness.length()) == (0, 0)


def test_the_worker_user_cannot_append_a_step(harness: Any, users: dict[str, str]) -> None:
    worker = redis.Redis.from_url(users["dagster-worker"])
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.xadd(harness.stream, {"data": b"forged"})
        worker.xadd(f"{harness.stream}-dlq", {"data": b"dead"})  # its dead letters: allowed
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.set(f"{harness.stream}:dedup:x", "1")
    finally:
        worker.close()
    run = redis.Redis.from_url(users["dagster-run"])
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            run.get("some-other-key")  # nothing outside its streams
    finally:
        run.close()
