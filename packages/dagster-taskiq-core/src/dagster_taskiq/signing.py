"""Signed step messages: a worker runs only what an executor holding a signing key sent.

The executor signs each step message with an HMAC-SHA256 over the step's payload (the
``OpExecutionTask`` JSON, exactly as sent) and the queue it is sent to; the signature, the key's
id and that queue travel as labels of the TaskIQ message. A worker given signing keys checks a
message before it decodes the payload: unsigned, signed with a key id it does not hold, with a
signature that does not match, or signed for a queue other than the one it was received from,
the message is refused (:class:`Refusal`), never claimed or run. Several keys may be accepted
at once, each under its id, so that keys can be rotated: sign with the new key while workers
accept old and new, then drop the old.

A key is written ``KEY_ID:SECRET``: the id (letters, digits, ``_ . -``; up to 64) is sent with
every message, the secret (at least :data:`MIN_SECRET_LENGTH` characters, e.g.
``openssl rand -hex 32``) never is. See ``docs/security.md`` for what signing protects and what
it does not.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster_taskiq.errors import MessageRefusedError, SigningKeyError

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "LABEL_KEY_ID",
    "LABEL_SIGNATURE",
    "LABEL_SIGNED_QUEUE",
    "MIN_SECRET_LENGTH",
    "MessageSigner",
    "MessageVerifier",
    "Refusal",
    "SigningKey",
    "keys_from_file",
    "keys_from_text",
]

LABEL_KEY_ID = "dagster_taskiq_key_id"
"""The id of the key that signed the message."""
LABEL_SIGNED_QUEUE = "dagster_taskiq_signed_queue"
"""The queue the message was signed for (the name a ``dagster-taskiq/queue`` tag gives it)."""
LABEL_SIGNATURE = "dagster_taskiq_signature"
"""HMAC-SHA256 (hex) of the payload and the queue, with the key named by the key id."""

KEY_ENV = "DAGSTER_TASKIQ_SIGNING_KEY"
"""Keys (``KEY_ID:SECRET``, several separated by commas): a worker accepts them all; an executor
without ``signing_key`` in its config signs with the first (so a rotation puts the new key
first)."""
KEY_FILE_ENV = "DAGSTER_TASKIQ_SIGNING_KEY_FILE"
"""A file of the worker's accepted keys, one a line."""

MIN_SECRET_LENGTH = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DOMAIN = b"dagster-taskiq step v1\x00"
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_FIX = "write it as KEY_ID:SECRET, e.g. 2026-12:$(openssl rand -hex 32)"


class Refusal(enum.Enum):
    """Why a worker refused a step message."""

    UNSIGNED = "unsigned"
    """No signature, while the worker has keys."""
    UNKNOWN_KEY = "unknown_key"
    """Signed with a key id the worker does not accept (not yet, or no longer: rotation)."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not match the payload and queue: altered, or forged."""
    OTHER_QUEUE = "other_queue"
    """Correctly signed, but for another queue than the one it was received from (a replay)."""


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """One key: its id (sent with each message) and its secret (never sent, never shown)."""

    key_id: str
    secret: bytes = dataclasses.field(repr=False)

    @classmethod
    def parse(cls, text: str, *, source: str) -> SigningKey:
        """``KEY_ID:SECRET`` from ``source`` (named in errors, e.g. ``--signing-key``)."""
        key_id, sep, secret = text.strip().partition(":")
        if not sep:
            raise SigningKeyError(f"{source}: a signing key has an id and a secret; {_FIX}")
        if not _KEY_ID.fullmatch(key_id):
            raise SigningKeyError(
                f"{source}: the key id {key_id[:70]!r} must be 1 to 64 letters, digits, '_', '.' "
                f"or '-'; {_FIX}"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise SigningKeyError(
                f"{source}: the secret of key {key_id!r} has {len(secret)} characters, fewer than "
                f"{MIN_SECRET_LENGTH}; {_FIX}"
            )
        return cls(key_id, secret.encode())

    def sign(self, queue: str, payload: str) -> str:
        """The signature (hex) of ``payload`` sent to ``queue``."""
        mac = hmac.new(self.secret, _DOMAIN, hashlib.sha256)
        mac.update(queue.encode("utf-8", "surrogatepass"))
        mac.update(b"\x00")
        mac.update(payload.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()


def keys_from_text(text: str, *, source: str) -> list[SigningKey]:
    """Keys separated by commas or line breaks (blank entries and ``#`` lines ignored)."""
    keys: list[SigningKey] = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        keys.extend(
            SigningKey.parse(entry, source=source) for entry in line.split(",") if entry.strip()
        )
    return keys


def keys_from_file(path: str | Path, *, source: str = "--signing-key-file") -> list[SigningKey]:
    """The keys of a file: one a line (or comma-separated), ``#`` comments."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SigningKeyError(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    keys = keys_from_text(text, source=f"{source} {path}")
    if not keys:
        raise SigningKeyError(f"{source}: {path} holds no key; {_FIX}")
    return keys


class MessageSigner:
    """Signs step messages with one key (the executor's ``signing_key``)."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def labels(self, queue: str, payload: str) -> dict[str, str]:
        """The labels that sign ``payload`` sent to ``queue``."""
        return {
            LABEL_KEY_ID: self.key.key_id,
            LABEL_SIGNED_QUEUE: queue,
            LABEL_SIGNATURE: self.key.sign(queue, payload),
        }


class MessageVerifier:
    """Checks step messages against the keys a worker accepts (several during a rotation)."""

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self.keys: dict[str, SigningKey] = {}
        for key in keys:
            known = self.keys.setdefault(key.key_id, key)
            if known.secret != key.secret:
                raise SigningKeyError(
                    f"two different keys have the id {key.key_id!r}: give each key its own id"
                )
        if not self.keys:
            raise SigningKeyError(f"no signing key given; {_FIX}")

    @property
    def key_ids(self) -> Sequence[str]:
        return sorted(self.keys)

    def verify(self, labels: Mapping[str, Any], queue: str, payload: str) -> None:
        """Return if ``payload``, received from ``queue`` with ``labels``, was signed for that
        queue by an accepted key; else raise :class:`MessageRefusedError` with the reason."""
        key_id = labels.get(LABEL_KEY_ID)
        signature = labels.get(LABEL_SIGNATURE)
        signed_queue = labels.get(LABEL_SIGNED_QUEUE)
        if key_id is None and signature is None:
            raise MessageRefusedError(Refusal.UNSIGNED, "the message carries no signature")
        if not isinstance(key_id, str) or key_id not in self.keys:
            shown = key_id[:70] if isinstance(key_id, str) else type(key_id).__name__
            raise MessageRefusedError(
                Refusal.UNKNOWN_KEY,
                f"signed with key id {shown!r}; this worker accepts {', '.join(self.key_ids)}",
            )
        if (
            not isinstance(signature, str)
            or not isinstance(signed_queue, str)
            or not _HEX_SIGNATURE.fullmatch(signature)
        ):
            raise MessageRefusedError(Refusal.BAD_SIGNATURE, "the signature labels are malformed")
        key = self.keys[key_id]
        if not hmac.compare_digest(key.sign(signed_queue, payload), signature):
            raise MessageRefusedError(
                Refusal.BAD_SIGNATURE,
                f"the signature of key {key_id!r} does not match the message",
            )
        if signed_queue != queue:
            raise MessageRefusedError(
                Refusal.OTHER_QUEUE,
                f"signed for queue {signed_queue[:200]!r}, received from {queue!r}",
            )
