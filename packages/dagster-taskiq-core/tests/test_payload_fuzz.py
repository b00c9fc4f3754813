"""Fuzzing the payload decoder: whatever arrives, ``from_json`` returns a payload or raises
``PayloadError``, never anything else (issue 8).

Three generators: arbitrary bytes, arbitrary text, and mutations of a valid payload (fields
dropped, replaced by arbitrary JSON values, added, numbers at the edges, deep nesting). The
normal test run tries ``DAGSTER_TASKIQ_FUZZ_EXAMPLES`` examples of each (default 200);
``nox -s chaos`` runs many more (see ``noxfile.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagster_taskiq import CodePointer, OpExecutionTask, PayloadError, idempotency_key

EXAMPLES = int(os.environ.get("DAGSTER_TASKIQ_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID = OpExecutionTask(
    run_id="r",
    step_key="s",
    idempotency_key=idempotency_key("r", "s"),
    code=CodePointer(job_name="j", module="m", attribute="defs"),
    instance_ref={"__class__": "InstanceRef"},
    created_at=1.5,
    known_state={"a": [1, 2]},
).to_dict()

edge_numbers = st.sampled_from(
    [0, -1, 2**63, -(2**63), 10**400, 1e308, -1e308, 1e-320, 0.5, True, False]
)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | edge_numbers
    | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def decode(raw: str | bytes) -> None:
    with contextlib.suppress(PayloadError):  # anything else fails the test
        OpExecutionTask.from_json(raw)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    payload: dict[str, Any] = json.loads(json.dumps(VALID))
    target = payload if draw(st.booleans()) else payload["code"]
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        key = draw(st.sampled_from(sorted(target) or ["x"]))
        if action == "drop":
            target.pop(key, None)
        elif action == "replace":
            target[key] = draw(json_value)
        else:
            target[draw(st.text(max_size=8))] = draw(json_value)
    text = json.dumps(payload)
    if draw(st.booleans()):  # textual edits JSON cannot express: huge literals, nesting, cuts
        edit = draw(
            st.sampled_from(
                [
                    lambda t: t.replace('"created_at": 1.5', '"created_at": 1' + "0" * 5000),
                    lambda t: t.replace('"retry_number": 0', '"retry_number": 1e999'),
                    lambda t: t.replace('"known_state": {', '"known_state": ' + "[" * 5000 + "{"),
                    lambda t: t[: draw(st.integers(0, len(t)))],
                    lambda t: t.replace('"version": 1', '"version": -0'),
                ]
            )
        )
        text = edit(text)
    return text


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    decode(raw)


@FUZZ
@given(st.text(max_size=512))
def test_arbitrary_text(raw: str) -> None:
    decode(raw)


@FUZZ
@given(mutated())
def test_mutated_payloads(raw: str) -> None:
    decode(raw)


def test_the_valid_payload_decodes() -> None:
    assert OpExecutionTask.from_json(json.dumps(VALID)).to_dict() == VALID
