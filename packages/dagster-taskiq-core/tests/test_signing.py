"""Signed step messages (``dagster_taskiq.signing``): keys, signatures, refusals, rotation, the
executor's and the worker's key options, and a fuzzed verifier that raises nothing but
``MessageRefusedError``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagster_taskiq import (
    CodePointer,
    ExecutorConfigError,
    ExecutorSettings,
    MessageRefusedError,
    MessageSigner,
    MessageVerifier,
    OpExecutionTask,
    Refusal,
    SigningKey,
    SigningKeyError,
    idempotency_key,
)
from dagster_taskiq.cli import main
from dagster_taskiq.executor._broker_thread import step_message
from dagster_taskiq.signing import (
    LABEL_KEY_ID,
    LABEL_SIGNATURE,
    LABEL_SIGNED_QUEUE,
    keys_from_file,
    keys_from_text,
)

SECRET = "s" * 40
OLD = SigningKey.parse(f"2026-11:{'o' * 40}", source="test")
NEW = SigningKey.parse(f"2026-12:{'n' * 40}", source="test")
TASK = OpExecutionTask(
    run_id="r",
    step_key="s",
    idempotency_key=idempotency_key("r", "s"),
    code=CodePointer(job_name="j", module="m"),
    instance_ref={"__class__": "InstanceRef"},
    created_at=1.5,
)
PAYLOAD = TASK.to_json()


def _refusal(
    verifier: MessageVerifier, labels: dict[str, Any], queue: str, payload: str
) -> Refusal:
    with pytest.raises(MessageRefusedError) as refused:
        verifier.verify(labels, queue, payload)
    assert SECRET not in str(refused.value)
    assert payload not in str(refused.value)
    return refused.value.reason  # type: ignore[no-any-return]


def test_a_signed_message_passes_for_its_queue_only() -> None:
    labels = MessageSigner(NEW).labels("steps.fifo", PAYLOAD)
    verifier = MessageVerifier([NEW])
    verifier.verify(labels, "steps.fifo", PAYLOAD)
    assert _refusal(verifier, labels, "urgent.fifo", PAYLOAD) is Refusal.OTHER_QUEUE


def test_an_altered_payload_or_a_forged_signature_is_refused() -> None:
    labels = MessageSigner(NEW).labels("q", PAYLOAD)
    verifier = MessageVerifier([NEW])
    altered = PAYLOAD.replace('"module": "m"', '"module": "evil"')
    assert altered != PAYLOAD
    assert _refusal(verifier, labels, "q", altered) is Refusal.BAD_SIGNATURE
    forged = {**labels, LABEL_SIGNATURE: "0" * 64}
    assert _refusal(verifier, forged, "q", PAYLOAD) is Refusal.BAD_SIGNATURE
    # changing the queue it claims is changing what was signed
    moved = {**labels, LABEL_SIGNED_QUEUE: "other"}
    assert _refusal(verifier, moved, "other", PAYLOAD) is Refusal.BAD_SIGNATURE


def test_unsigned_and_unknown_key_messages_are_refused() -> None:
    verifier = MessageVerifier([NEW])
    assert _refusal(verifier, {}, "q", PAYLOAD) is Refusal.UNSIGNED
    stranger = SigningKey.parse(f"nobody:{SECRET}", source="test")
    labels = MessageSigner(stranger).labels("q", PAYLOAD)
    assert _refusal(verifier, labels, "q", PAYLOAD) is Refusal.UNKNOWN_KEY
    # a key of a known id but another secret is a forgery, not an unknown key
    impostor = SigningKey(NEW.key_id, b"x" * 40)
    assert (
        _refusal(verifier, MessageSigner(impostor).labels("q", PAYLOAD), "q", PAYLOAD)
        is Refusal.BAD_SIGNATURE
    )


def test_a_rotation_accepts_old_and_new_keys_during_the_overlap_then_the_new_only() -> None:
    old_signed = MessageSigner(OLD).labels("q", PAYLOAD)
    new_signed = MessageSigner(NEW).labels("q", PAYLOAD)
    overlap = MessageVerifier([OLD, NEW])
    overlap.verify(old_signed, "q", PAYLOAD)
    overlap.verify(new_signed, "q", PAYLOAD)
    after = MessageVerifier([NEW])
    after.verify(new_signed, "q", PAYLOAD)
    assert _refusal(after, old_signed, "q", PAYLOAD) is Refusal.UNKNOWN_KEY


def test_the_step_message_carries_the_signature_of_its_exact_payload() -> None:
    message = step_message(TASK, MessageSigner(NEW), "steps.fifo")
    assert message.args == [PAYLOAD]
    assert message.labels[LABEL_KEY_ID] == NEW.key_id
    assert message.labels[LABEL_SIGNED_QUEUE] == "steps.fifo"
    MessageVerifier([NEW]).verify(message.labels, "steps.fifo", message.args[0])
    assert LABEL_SIGNATURE not in step_message(TASK).labels


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (SECRET, "a signing key has an id and a secret"),
        (f"bad id:{SECRET}", "the key id 'bad id' must be"),
        (f":{SECRET}", "the key id '' must be"),
        ("k:short", "has 5 characters, fewer than 32"),
    ],
)
def test_a_malformed_key_names_its_source_and_the_fix_never_the_secret(
    text: str, says: str
) -> None:
    with pytest.raises(SigningKeyError) as error:
        SigningKey.parse(text, source="--signing-key")
    message = str(error.value)
    assert message.startswith("--signing-key: ")
    assert says in message
    assert "KEY_ID:SECRET" in message
    assert SECRET not in message
    assert "short" not in message


def test_a_key_repr_hides_its_secret() -> None:
    assert SECRET not in repr(SigningKey.parse(f"k:{SECRET}", source="t"))


def test_two_keys_with_one_id_are_refused() -> None:
    with pytest.raises(SigningKeyError, match="two different keys have the id '2026-12'"):
        MessageVerifier([NEW, SigningKey(NEW.key_id, b"y" * 40)])


def test_keys_from_text_and_files(tmp_path: Path) -> None:
    assert keys_from_text(f"a:{SECRET}, b:{SECRET}\n# comment\n\nc:{SECRET}", source="t") == [
        SigningKey("a", SECRET.encode()),
        SigningKey("b", SECRET.encode()),
        SigningKey("c", SECRET.encode()),
    ]
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(SigningKeyError, match="holds no key"):
        keys_from_file(empty)
    with pytest.raises(SigningKeyError, match="cannot read"):
        keys_from_file(tmp_path / "missing")


def test_the_executor_signing_key_is_checked_and_named() -> None:
    settings = ExecutorSettings.from_config({"signing_key": f"2026-12:{SECRET}"})
    assert settings.signing_key == SigningKey("2026-12", SECRET.encode())
    assert SECRET not in repr(settings)
    with pytest.raises(ExecutorConfigError, match=r"^signing_key: .*KEY_ID:SECRET"):
        ExecutorSettings.from_config({"signing_key": "no-colon"})


def test_without_signing_key_the_executor_signs_with_the_first_key_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ExecutorSettings.from_config({}).signing_key is None
    monkeypatch.setenv("DAGSTER_TASKIQ_SIGNING_KEY", f"new:{SECRET},old:{SECRET}")
    assert ExecutorSettings.from_config({}).signing_key == SigningKey("new", SECRET.encode())
    monkeypatch.setenv("DAGSTER_TASKIQ_SIGNING_KEY", "broken")
    with pytest.raises(ExecutorConfigError, match=r"^DAGSTER_TASKIQ_SIGNING_KEY: "):
        ExecutorSettings.from_config({})


def _worker(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(
        main,
        ["worker", "--backend", "memory", "-m", "x", "--store-url", "sqlite://", *args],
        env=env,
    )


def test_worker_key_options_refuse_bad_input_before_starting(tmp_path: Path) -> None:
    result = _worker("--require-signed", env={"DAGSTER_TASKIQ_SIGNING_KEY": ""})
    assert result.exit_code == 2
    assert "--require-signed: no signing key given" in result.output
    result = _worker("--signing-key", "abc")
    assert result.exit_code == 2
    assert "--signing-key: a signing key has an id and a secret" in result.output
    result = _worker(env={"DAGSTER_TASKIQ_SIGNING_KEY": "k:short"})
    assert "DAGSTER_TASKIQ_SIGNING_KEY: the secret of key 'k'" in result.output
    result = _worker("--signing-key-file", str(tmp_path / "nope"))
    assert "--signing-key-file: cannot read" in result.output
    assert os.environ.get("DAGSTER_TASKIQ_SIGNING_KEY") is None


# --- the verifier fuzzed: any labels, queue and payload end in a pass or a refusal ---------------

FUZZ = settings(
    max_examples=int(os.environ.get("DAGSTER_TASKIQ_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
label_values = st.one_of(
    st.none(),
    st.text(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(), max_size=3),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.sampled_from([NEW.key_id, OLD.key_id, "q"]),
)
label_sets = st.dictionaries(
    st.sampled_from([LABEL_KEY_ID, LABEL_SIGNATURE, LABEL_SIGNED_QUEUE, "other"]), label_values
)


@FUZZ
@given(labels=label_sets, queue=st.text(), payload=st.text())
def test_the_verifier_raises_only_its_refusal(
    labels: dict[str, Any], queue: str, payload: str
) -> None:
    # passing needs a signature made with an accepted key, which is not guessable
    with pytest.raises(MessageRefusedError) as refused:
        MessageVerifier([OLD, NEW]).verify(labels, queue, payload)
    assert isinstance(refused.value.reason, Refusal)


@FUZZ
@given(data=st.data())
def test_any_change_to_a_signed_message_is_refused(data: st.DataObject) -> None:
    labels = MessageSigner(NEW).labels("q", PAYLOAD)
    name = data.draw(st.sampled_from(sorted(labels)), label="label")
    value = data.draw(label_values.filter(lambda v: v != labels[name]), label="value")
    payload = data.draw(st.one_of(st.just(PAYLOAD), st.text()), label="payload")
    with pytest.raises(MessageRefusedError):
        MessageVerifier([NEW]).verify({**labels, name: value}, "q", payload)
