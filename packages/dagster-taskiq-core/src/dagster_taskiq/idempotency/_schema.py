"""Tables of the idempotency store, named with a configurable prefix."""

from __future__ import annotations

import dataclasses
import re

import sqlalchemy as sa

from dagster_taskiq.errors import IdempotencyError

SCHEMA_VERSION = 1
"""Version of the tables this release creates and understands."""

SCHEMA_COMPONENT = "idempotency"

_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


@dataclasses.dataclass(frozen=True)
class StoreTables:
    """The store's tables, bound to one :class:`sqlalchemy.MetaData`."""

    metadata: sa.MetaData
    records: sa.Table
    schema_version: sa.Table


def make_tables(prefix: str) -> StoreTables:
    """Build the table objects for ``prefix`` (e.g. ``dagster_taskiq_``)."""
    if not _PREFIX_RE.match(prefix):
        raise IdempotencyError(
            f"table_prefix {prefix!r} is not valid: use lowercase letters, digits and "
            "underscores, starting with a letter or underscore, at most 40 characters"
        )
    metadata = sa.MetaData()
    records = sa.Table(
        f"{prefix}idempotency",
        metadata,
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("step_key", sa.String(768), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("lease_until", sa.Double, nullable=True),
        sa.Column("retry_number", sa.Integer, nullable=False),
        sa.Column("enqueue_attempt", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        # Only the key and the run id are indexed, and neither ever changes: every state
        # transition can then be a HOT update on PostgreSQL (no index writes), which the
        # fillfactor leaves room for. expired() within a run uses the run index.
        sa.Index(f"{prefix}idempotency_run", "run_id"),
        postgresql_with={"fillfactor": 70},
    )
    schema_version = sa.Table(
        f"{prefix}schema_version",
        metadata,
        sa.Column("component", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    return StoreTables(metadata=metadata, records=records, schema_version=schema_version)
