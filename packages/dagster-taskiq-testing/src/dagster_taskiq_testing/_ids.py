"""Cheap unique ids shaped like SQS's: UUID-formatted message and request ids.

``uuid.uuid4()`` costs microseconds per call; ids only need to be unique and well-formed, so a
random per-process prefix plus a counter is enough (and keeps the stub fast).
"""

from __future__ import annotations

import itertools
import secrets

_PREFIX = secrets.token_hex(10)
_COUNTER = itertools.count(1)
_VARIANT = "89ab"[int(_PREFIX[15], 16) % 4]
_HEAD = f"{_PREFIX[:8]}-{_PREFIX[8:12]}-4{_PREFIX[12:15]}-{_VARIANT}{_PREFIX[16:19]}-"


def new_id() -> str:
    """A new UUID-shaped id (version 4 layout), unique within this process."""
    return f"{_HEAD}{next(_COUNTER):012x}"
