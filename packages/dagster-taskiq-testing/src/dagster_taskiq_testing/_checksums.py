"""The MD5 digests SQS returns: of the body, and of the message attributes (AWS's algorithm)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def sha256_of_body(body: str) -> str:
    """The deduplication id a FIFO queue with ``ContentBasedDeduplication`` derives."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _encode(value: bytes) -> bytes:
    return struct.pack("!I", len(value)) + value


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """MD5 over the attributes sorted by name: name, data type, transport type and value,
    each length-prefixed (4 bytes, big-endian), as SQS computes ``MD5OfMessageAttributes``."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        attribute = attributes[name]
        data_type: str = attribute["DataType"]
        digest.update(_encode(name.encode("utf-8")))
        digest.update(_encode(data_type.encode("utf-8")))
        if data_type.startswith("Binary"):
            digest.update(b"\x02")
            digest.update(_encode(bytes(attribute["BinaryValue"])))
        else:
            digest.update(b"\x01")
            digest.update(_encode(str(attribute["StringValue"]).encode("utf-8")))
    return digest.hexdigest()
