"""The payload contract: JSON round trips (Hypothesis) and one test per bad-input case."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagster_taskiq import (
    PAYLOAD_VERSION,
    CodePointer,
    DagsterTaskIQError,
    ExecutionResult,
    IdempotencyRecord,
    OpExecutionTask,
    PayloadError,
    TaskState,
    idempotency_key,
)

# Text including non-ASCII characters (which must travel as \uXXXX escapes); no surrogates,
# which cannot be encoded at all.
text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)
opt_text = st.none() | text
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=4e9)
counts = st.integers(min_value=0, max_value=10_000)
json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | text
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
json_object = st.dictionaries(text, json_value, max_size=4)


@st.composite
def code_pointers(draw: st.DrawFn) -> CodePointer:
    module = draw(opt_text)
    return CodePointer(
        job_name=draw(text),
        module=module,
        python_file=draw(text) if module is None else None,
        attribute=draw(opt_text),
        working_directory=draw(opt_text),
    )


@st.composite
def tasks(draw: st.DrawFn) -> OpExecutionTask:
    run_id, step_key = draw(text), draw(text)
    return OpExecutionTask(
        run_id=run_id,
        step_key=step_key,
        idempotency_key=idempotency_key(run_id, step_key),
        code=draw(code_pointers()),
        instance_ref=draw(json_object),
        created_at=draw(finite),
        retry_number=draw(counts),
        enqueue_attempt=draw(counts),
        known_state=draw(st.none() | json_object),
        retry_mode=draw(st.sampled_from(["enabled", "disabled", "deferred"])),
        queue=draw(opt_text),
    )


@st.composite
def results(draw: st.DrawFn, key: str | None = None) -> ExecutionResult:
    state = draw(st.sampled_from([TaskState.COMPLETED, TaskState.FAILED]))
    failed = state is TaskState.FAILED
    return ExecutionResult(
        idempotency_key=key or draw(text),
        state=state,
        attempt=draw(st.integers(min_value=1, max_value=10_000)),
        worker_id=draw(text),
        started_at=draw(finite),
        finished_at=draw(finite),
        error_class=draw(text) if failed else None,
        error_message=draw(opt_text) if failed else None,
        traceback=draw(opt_text) if failed else None,
    )


@st.composite
def records(draw: st.DrawFn) -> IdempotencyRecord:
    run_id, step_key = draw(text), draw(text)
    key = idempotency_key(run_id, step_key)
    return IdempotencyRecord(
        key=key,
        run_id=run_id,
        step_key=step_key,
        state=draw(st.sampled_from(list(TaskState))),
        attempt=draw(counts),
        owner=draw(opt_text),
        lease_until=draw(st.none() | finite),
        created_at=draw(finite),
        updated_at=draw(finite),
        retry_number=draw(counts),
        enqueue_attempt=draw(counts),
        result=draw(st.none() | results(key=key)),
    )


@given(tasks())
def test_task_round_trip(task: OpExecutionTask) -> None:
    raw = task.to_json()
    assert raw.isascii()
    assert OpExecutionTask.from_json(raw) == task
    assert OpExecutionTask.from_json(raw.encode("ascii")) == task


@given(results())
def test_result_round_trip(result: ExecutionResult) -> None:
    raw = result.to_json()
    assert raw.isascii()
    assert ExecutionResult.from_json(raw) == result


@given(records())
def test_record_round_trip(record: IdempotencyRecord) -> None:
    raw = record.to_json()
    assert raw.isascii()
    assert IdempotencyRecord.from_json(raw) == record


def test_non_ascii_travels_as_escapes() -> None:
    task = _task(step_key="caf\u00e9_\u6b65")
    raw = task.to_json()
    assert "caf\\u00e9_\\u6b65" in raw
    assert OpExecutionTask.from_json(raw).step_key == "caf\u00e9_\u6b65"


def test_idempotency_key_is_run_then_step() -> None:
    assert idempotency_key("run-1", "op_a") == "run-1:op_a"
    with pytest.raises(PayloadError, match="run_id"):
        idempotency_key("", "op_a")


def test_payloads_hold_only_json_types() -> None:
    def walk(value: object) -> None:
        assert isinstance(value, str | int | float | bool | list | dict | type(None))
        if isinstance(value, dict):
            for k, v in value.items():
                assert isinstance(k, str)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(_task().to_dict())
    walk(_record().to_dict())


# --- bad input: one test per case, each naming the field ----------------------------------


def _task(**overrides: object) -> OpExecutionTask:
    fields: dict[str, object] = {
        "run_id": "run-1",
        "step_key": "op_a",
        "code": CodePointer(job_name="my_job", module="my_pkg.defs", attribute="defs"),
        "instance_ref": {"__class__": "InstanceRef"},
        "created_at": 1_700_000_000.5,
    }
    fields.update(overrides)
    fields.setdefault("idempotency_key", f"{fields['run_id']}:{fields['step_key']}")
    return OpExecutionTask(**fields)  # type: ignore[arg-type]


def _record() -> IdempotencyRecord:
    return IdempotencyRecord(
        key="run-1:op_a",
        run_id="run-1",
        step_key="op_a",
        state=TaskState.COMPLETED,
        attempt=1,
        owner="w1",
        lease_until=None,
        created_at=1.0,
        updated_at=2.0,
        result=ExecutionResult(
            idempotency_key="run-1:op_a",
            state=TaskState.COMPLETED,
            attempt=1,
            worker_id="w1",
            started_at=1.0,
            finished_at=2.0,
        ),
    )


def _task_dict(**changes: object) -> dict[str, object]:
    data = _task().to_dict()
    data.update(changes)
    return data


def _decode_error(raw: str | bytes) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        OpExecutionTask.from_json(raw)
    return info.value


def test_malformed_json() -> None:
    err = _decode_error('{"run_id": "r1",')
    assert "malformed JSON" in str(err)


def test_nan_is_not_json() -> None:
    raw = _task().to_json().replace("1700000000.5", "NaN")
    assert "NaN is not valid JSON" in str(_decode_error(raw))


def test_json_nested_too_deeply() -> None:
    # Found by the fuzzer (issue 8): json.loads raised RecursionError.
    raw = _task().to_json().replace('"instance_ref": {', '"instance_ref": ' + "[" * 100_000 + "{")
    assert "nested too deeply" in str(_decode_error(raw))


def test_integer_literal_over_pythons_digit_limit() -> None:
    # Found by the fuzzer (issue 8): json.loads raised a bare ValueError.
    raw = _task().to_json().replace("1700000000.5", "1" + "0" * 5000)
    assert "malformed JSON" in str(_decode_error(raw))


def test_integer_too_large_for_a_float() -> None:
    raw = _task().to_json().replace("1700000000.5", "1" + "0" * 400)
    err = _decode_error(raw)
    assert err.field == "created_at"
    assert "too large for a float" in str(err)


@pytest.mark.parametrize("name", ["retry_number", "enqueue_attempt"])
def test_counts_fit_the_stores_integer_columns(name: str) -> None:
    err = _decode_error(json.dumps(_task_dict(**{name: 2**31})))
    assert err.field == name
    assert "must be <= 2147483647" in str(err)


def test_not_an_object() -> None:
    assert "expected a JSON object, got a JSON array" in str(_decode_error("[1, 2]"))


@pytest.mark.parametrize("name", sorted(_task().to_dict()))
def test_missing_field(name: str) -> None:
    data = _task_dict()
    del data[name]
    err = _decode_error(json.dumps(data))
    assert err.field == name
    assert "missing required field" in str(err)


def test_missing_nested_field() -> None:
    data = _task_dict()
    code = dict(data["code"])  # type: ignore[call-overload]
    del code["job_name"]
    err = _decode_error(json.dumps({**data, "code": code}))
    assert err.field == "code.job_name"


def test_extra_field() -> None:
    err = _decode_error(json.dumps(_task_dict(shell="rm -rf /")))
    assert err.field == "shell"
    assert "unexpected field" in str(err)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("run_id", 7, "expected a string, got an integer"),
        ("retry_number", "0", "expected an integer, got a string"),
        ("retry_number", True, "expected an integer, got a boolean"),
        ("enqueue_attempt", 1.5, "expected an integer, got a number"),
        ("created_at", "yesterday", "expected a number, got a string"),
        ("instance_ref", [], "expected a JSON object, got a JSON array"),
        ("known_state", "x", "expected a JSON object, got a string"),
        ("code", "my_pkg:defs", "expected a JSON object, got a string"),
        ("retry_mode", "sometimes", "must be one of 'enabled'"),
        ("idempotency_key", "other:key", "must be '{run_id}:{step_key}'"),
        ("retry_number", -1, "must be >= 0"),
    ],
)
def test_wrong_type_or_value(field: str, value: object, expected: str) -> None:
    err = _decode_error(json.dumps(_task_dict(**{field: value})))
    assert err.field == field
    assert expected in str(err)


def test_wrong_nested_type() -> None:
    data = _task_dict()
    data["code"] = {**data["code"], "module": 3}  # type: ignore[dict-item]
    err = _decode_error(json.dumps(data))
    assert err.field == "code.module"


def test_code_pointer_needs_module_or_file() -> None:
    data = _task_dict()
    data["code"] = {**data["code"], "module": None}  # type: ignore[dict-item]
    err = _decode_error(json.dumps(data))
    assert err.field == "code.module"
    assert "exactly one of 'module' and 'python_file'" in str(err)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unknown_version(version: int) -> None:
    # A payload of another release fails on its version even if it also has new fields.
    err = _decode_error(json.dumps(_task_dict(version=version, new_field_of_v2=1)))
    assert err.field == "version"
    assert f"unknown payload version {version}" in str(err)


def test_version_of_wrong_type() -> None:
    err = _decode_error(json.dumps(_task_dict(version="1")))
    assert err.field == "version"


def test_non_ascii_byte_in_raw_message() -> None:
    raw = _task().to_json().encode("ascii").replace(b"op_a", b"op_\xc3\xa9")
    err = _decode_error(raw)
    assert "non-ASCII byte 0xc3" in str(err)


def test_non_ascii_character_in_raw_text() -> None:
    raw = _task().to_json().replace("op_a", "op_\u00e9")
    assert "non-ASCII character" in str(_decode_error(raw))


def test_result_rules_name_fields() -> None:
    base = _record().result
    assert base is not None
    data = base.to_dict()
    with pytest.raises(PayloadError) as info:
        ExecutionResult.from_dict({**data, "state": "RUNNING"})
    assert info.value.field == "state"
    with pytest.raises(PayloadError) as info:
        ExecutionResult.from_dict({**data, "state": "FAILED"})
    assert info.value.field == "error_class"
    with pytest.raises(PayloadError) as info:
        ExecutionResult.from_dict({**data, "error_message": "boom"})
    assert info.value.field == "error_message"
    with pytest.raises(PayloadError) as info:
        ExecutionResult.from_dict({**data, "attempt": 0})
    assert info.value.field == "attempt"


def test_record_nested_result_errors_name_the_path() -> None:
    data = _record().to_dict()
    data["result"]["worker_id"] = 5
    with pytest.raises(PayloadError) as info:
        IdempotencyRecord.from_dict(data)
    assert info.value.field == "result.worker_id"


def test_record_state_must_be_known() -> None:
    data = {**_record().to_dict(), "state": "DONE"}
    with pytest.raises(PayloadError) as info:
        IdempotencyRecord.from_dict(data)
    assert info.value.field == "state"


def test_non_finite_numbers_refused_at_construction() -> None:
    with pytest.raises(PayloadError) as info:
        _task(created_at=math.inf)
    assert info.value.field == "created_at"


def test_payload_error_is_a_dagster_taskiq_error() -> None:
    assert issubclass(PayloadError, DagsterTaskIQError)
    assert PAYLOAD_VERSION == 1
