"""Startup's part on JetStream: the step stream and its durable pull consumer (and the dead-letter
stream and consumer), created when missing or checked when they exist.

taskiq-nats reuses an existing stream whatever its configuration; a stream or consumer that
disagrees with the settings on what the broker relies on (subjects, work-queue retention,
storage, duplicate window; explicit acks, ack wait, max deliveries, filter subject) is a
:class:`~dagster_taskiq_nats.errors.NatsConfigurationError` listing every difference.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from dagster_taskiq_nats.errors import NatsConfigurationError
from dagster_taskiq_nats.settings import NatsSettings, Storage

__all__ = [
    "consumer_config",
    "dead_letter_configs",
    "ensure_consumer",
    "ensure_stream",
    "stream_config",
]


def _storage(settings: NatsSettings) -> StorageType:
    return StorageType.MEMORY if settings.storage is Storage.MEMORY else StorageType.FILE


def stream_config(settings: NatsSettings) -> StreamConfig:
    """The step stream: work-queue retention (an acked message is removed), duplicate window."""
    return StreamConfig(
        name=settings.stream,
        subjects=[settings.subject],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=_storage(settings),
        duplicate_window=settings.deduplication_window,
    )


def consumer_config(settings: NatsSettings) -> ConsumerConfig:
    """The workers' durable pull consumer: explicit acks, ack wait = the visibility timeout."""
    return ConsumerConfig(
        durable_name=settings.consumer,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.visibility_timeout,
        max_deliver=settings.max_deliveries if settings.dead_letter_queue else -1,
        filter_subject=settings.subject,
        deliver_policy=DeliverPolicy.ALL,
    )


def dead_letter_configs(settings: NatsSettings) -> tuple[StreamConfig, ConsumerConfig]:
    """The dead-letter stream (capturing max-deliveries advisories) and its consumer."""
    assert settings.dead_letter_queue is not None
    stream = StreamConfig(
        name=settings.dead_letter_queue,
        subjects=[settings.advisory_subject],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=_storage(settings),
    )
    consumer = ConsumerConfig(
        durable_name=settings.dead_letter_consumer,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.visibility_timeout,
        max_deliver=-1,
        deliver_policy=DeliverPolicy.ALL,
    )
    return stream, consumer


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream ``config`` describes, or check the existing one agrees with it."""
    name = str(config.name)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config=config)
        return
    have = info.config
    differences = []
    for subject in config.subjects or []:
        if subject not in (have.subjects or []):
            differences.append(f"subjects {have.subjects} lack {subject!r}")
    if have.retention != config.retention:
        differences.append(f"retention is {have.retention}, want {config.retention}")
    if have.storage != config.storage:
        differences.append(f"storage is {have.storage}, want {config.storage} (setting storage)")
    if config.duplicate_window and not _close(have.duplicate_window, config.duplicate_window):
        differences.append(
            f"duplicate_window is {have.duplicate_window} s, want {config.duplicate_window} s "
            f"(setting deduplication_window)"
        )
    if differences:
        raise NatsConfigurationError(
            f"stream {name!r} exists with another configuration: {'; '.join(differences)}. "
            f"Delete it, or change the settings to match"
        )


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> None:
    """Create the durable consumer ``config`` describes, or check the existing one."""
    durable = str(config.durable_name)
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        await js.add_consumer(stream, config=config)
        return
    have = info.config
    differences = []
    if have.ack_policy != config.ack_policy:
        differences.append(f"ack_policy is {have.ack_policy}, want {config.ack_policy}")
    if not _close(have.ack_wait, config.ack_wait):
        differences.append(
            f"ack_wait is {have.ack_wait} s, want {config.ack_wait} s (setting visibility_timeout)"
        )
    if (have.max_deliver or -1) != (config.max_deliver or -1):
        differences.append(
            f"max_deliver is {have.max_deliver}, want {config.max_deliver} "
            f"(settings max_deliveries / dead_letters_enabled)"
        )
    if (have.filter_subject or None) != (config.filter_subject or None):
        differences.append(
            f"filter_subject is {have.filter_subject!r}, want {config.filter_subject!r}"
        )
    if differences:
        raise NatsConfigurationError(
            f"consumer {durable!r} of stream {stream!r} exists with another configuration: "
            f"{'; '.join(differences)}. Delete it, or change the settings to match"
        )


def _close(have: float | None, want: float | None) -> bool:
    return abs((have or 0.0) - (want or 0.0)) < 1e-3
