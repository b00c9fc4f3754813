"""Bad input straight to the queue, code named by payloads, and planted secrets (issue 8, part 4).

One cluster (moto, PostgreSQL store and ledger, two worker processes) receives a corpus of bad
messages sent with a bare SQS client ahead of a valid run. Every bad message must end with a
clear logged reason: rejected at decoding (acked), or claimed and recorded FAILED with the
reason; no worker dies, the queue and its dead-letter queue drain, and the valid run behind them
succeeds with a clean ledger. The cluster's store URL carries a planted password and its AWS
credentials a planted secret key; no log, error, event or payload may show either.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import reconstructable
from taskiq.message import TaskiqMessage

from chaos import jobs as chaos_jobs
from chaos.cluster import Cluster
from dagster_taskiq import (
    CodePointer,
    OpExecutionTask,
    PayloadError,
    TaskState,
    idempotency_key,
)
from dagster_taskiq.code_locations import pointer_for_job
from dagster_taskiq.instances import instance_ref_payload
from dagster_taskiq.messaging import STEP_TASK_NAME
from dagster_taskiq_testing.servers import boto3_client
from support.store import require_postgres

pytestmark = [pytest.mark.sqs_server, pytest.mark.postgres, pytest.mark.slow]

PASSWORD = "Pl4ntedDbPassw0rd" + uuid.uuid4().hex[:8]
AWS_KEY_ID = "AKIAPLANTED" + uuid.uuid4().hex[:8].upper()
AWS_SECRET = "PlantedAwsSecretKey" + uuid.uuid4().hex
SECRETS = (PASSWORD, AWS_SECRET)


@pytest.fixture(scope="module")
def bad_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_postgres()
    root = tmp_path_factory.mktemp("bad-input")
    marker = root / "planted-module-imported"
    planted = root / "planted"
    planted.mkdir()
    # A module that would leave a mark if any worker ever imported it.
    (planted / "planted_payload_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "def system(*args):\n    open(" + repr(str(marker)) + ", 'w').write('called')\n"
    )
    credentials = {"AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in credentials.items():
            mp.setenv(name, value)  # the credential chain, for this (run) process too
        mp.setenv("PYTHONPATH", str(planted))
        with Cluster(
            root,
            workers=2,
            store_password=PASSWORD,
            worker_env=credentials,
            store_url_env="BAD_INPUT_STORE_URL",
        ) as c:
            mp.setenv("BAD_INPUT_STORE_URL", c.store_url)
            assert PASSWORD in c.store_url
            yield {"cluster": c, "marker": marker, "planted": planted}


def _envelope(payload: str, task_name: str = STEP_TASK_NAME, args: list[Any] | None = None) -> str:
    return TaskiqMessage(
        task_id=uuid.uuid4().hex,
        task_name=task_name,
        labels={},
        args=[payload] if args is None else args,
        kwargs={},
    ).model_dump_json()


def _task(c: Cluster, run_id: str, step: str, code: CodePointer) -> OpExecutionTask:
    return OpExecutionTask(
        run_id=run_id,
        step_key=step,
        idempotency_key=idempotency_key(run_id, step),
        code=code,
        instance_ref=instance_ref_payload(c.instance),
        created_at=time.time(),
    )


def _valid_payload(c: Cluster) -> dict[str, Any]:
    run = c.create_run("chaos_chain")
    task = _task(c, run.run_id, "root", pointer_for_job(reconstructable(chaos_jobs.chaos_chain)))
    return task.to_dict()


def _corpus(c: Cluster, planted: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(name, SQS body, expected reason) rejected at decoding; (name, key) claimed and recorded."""
    valid = _valid_payload(c)
    rejected: list[tuple[str, str, str]] = [
        ("malformed JSON body", "{not json", "not a TaskIQ message"),
        ("malformed JSON payload", _envelope("{not json"), "malformed JSON"),
        ("another task's message", _envelope("x", task_name="os.system"), "is not a dagster"),
        ("no payload argument", _envelope("", args=[]), "one string argument"),
        ("payload of a wrong type", _envelope("", args=[{"run_id": 1}]), "one string argument"),
        ("wrong field type", _envelope(json.dumps({**valid, "run_id": 5})), "run_id"),
        (
            "missing field",
            _envelope(json.dumps({k: v for k, v in valid.items() if k != "code"})),
            "missing required field",
        ),
        (
            "unknown version",
            _envelope(json.dumps({**valid, "version": 99})),
            "unknown payload version 99",
        ),
        (
            "non-ASCII characters",
            _envelope(json.dumps(valid, ensure_ascii=False)[:-1] + ', "x": "\u00e9t\u00e9"}'),
            "non-ASCII character",
        ),
        (
            "oversized body (900 KB)",
            _envelope(json.dumps({**valid, "padding": "x" * 900_000})),
            "unexpected field(s)",
        ),
        (
            "idempotency key not run:step",
            _envelope(json.dumps({**valid, "idempotency_key": "other:key"})),
            "idempotency_key",
        ),
    ]
    recorded: list[tuple[str, str]] = []

    def claimable(name: str, task: OpExecutionTask) -> None:
        c.store.ensure_pending(task)
        recorded.append((name, task.idempotency_key))
        rejected_or_sent.append((name, _envelope(task.to_json())))

    rejected_or_sent: list[tuple[str, str]] = []
    run = c.create_run("chaos_chain")
    chain = pointer_for_job(reconstructable(chaos_jobs.chaos_chain))
    claimable(
        "nonexistent job",
        _task(
            c,
            run.run_id,
            "root",
            CodePointer(job_name="no_such_job", module="chaos.jobs", attribute="no_such_job"),
        ),
    )
    claimable("nonexistent step", _task(c, run.run_id, "no_such_step", chain))
    deleted = c.create_run("chaos_chain")
    c.instance.delete_run(deleted.run_id)
    claimable("run deleted", _task(c, deleted.run_id, "root", chain))
    claimable(
        "os:system",
        _task(c, run.run_id, "link_0", CodePointer(job_name="x", module="os", attribute="system")),
    )
    claimable(
        "module outside the locations",
        _task(
            c,
            run.run_id,
            "link_1",
            CodePointer(job_name="x", module="planted_payload_module", attribute="system"),
        ),
    )
    claimable(
        "file outside the locations",
        _task(
            c,
            run.run_id,
            "link_2",
            CodePointer(
                job_name="x",
                python_file=str(planted / "planted_payload_module.py"),
                attribute="system",
            ),
        ),
    )
    return rejected + [(n, b, "") for n, b in rejected_or_sent], recorded


EXPECTED_RECORDED = {
    "nonexistent job": ("DagsterInvariantViolationError", "no_such_job not found"),
    "nonexistent step": ("DagsterExecutionStepNotFoundError", "no_such_step"),
    "run deleted": ("RunNotFound", "does not exist in the instance"),
    "os:system": ("CodeLocationRefused", "refusing job 'x' from module os"),
    "module outside the locations": ("CodeLocationRefused", "from module planted_payload_module"),
    "file outside the locations": ("CodeLocationRefused", "from file"),
}


def _drained(sqs: Any, name: str) -> bool:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"]
        == "0"
        == attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_bad_payloads_are_rejected_or_recorded_and_valid_work_goes_on(
    bad_cluster: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    c: Cluster = bad_cluster["cluster"]
    assert c.workers is not None
    pids_before = sorted(c.workers.pids)
    corpus, recorded = _corpus(c, bad_cluster["planted"])
    sqs = boto3_client(c.moto.endpoint_url)
    deadline = time.monotonic() + 30
    while True:  # the workers create the queue at startup
        try:
            url = sqs.get_queue_url(QueueName=c.target.queue_name)["QueueUrl"]
            break
        except sqs.exceptions.QueueDoesNotExist:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for n, (_name, body, _reason) in enumerate(corpus):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageGroupId=f"bad-{n}",
            MessageDeduplicationId=uuid.uuid4().hex,
        )
    # Valid work behind the corpus.
    result = c.execute("chaos_chain")
    assert result.success, c.logs()[-4000:]
    assert result.check.ok, result.check.describe()
    deadline = time.monotonic() + 60
    while not _drained(sqs, c.target.queue_name):
        assert time.monotonic() < deadline, "bad messages were not all acked"
        time.sleep(0.2)
    assert _drained(sqs, c.target.queue_name.replace(".fifo", "-dlq.fifo"))
    assert sorted(c.workers.pids) == pids_before, "a worker died"
    assert c.workers.exit_codes == []
    logs = c.logs()
    rejections = [
        json.loads(line)
        for line in logs.splitlines()
        if line.startswith("{") and '"message_rejected"' in line
    ]
    for name, _body, reason in corpus:
        if reason:
            assert any(reason in r.get("reason", "") for r in rejections), (name, reason)
    for name, key in recorded:
        deadline = time.monotonic() + 30
        while (record := c.store.get(key)) is None or not record.state.is_final:
            assert time.monotonic() < deadline, f"{name}: never recorded"
            time.sleep(0.1)
        error_class, words = EXPECTED_RECORDED[name]
        assert record.state is TaskState.FAILED, name
        assert record.result is not None
        assert record.result.error_class == error_class, (name, record.result)
        assert words in (record.result.error_message or ""), (name, record.result.error_message)
    # Payloads are data: the planted module was never imported, let alone called.
    assert not bad_cluster["marker"].exists()
    _assert_no_secret(c, capfd)


def _assert_no_secret(c: Cluster, capfd: pytest.CaptureFixture[str]) -> None:
    """Planted secrets appear nowhere: worker logs, this process's output, the event logs,
    the store's records, the run config Dagster stored, or a payload."""
    out, err = capfd.readouterr()
    texts = {"worker logs": c.logs(), "run process output": out + err}
    for run in c.instance.get_runs():
        entries = c.instance.all_logs(run.run_id)
        texts[f"event log of {run.run_id}"] = "\n".join(
            f"{e.user_message} {e.dagster_event and e.dagster_event.event_specific_data}"
            for e in entries
        )
        texts[f"run config of {run.run_id}"] = json.dumps(run.run_config, default=str)
        texts[f"records of {run.run_id}"] = "\n".join(
            r.to_json() for r in c.store.records_for_run(run.run_id)
        )
        task = _task(
            c, run.run_id, "root", pointer_for_job(reconstructable(chaos_jobs.chaos_chain))
        )
        texts[f"a payload of {run.run_id}"] = task.to_json()
    texts["store repr"] = f"{c.store!r} {c.store.masked_url}"
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"a planted secret appears in the {where}"
    assert "***" in c.store.masked_url


def test_secrets_stay_out_of_errors_during_outages(
    bad_cluster: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    """The store's database and SQS both go away mid-run (retries and errors name the URLs)."""
    c: Cluster = bad_cluster["cluster"]

    def outage() -> None:
        time.sleep(0.5)
        c.pg_proxy.kill()
        time.sleep(1.0)
        c.pg_proxy.start()
        c.stop_sqs()
        time.sleep(1.0)
        c.start_sqs()

    import threading  # noqa: PLC0415

    faults = threading.Thread(target=outage)
    faults.start()
    result = c.execute("chaos_fan_out", step_seconds=(0.3, 0.8))
    faults.join()
    assert result.success, c.logs()[-4000:]
    assert result.check.ok, result.check.describe()
    logs = c.logs()
    assert "store_retry" in logs or "sqs_retry" in logs or "retry" in logs
    _assert_no_secret(c, capfd)


def test_the_payload_decoder_raises_only_payload_errors_on_the_corpus(
    bad_cluster: dict[str, Any],
) -> None:
    """Each corpus payload, decoded here directly: a PayloadError naming what is wrong."""
    c: Cluster = bad_cluster["cluster"]
    valid = _valid_payload(c)
    for raw in [
        "{not json",
        json.dumps({**valid, "run_id": 5}),
        json.dumps({**valid, "version": 99}),
        json.dumps({**valid, "padding": "x"}),
        json.dumps(valid, ensure_ascii=False).replace('"root"', '"r\u00f6\u00f6t"'),
        b"\xff\xfe",
        "[]",
        "NaN",
    ]:
        with pytest.raises(PayloadError):
            OpExecutionTask.from_json(raw)
