"""Code pointers: from a Dagster job to the payload, and from the payload back to code.

A worker imports only the code locations it was started with. ``CodeLocations.check`` refuses a
payload that names any other module or file, so a message can never make a worker import
``os`` or anything else outside them: payloads are data, never code.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable

from dagster import JobDefinition

from dagster_taskiq._dagster_compat import (
    DagsterCodePointer,
    FileCodePointer,
    ModuleCodePointer,
    PackageCodePointer,
    ReconstructableJob,
    ReconstructableRepository,
)
from dagster_taskiq.errors import CodeLocationError
from dagster_taskiq.payloads import CodePointer

__all__ = [
    "CodeLocation",
    "CodeLocations",
    "job_in_module",
    "load_job_definition",
    "pointer_for_job",
]


def pointer_for_job(job: ReconstructableJob) -> CodePointer:
    """The payload pointer of a reconstructable job (module or file, attribute, directory)."""
    pointer = job.repository.pointer
    if isinstance(pointer, FileCodePointer):
        return CodePointer(
            job_name=job.job_name,
            python_file=os.path.abspath(pointer.python_file),
            attribute=pointer.fn_name,
            working_directory=pointer.working_directory,
        )
    if isinstance(pointer, ModuleCodePointer):
        return CodePointer(
            job_name=job.job_name,
            module=pointer.module,
            attribute=pointer.fn_name,
            working_directory=pointer.working_directory,
        )
    if isinstance(pointer, PackageCodePointer):
        return CodePointer(
            job_name=job.job_name,
            module=pointer.module,
            attribute=pointer.attribute,
            working_directory=pointer.working_directory,
        )
    raise CodeLocationError(
        f"job {job.job_name!r} is loaded through a {type(pointer).__name__} "
        f"({pointer.describe()}), which workers cannot load: define the job (or the Definitions "
        "object that holds it) at module level and load it by module or file "
        "(`reconstructable(job)`, `dagster job execute -m ...` or `-f ...`)"
    )


def job_in_module(
    module: str, job_name: str, attribute: str = "defs", working_directory: str | None = None
) -> ReconstructableJob:
    """Job ``job_name`` of the ``Definitions`` (or repository) ``attribute`` of ``module``.

    What ``dagster job execute -m module -j job_name`` runs: the job as the Definitions resolve
    it (their default executor included), loadable by workers started with ``-m module``.
    """
    pointer = CodePointer(
        job_name=job_name, module=module, attribute=attribute, working_directory=working_directory
    )
    return ReconstructableRepository(dagster_pointer(pointer)).get_reconstructable_job(job_name)


_LOAD_LOCK = threading.Lock()


def load_job_definition(job: ReconstructableJob) -> JobDefinition:
    """Import ``job``'s code and build its definition, one thread at a time.

    Dagster's code loading is not thread-safe: threads importing a code location at once can
    fail with ``ImportError: No module named '_strptime'`` (seen with a partitioned asset's
    ``DailyPartitionsDefinition``). Dagster caches the result, so later calls are cheap.
    """
    with _LOAD_LOCK:
        return job.get_definition()


def dagster_pointer(pointer: CodePointer) -> DagsterCodePointer:
    """The Dagster code pointer of a payload pointer."""
    if pointer.attribute is None:
        raise CodeLocationError(
            f"code pointer of job {pointer.job_name!r} names no attribute; workers need the "
            "module-level name of the Definitions, repository or job"
        )
    if pointer.python_file is not None:
        return FileCodePointer(
            python_file=pointer.python_file,
            fn_name=pointer.attribute,
            working_directory=pointer.working_directory,
        )
    assert pointer.module is not None
    return ModuleCodePointer(
        module=pointer.module,
        fn_name=pointer.attribute,
        working_directory=pointer.working_directory,
    )


@dataclasses.dataclass(frozen=True)
class CodeLocation:
    """A module (dotted name) or a Python file a worker may import."""

    module: str | None = None
    python_file: str | None = None

    def __post_init__(self) -> None:
        if (self.module is None) == (self.python_file is None):
            raise CodeLocationError("a code location is a module or a python file, not both")
        if self.python_file is not None:
            object.__setattr__(self, "python_file", os.path.realpath(self.python_file))

    def matches(self, pointer: CodePointer) -> bool:
        if self.module is not None:
            return pointer.module == self.module
        return pointer.python_file is not None and (
            os.path.realpath(pointer.python_file) == self.python_file
        )

    def describe(self) -> str:
        return f"module {self.module}" if self.module else f"file {self.python_file}"


class CodeLocations:
    """The allowlist of code a worker serves."""

    def __init__(self, locations: Iterable[CodeLocation]) -> None:
        self.locations = tuple(locations)

    def __repr__(self) -> str:
        return f"CodeLocations({', '.join(loc.describe() for loc in self.locations)})"

    def check(self, pointer: CodePointer) -> None:
        """Raise :class:`CodeLocationError` unless ``pointer`` is one of the locations."""
        if any(location.matches(pointer) for location in self.locations):
            return
        named = f"module {pointer.module}" if pointer.module else f"file {pointer.python_file}"
        served = ", ".join(loc.describe() for loc in self.locations) or "none"
        raise CodeLocationError(
            f"refusing job {pointer.job_name!r} from {named}: this worker serves only "
            f"[{served}]; start a worker with -m/--module or -f/--python-file for it"
        )
