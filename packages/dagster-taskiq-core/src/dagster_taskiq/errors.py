"""The one exception family of dagster-taskiq: every error it raises is a ``DagsterTaskIQError``.

```
DagsterTaskIQError
  SettingsError            a backend's settings are invalid (each SettingProblem names the field)
  ExecutorConfigError      an executor config value is out of range
  BackendNotFoundError     no installed package provides the named broker backend
  CodeLocationError        a job cannot be pointed at, or a payload points outside the worker's code
  PayloadError             a message payload could not be decoded or validated
  SigningKeyError          a signing key is malformed (names where it came from and the fix)
  MessageRefusedError           a step message failed its signature check (``reason``: a Refusal)
  StepTimeoutError         raised in a step that ran past its op tag dagster-taskiq/timeout
  IdempotencyError         the idempotency store's errors
    StoreUnavailableError    its database is unreachable within the retry budget
    SchemaVersionError       its tables come from an incompatible version
  BrokerError              a broker backend's errors
    BrokerUnavailableError   the broker's service is unreachable within the retry budget
    BrokerConfigurationError an existing queue / stream / consumer disagrees with the settings
    AckError                 a message was settled twice, or is no longer this consumer's
```

A backend subclasses these and adds its service's name (``SqsUnavailableError`` is a
``BrokerUnavailableError``); ``AckError`` is one class for every backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class DagsterTaskIQError(Exception):
    """Root of every error raised by dagster-taskiq."""


@dataclasses.dataclass(frozen=True)
class SettingProblem:
    """One invalid setting of a broker backend: the field, the variables it is read from, why."""

    field: str
    env_vars: tuple[str, ...]
    message: str

    @property
    def env_var(self) -> str:
        """The most specific variable the field is read from."""
        return self.env_vars[0]

    def __str__(self) -> str:
        return f"{self.field} ({' / '.join(self.env_vars)}): {self.message}"


class SettingsError(DagsterTaskIQError, ValueError):
    """A backend's settings got invalid values; each problem names the setting and its variable.

    A backend's subclass sets ``service`` (``"Redis"``: "invalid Redis settings: ...").
    """

    service: ClassVar[str] = "broker"

    def __init__(self, problems: list[Any]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"invalid {self.service} settings:\n{lines}")


class ExecutorConfigError(DagsterTaskIQError):
    """An executor config value is out of range."""


class BackendNotFoundError(DagsterTaskIQError):
    """No installed package provides the named broker backend."""


class CodeLocationError(DagsterTaskIQError):
    """A job's code cannot be pointed at, or a payload points outside the worker's locations."""


class PayloadError(DagsterTaskIQError, ValueError):
    """A message payload could not be decoded or validated.

    ``field`` names the offending field (dotted for nested fields) when one is to blame.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class SigningKeyError(DagsterTaskIQError, ValueError):
    """A signing key (executor ``signing_key``, worker ``--signing-key``, a key file, or
    ``DAGSTER_TASKIQ_SIGNING_KEY``) is malformed; the message names where it came from and the
    fix, never the secret."""


class MessageRefusedError(DagsterTaskIQError):
    """A step message the worker will not act on: unsigned, signed with an unknown key, with a
    wrong signature, or signed for another queue (``dagster_taskiq.signing``).

    ``reason`` is a ``dagster_taskiq.signing.Refusal``; the message never holds the key, the
    signature or the body."""

    def __init__(self, reason: Any, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


class IdempotencyError(DagsterTaskIQError):
    """Base class of the idempotency store's errors."""


class StoreUnavailableError(IdempotencyError):
    """The store's database could not be reached within the retry budget."""


class SchemaVersionError(IdempotencyError):
    """The store's tables were created by an incompatible version of dagster-taskiq."""


class BrokerError(DagsterTaskIQError):
    """Base class of the broker backends' errors (each backend's root subclasses it)."""


class BrokerUnavailableError(BrokerError):
    """The broker's service could not be reached within the retry budget."""


class BrokerConfigurationError(BrokerError):
    """An existing queue, stream or consumer disagrees with the settings."""


class AckError(BrokerError):
    """A message could not be settled: settled already (acked, released), or no longer held by
    this consumer (received again by another after its visibility timeout)."""


class StepTimeoutError(DagsterTaskIQError):
    """Raised inside a step that ran longer than its op tag ``dagster-taskiq/timeout`` allows.

    The worker raises it in the step's thread (so it counts against the op's ``RetryPolicy``
    like any error of the op); :meth:`after` makes the class that carries the timeout, since a
    thread can only be sent an exception class, not an instance."""

    seconds: ClassVar[float] = 0.0

    def __str__(self) -> str:
        return (
            f"step timed out: it ran longer than its timeout of {self.seconds:g} s "
            "(op tag dagster-taskiq/timeout)"
        )

    @classmethod
    def after(cls, seconds: float) -> type[StepTimeoutError]:
        """A subclass whose instances say the step ran past ``seconds``."""
        return type(cls.__name__, (cls,), {"seconds": seconds, "__module__": cls.__module__})
