"""Store URLs: accepted forms, driver selection and password masking."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from dagster_taskiq.errors import IdempotencyError

SUPPORTED_BACKENDS = ("postgresql", "sqlite")


def normalize_store_url(url: str | URL) -> URL:
    """Parse a store URL; ``postgresql://`` / ``postgres://`` mean psycopg 3."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        parsed = make_url(text)
    except sa.exc.ArgumentError:
        raise IdempotencyError(
            "store URL could not be parsed: expected e.g. 'sqlite:////path/to/store.db' or "
            "'postgresql://user@host:5432/db'"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise IdempotencyError(
            f"store URL {mask_url(parsed)!r}: backend {backend!r} is not supported; use "
            "'postgresql://...' (production) or 'sqlite:///...' (embedded)"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask_url(url: URL) -> str:
    """The URL with its password replaced by ``***``, safe for logs and errors."""
    return url.render_as_string(hide_password=True)
