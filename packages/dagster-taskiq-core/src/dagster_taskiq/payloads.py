"""The payload contract shared by the executor, the workers and the idempotency store.

Every payload is a frozen dataclass with ``to_json()`` / ``from_json()``. The wire format is JSON,
ASCII only (``ensure_ascii=True``: non-ASCII text travels as ``\\uXXXX`` escapes), versioned by a
``version`` field, and holds only strings, numbers, booleans, lists, dicts and null: no pickle,
no Dagster objects. Dagster values a worker needs (the instance reference, the known execution
state) travel as the JSON objects Dagster's own ``serialize_value`` produces, and are decoded on
the worker with ``deserialize_value``, which only builds whitelisted Dagster record types.

Decoding never raises a bare ``KeyError``/``TypeError``: every problem is a :class:`PayloadError`
that names the field.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import types
import typing
from typing import Any, Self, TypeVar, Union

from dagster_taskiq.errors import PayloadError

__all__ = [
    "PAYLOAD_VERSION",
    "CodePointer",
    "ExecutionResult",
    "IdempotencyRecord",
    "OpExecutionTask",
    "TaskState",
    "idempotency_key",
]

PAYLOAD_VERSION = 1
"""The only payload version this release reads and writes."""

SUPPORTED_VERSIONS = frozenset({PAYLOAD_VERSION})


STEP_INTERRUPTED = "StepInterrupted"
"""``error_class`` of the result a worker records for a step it gave up because its run is being
cancelled (the run's executor then looks at the run's status at once)."""


class TaskState(enum.StrEnum):
    """Lifecycle of one step's idempotency record: PENDING -> RUNNING -> COMPLETED | FAILED."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (TaskState.COMPLETED, TaskState.FAILED)


def idempotency_key(run_id: str, step_key: str) -> str:
    """The one place the idempotency key of a step is computed: ``{run_id}:{step_key}``."""
    if not run_id:
        raise PayloadError("must be a non-empty string", field="run_id")
    if not step_key:
        raise PayloadError("must be a non-empty string", field="step_key")
    return f"{run_id}:{step_key}"


_T = TypeVar("_T", bound="_Payload")


class _Payload:
    """Shared JSON codec of the payload dataclasses (not public)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The payload as plain JSON-compatible data."""
        encoded = _encode(self)
        assert isinstance(encoded, dict)
        return encoded

    def to_json(self) -> str:
        """ASCII-only JSON text of the payload."""
        return json.dumps(self.to_dict(), ensure_ascii=True, allow_nan=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Validate already-parsed JSON data and build the payload."""
        return _decode_dataclass(cls, data, path="")

    @classmethod
    def from_json(cls, raw: str | bytes | bytearray) -> Self:
        """Decode a raw message; every problem raises :class:`PayloadError` naming the field."""
        if isinstance(raw, bytes | bytearray):
            try:
                text = bytes(raw).decode("ascii")
            except UnicodeDecodeError as exc:
                raise PayloadError(
                    f"non-ASCII byte 0x{raw[exc.start]:02x} at offset {exc.start}; payloads are "
                    "ASCII JSON (non-ASCII text must be \\uXXXX-escaped)"
                ) from None
        elif isinstance(raw, str):
            text = raw
            if not text.isascii():
                offset = next(i for i, ch in enumerate(text) if not ch.isascii())
                raise PayloadError(
                    f"non-ASCII character {text[offset]!r} at offset {offset}; payloads are "
                    "ASCII JSON (non-ASCII text must be \\uXXXX-escaped)"
                )
        else:
            raise PayloadError(f"expected str or bytes, got {type(raw).__name__}")
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise PayloadError(
                f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise PayloadError("malformed JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. an integer literal over Python's digit limit
            raise PayloadError(f"malformed JSON: {exc}") from None
        return cls.from_dict(data)


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"malformed JSON: {name} is not valid JSON")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class CodePointer(_Payload):
    """Where a worker finds the job's code: a module or a Python file, plus an attribute.

    ``attribute`` names the ``Definitions`` / repository / job in that module; ``None`` lets
    Dagster find the single one. ``job_name`` is the job inside it.
    """

    job_name: str
    module: str | None = None
    python_file: str | None = None
    attribute: str | None = None
    working_directory: str | None = None

    def __post_init__(self) -> None:
        _require_text(self.job_name, "job_name")
        if (self.module is None) == (self.python_file is None):
            raise PayloadError(
                "exactly one of 'module' and 'python_file' must be set", field="module"
            )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OpExecutionTask(_Payload):
    """Everything a worker needs to run one step of a run, without asking the run process."""

    run_id: str
    step_key: str
    idempotency_key: str
    code: CodePointer
    instance_ref: dict[str, Any]
    """Dagster's ``InstanceRef`` as produced by ``dagster.serialize_value`` (a JSON object)."""
    created_at: float
    """Unix time (seconds) at which the executor made this task."""
    retry_number: int = 0
    """Dagster's retry number for the step (0 for the first try, +1 per RetryPolicy retry)."""
    enqueue_attempt: int = 0
    """How many times this step was enqueued before for this retry number (re-enqueues)."""
    known_state: dict[str, Any] | None = None
    """Dagster's ``KnownExecutionState`` (dynamic mappings, retries), serialized by Dagster."""
    retry_mode: str = "disabled"
    """Dagster's retry mode value: ``enabled``, ``disabled`` or ``deferred``."""
    queue: str | None = None
    """The queue the step was routed to (op tag ``dagster-taskiq/queue``), informational."""
    timeout: float | None = None
    """Seconds the step may run (op tag ``dagster-taskiq/timeout``); the worker interrupts it
    after. None: no limit."""
    version: int = PAYLOAD_VERSION

    def __post_init__(self) -> None:
        _check_version(self.version)
        _require_text(self.run_id, "run_id")
        _require_text(self.step_key, "step_key")
        expected = idempotency_key(self.run_id, self.step_key)
        if self.idempotency_key != expected:
            raise PayloadError(
                f"must be '{{run_id}}:{{step_key}}' = {expected!r}, got {self.idempotency_key!r}",
                field="idempotency_key",
            )
        _require_non_negative(self.retry_number, "retry_number")
        _require_non_negative(self.enqueue_attempt, "enqueue_attempt")
        _require_finite(self.created_at, "created_at")
        if self.timeout is not None:
            _require_finite(self.timeout, "timeout")
            if self.timeout <= 0:
                raise PayloadError(f"must be > 0 seconds, got {self.timeout}", field="timeout")
        if self.retry_mode not in ("enabled", "disabled", "deferred"):
            raise PayloadError(
                f"must be one of 'enabled', 'disabled', 'deferred', got {self.retry_mode!r}",
                field="retry_mode",
            )


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionResult(_Payload):
    """The recorded outcome of one claimed attempt of a step."""

    idempotency_key: str
    state: TaskState
    attempt: int
    """The fence token of the claim this result belongs to."""
    worker_id: str
    started_at: float
    finished_at: float
    error_class: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    version: int = PAYLOAD_VERSION

    def __post_init__(self) -> None:
        _check_version(self.version)
        _require_text(self.idempotency_key, "idempotency_key")
        _require_text(self.worker_id, "worker_id")
        if not self.state.is_final:
            raise PayloadError(
                f"must be COMPLETED or FAILED, got {self.state.value}", field="state"
            )
        if self.attempt < 1:
            raise PayloadError(f"must be >= 1 (a fence token), got {self.attempt}", field="attempt")
        _require_finite(self.started_at, "started_at")
        _require_finite(self.finished_at, "finished_at")
        if self.state is TaskState.FAILED and not self.error_class:
            raise PayloadError("a FAILED result must name the error class", field="error_class")
        if self.state is TaskState.COMPLETED:
            for name in ("error_class", "error_message", "traceback"):
                if getattr(self, name) is not None:
                    raise PayloadError("must be null for a COMPLETED result", field=name)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class IdempotencyRecord(_Payload):
    """One row of the idempotency store: the fenced state of one step of one run."""

    key: str
    run_id: str
    step_key: str
    state: TaskState
    attempt: int
    """Fence token: incremented by every successful claim, never reset."""
    owner: str | None
    lease_until: float | None
    created_at: float
    updated_at: float
    retry_number: int = 0
    enqueue_attempt: int = 0
    result: ExecutionResult | None = None
    version: int = PAYLOAD_VERSION

    def __post_init__(self) -> None:
        _check_version(self.version)
        expected = idempotency_key(self.run_id, self.step_key)
        if self.key != expected:
            raise PayloadError(f"must be {expected!r}, got {self.key!r}", field="key")
        _require_non_negative(self.attempt, "attempt")
        _require_non_negative(self.retry_number, "retry_number")
        _require_non_negative(self.enqueue_attempt, "enqueue_attempt")
        _require_finite(self.created_at, "created_at")
        _require_finite(self.updated_at, "updated_at")
        if self.lease_until is not None:
            _require_finite(self.lease_until, "lease_until")


# --- validation helpers ---------------------------------------------------------------------


def _check_version(version: int) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise PayloadError(
            f"unknown payload version {version}; this dagster-taskiq reads version(s) "
            f"{sorted(SUPPORTED_VERSIONS)}: run workers and executor of the same release",
            field="version",
        )


def _require_text(value: str, field: str) -> None:
    if not value:
        raise PayloadError("must be a non-empty string", field=field)


MAX_COUNT = 2**31 - 1
"""Largest retry number, enqueue attempt or fence token (the store's integer columns)."""


def _require_non_negative(value: int, field: str) -> None:
    if value < 0:
        raise PayloadError(f"must be >= 0, got {value}", field=field)
    if value > MAX_COUNT:
        raise PayloadError(f"must be <= {MAX_COUNT}, got a larger number", field=field)


def _require_finite(value: float, field: str) -> None:
    if not math.isfinite(value):
        raise PayloadError(f"must be a finite number, got {value}", field=field)


# --- generic codec ----------------------------------------------------------------------------


def _encode(value: object) -> object:
    if isinstance(value, _Payload):
        return {
            f.name: _encode(getattr(value, f.name))
            for f in dataclasses.fields(value)  # type: ignore[arg-type]
        }
    if isinstance(value, enum.Enum):
        return value.value
    return value


_JSON_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    dict: "a JSON object",
    list: "a JSON array",
    type(None): "null",
}


def _json_type_name(value: object) -> str:
    for kind, name in _JSON_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a payload dataclass, in declaration order (cached)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _decode_dataclass(cls: type[_T], data: object, *, path: str) -> _T:
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise PayloadError(
            f"expected a JSON object, got {_json_type_name(data)}", field=path or None
        )
    hints = _field_hints(cls)  # type: ignore[arg-type]
    # The version is checked first so that a payload of another release fails on its version,
    # not on a field that release happens to have added.
    if "version" in hints and "version" in data:
        version = _decode_value(data["version"], int, path=_join(path, "version"))
        _check_version(version)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise PayloadError(
            f"unexpected field(s) in {where}: {', '.join(map(repr, unknown))}",
            field=_join(path, unknown[0]),
        )
    kwargs: dict[str, Any] = {}
    for name in hints:
        if name not in data:
            # The encoder writes every field, so a missing one means a truncated or foreign
            # payload, even where the Python constructor has a default.
            raise PayloadError("missing required field", field=_join(path, name))
        kwargs[name] = _decode_value(data[name], hints[name], path=_join(path, name))
    try:
        return cls(**kwargs)
    except PayloadError as exc:
        if exc.field is not None and path:
            raise PayloadError(exc.reason, field=_join(path, exc.field)) from None
        raise


def _decode_value(value: object, hint: Any, *, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = [o for o in typing.get_args(hint) if o is not type(None)]
        return _decode_value(value, inner, path=path)
    if isinstance(hint, type) and issubclass(hint, _Payload):
        return _decode_dataclass(hint, value, path=path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [m.value for m in hint]
        if not isinstance(value, str) or value not in allowed:
            raise PayloadError(f"must be one of {allowed}, got {value!r}", field=path)
        return hint(value)
    kind = dict if origin is dict else hint
    accepted, expected = _SCALAR_RULES[kind]
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise PayloadError(f"expected {expected}, got {_json_type_name(value)}", field=path)
    if kind is float and isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise PayloadError(
                "must be a finite number, got an integer too large for a float", field=path
            ) from None
    return value


# Python type of a field -> the JSON types accepted for it (never a boolean) and their name.
_SCALAR_RULES: dict[type, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    dict: ((dict,), "a JSON object"),
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
