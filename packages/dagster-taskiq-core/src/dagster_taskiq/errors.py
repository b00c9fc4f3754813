"""The exception hierarchy of ``dagster_taskiq``: one root, :class:`DagsterTaskIQError`."""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Mapping
from typing import Any, ClassVar


class DagsterTaskIQError(Exception):
    """Root of every error raised by dagster-taskiq."""


@dataclasses.dataclass(frozen=True)
class SettingProblem:
    """One invalid setting of a broker backend: the field, the variable it is read from, why."""

    field: str
    env_var: str
    message: str

    def __str__(self) -> str:
        return f"{self.field} ({self.env_var}): {self.message}"


class SettingsError(DagsterTaskIQError, ValueError):
    """A backend's settings got invalid values; each problem names the setting and its variable.

    A backend's subclass sets ``service`` (``"Redis"``: "invalid Redis settings: ...").
    """

    service: ClassVar[str] = "broker"

    def __init__(self, problems: list[Any]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"invalid {self.service} settings:\n{lines}")


def validation_problems(
    errors: Iterable[Mapping[str, Any]],
    *,
    env_prefix: str,
    fields: Container[str],
    redacted_field: str | None = None,
) -> list[SettingProblem]:
    """A settings model's validation errors (pydantic's ``errors(include_url=False)``) as problems.

    A field named by its variable (``<PREFIX>FIELD``) is named by the field again; an unknown one
    is "no such setting". The message shows the value given, except a ``redacted_field`` value with
    an ``@`` (credentials in a URL): ``<redacted>``.
    """
    problems = []
    for error in errors:
        field = str(error["loc"][0]) if error["loc"] else ""
        if field.lower().startswith(env_prefix.lower()):
            field = field[len(env_prefix) :].lower()
        known = field in fields
        message = error["msg"]
        if error["type"] != "extra_forbidden":
            shown = error["input"]
            if field == redacted_field and isinstance(shown, str) and "@" in shown:
                shown = "<redacted>"
            message = f"{message}, got {shown!r}"
        env_var = env_prefix + field.upper() if known else "no such setting"
        problems.append(SettingProblem(field, env_var, message))
    return problems


class PayloadError(DagsterTaskIQError, ValueError):
    """A message payload could not be decoded or validated.

    ``field`` names the offending field (dotted for nested fields) when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class IdempotencyError(DagsterTaskIQError):
    """Base class of the idempotency store's errors."""


class StoreUnavailableError(IdempotencyError):
    """The store's database could not be reached within the retry budget."""


class SchemaVersionError(IdempotencyError):
    """The store's tables were created by an incompatible version of dagster-taskiq."""
