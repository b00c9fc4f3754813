"""Helpers shared by the example project's tests."""

from __future__ import annotations

from typing import Any

from dagster_taskiq_examples._cluster import DemoQueue


def executor_config(queue: DemoQueue, store_url: str) -> dict[str, Any]:
    return {
        "broker": {"backend": "sqs", "settings": queue.broker_settings()},
        "store_url": store_url,
        "visibility_timeout": float(queue.visibility_timeout),
        "signing_key": queue.signing_key,
    }
