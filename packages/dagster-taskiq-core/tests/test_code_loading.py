"""Code locations: loading a job's code from many worker threads at once, and the allowlist."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dagster_taskiq.code_locations import (
    CodeLocation,
    CodeLocations,
    job_in_module,
)
from dagster_taskiq.errors import CodeLocationError
from dagster_taskiq.payloads import CodePointer

JOB_FILE = """
from dagster import DailyPartitionsDefinition, Definitions, asset, define_asset_job

daily = DailyPartitionsDefinition(start_date="2026-11-01")


@asset(partitions_def=daily)
def numbers() -> int:
    return 1


defs = Definitions(assets=[numbers], jobs=[define_asset_job("numbers_job")])
"""

LOAD_FROM_THREADS = """
import sys, threading, traceback
from dagster_taskiq.code_locations import dagster_pointer, load_job_definition
from dagster_taskiq._dagster_compat import ReconstructableRepository
from dagster_taskiq.payloads import CodePointer

pointer = CodePointer(job_name="numbers_job", python_file=sys.argv[1], attribute="defs")
errors = []
barrier = threading.Barrier(8)

def load():
    job = ReconstructableRepository(dagster_pointer(pointer)).get_reconstructable_job(
        "numbers_job"
    )
    barrier.wait()
    try:
        load_job_definition(job)
    except Exception:
        errors.append(traceback.format_exc())

threads = [threading.Thread(target=load) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors))
print("\\n".join(errors))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_first_load_from_eight_threads_at_once_succeeds(tmp_path: Path, attempt: int) -> None:
    # A fresh interpreter each time: the race is in the very first import of the code location.
    job_file = tmp_path / f"partitioned_{attempt}.py"
    job_file.write_text(textwrap.dedent(JOB_FILE))
    done = subprocess.run(
        [sys.executable, "-c", LOAD_FROM_THREADS, str(job_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines()[0] == "0", done.stdout


def test_job_in_module_resolves_the_job_through_its_definitions(tmp_path: Path) -> None:
    (tmp_path / "numbers_location.py").write_text(textwrap.dedent(JOB_FILE))
    job = job_in_module("numbers_location", "numbers_job", working_directory=str(tmp_path))
    definition = job.get_definition()
    assert definition.name == "numbers_job"
    assert [node.name for node in definition.nodes] == ["numbers"]


def test_a_pointer_outside_the_locations_is_refused_with_the_fix() -> None:
    locations = CodeLocations([CodeLocation(module="job_shapes")])
    pointer = CodePointer(job_name="x", module="os", attribute="system")
    with pytest.raises(CodeLocationError, match=r"serves only \[module job_shapes\]"):
        locations.check(pointer)
