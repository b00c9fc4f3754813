"""A TaskIQ app for ``taskiq worker apps.sqs_worker_app:create_app_broker``.

``taskiq worker`` calls a broker factory function when given one, so the settings are read from
the environment when the worker starts, not when the module is imported.
"""

from __future__ import annotations

import os
import pathlib

from taskiq import AsyncBroker

from dagster_taskiq_sqs import LocalStackSqsBroker, SqsSettings


async def write_line(value: str) -> None:
    with pathlib.Path(os.environ["SQS_WORKER_APP_LEDGER"]).open("a") as ledger:
        ledger.write(value + "\n")


def create_app_broker() -> AsyncBroker:
    broker = LocalStackSqsBroker(SqsSettings())
    broker.register_task(write_line, task_name="tests.write_line")
    return broker
