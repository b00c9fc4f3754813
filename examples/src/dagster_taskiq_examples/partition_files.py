"""An IO manager for partitioned assets that a run may write several partitions of at once.

A single-run backfill materializes a range of partitions in one run, so each step handles
``{partition_key: value}`` for the run's partitions, which Dagster's default filesystem IO
manager cannot store (it takes one partition an output). This one keeps a JSON file per
partition under the instance's storage directory, so workers and the run process on one
machine (or sharing that directory) see the same files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    ConfigurableIOManagerFactory,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
)

__all__ = ["PartitionFiles", "PartitionFilesIOManager"]


class PartitionFilesIOManager(IOManager):
    """``{root}/{asset key path}/{partition key}.json``, one file a partition."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, asset_key: AssetKey, partition_key: str) -> Path:
        return self.root.joinpath(*asset_key.path, f"{partition_key}.json")

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        wanted = sorted(context.asset_partition_keys)
        if not isinstance(obj, dict) or sorted(obj) != wanted:
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise TypeError(
                f"asset {context.asset_key.to_user_string()} must return a dict with one value "
                f"a partition of its run, {wanted}; it returned {got}"
            )
        for partition_key, value in obj.items():
            path = self.path(context.asset_key, partition_key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # written whole or not at all: a worker that dies mid-write leaves the old file
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            partial.write_text(json.dumps(value))
            partial.replace(path)

    def load_input(self, context: InputContext) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for partition_key in context.asset_partition_keys:
            path = self.path(context.asset_key, partition_key)
            try:
                values[partition_key] = json.loads(path.read_text())
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"partition {partition_key} of {context.asset_key.to_user_string()} is not "
                    f"materialized ({path} does not exist): materialize it first"
                ) from None
        return values


class PartitionFiles(ConfigurableIOManagerFactory[PartitionFilesIOManager]):
    """The resource: files under the Dagster instance's storage directory."""

    def create_io_manager(self, context: InitResourceContext) -> PartitionFilesIOManager:
        if context.instance is None:
            raise RuntimeError("PartitionFiles needs a Dagster instance for its directory")
        return PartitionFilesIOManager(Path(context.instance.storage_directory()) / "partitions")
