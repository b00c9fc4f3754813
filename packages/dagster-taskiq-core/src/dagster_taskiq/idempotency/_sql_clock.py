"""The database's clock as a SQL expression (Unix seconds), per dialect."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class db_epoch(FunctionElement[float]):  # noqa: N801 - reads like the SQL function it emits
    """``now()`` of the database server as Unix seconds (a DOUBLE)."""

    type = sa.Double()
    inherit_cache = True


@compiles(db_epoch, "postgresql")
def _pg_epoch(element: db_epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # now() is the start of the statement's transaction; every store statement runs in
    # autocommit, so it is the statement's own time, the same everywhere in the statement.
    return "CAST(EXTRACT(EPOCH FROM now()) AS DOUBLE PRECISION)"


@compiles(db_epoch, "sqlite")
def _sqlite_epoch(element: db_epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"
