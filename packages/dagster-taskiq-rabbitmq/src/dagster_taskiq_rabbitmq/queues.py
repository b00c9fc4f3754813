"""The broker's queues: a quorum queue per step queue, with its delivery limit and dead-letter
queue, declared at startup (and before the first send to a queue a message's ``queue`` label
names), and refused when one exists with other arguments.

taskiq-aio-pika 0.6.1 declares quorum queues with a dead-letter exchange but no delivery limit
(RabbitMQ 3.x quorum queues then redeliver a poisoned message forever) and binds them to a topic
exchange; here every queue is reached through the default exchange by its name, and carries:

* ``x-delivery-limit`` = ``max_deliveries - 1``: RabbitMQ counts the *returns* of a message (a
  consumer died, its channel closed, a release) and dead-letters it on the return that passes the
  limit, so it is delivered ``max_deliveries`` times at most;
* ``x-dead-letter-exchange`` = ``""`` (the default exchange) and ``x-dead-letter-routing-key`` =
  its dead-letter queue, with ``x-dead-letter-strategy`` = ``at-least-once`` (a dead letter is
  kept until its dead-letter queue confirms it; this strategy asks for
  ``x-overflow`` = ``reject-publish``, which only matters with a length limit: none is set).

With ``dead_letters_enabled`` false none of these is set: no limit, no dead letters.

RabbitMQ itself refuses a declaration whose arguments differ from the existing queue's
(``PRECONDITION_FAILED - inequivalent arg ...``); that refusal becomes a
:class:`~dagster_taskiq_rabbitmq.errors.RabbitMqConfigurationError` naming the setting behind the
argument.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel
from aiormq.exceptions import ChannelPreconditionFailed

from dagster_taskiq_rabbitmq.errors import RabbitMqConfigurationError
from dagster_taskiq_rabbitmq.settings import RabbitMqSettings

__all__ = ["dead_letter_queue_arguments", "ensure_queue", "queue_arguments"]

_QUORUM = {"x-queue-type": "quorum"}
_SETTING_OF = {
    "x-queue-type": "the queue is not a quorum queue: delete it or use another queue_name",
    "x-delivery-limit": "settings max_deliveries / dead_letters_enabled",
    "x-dead-letter-routing-key": "setting dead_letter_queue_name",
    "x-dead-letter-exchange": "setting dead_letters_enabled",
    "x-dead-letter-strategy": "setting dead_letters_enabled",
    "x-overflow": "setting dead_letters_enabled",
}
_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)'")


def queue_arguments(settings: RabbitMqSettings, queue: str) -> dict[str, Any]:
    """The declaration arguments of step queue ``queue``."""
    arguments: dict[str, Any] = dict(_QUORUM)
    dead = settings.dead_letter_queue_of(queue)
    if dead is not None:
        arguments.update(
            {
                "x-delivery-limit": settings.max_deliveries - 1,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    return arguments


def dead_letter_queue_arguments() -> dict[str, Any]:
    """A dead-letter queue: a quorum queue without limit (a letter read and not acked goes back
    to it, however often)."""
    return dict(_QUORUM)


async def ensure_queue(
    open_channel: Callable[[], Awaitable[AbstractChannel]],
    settings: RabbitMqSettings,
    queue: str,
) -> None:
    """Declare ``queue`` and its dead-letter queue (durable quorum queues), or check that the
    existing ones have the same arguments. Each declaration gets a channel of its own from
    ``open_channel`` (RabbitMQ closes the channel that a refused declaration was sent on)."""
    dead = settings.dead_letter_queue_of(queue)
    if dead is not None:
        await _declare(open_channel, dead, dead_letter_queue_arguments())
    await _declare(open_channel, queue, queue_arguments(settings, queue))


async def _declare(
    open_channel: Callable[[], Awaitable[AbstractChannel]], queue: str, arguments: dict[str, Any]
) -> None:
    channel = await open_channel()
    try:
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    except ChannelPreconditionFailed as exc:
        found = _INEQUIVALENT.search(str(exc))
        hint = _SETTING_OF.get(found.group(1), "") if found else ""
        raise RabbitMqConfigurationError(
            f"queue {queue!r} exists with other arguments than the settings ask for "
            f"({exc}){f'; {hint}' if hint else ''}. Delete the queue, or change the settings "
            f"to match"
        ) from None
    finally:
        if not channel.is_closed:
            await channel.close()
