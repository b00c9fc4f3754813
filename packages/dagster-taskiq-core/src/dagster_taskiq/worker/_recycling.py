"""Worker recycling (celery's ``max-tasks-per-child``): after ``max_steps`` steps, or once its
memory passes ``max_memory`` MiB, a worker stops taking messages, finishes the steps it runs and
exits 0, for its supervisor to start a fresh one."""

from __future__ import annotations

import enum
import os
import resource
import sys

__all__ = ["RecycleReason", "resident_mib"]


class RecycleReason(enum.Enum):
    """Why a worker recycles itself."""

    MAX_STEPS = "max_steps"
    """It has run ``max_steps`` steps."""
    MAX_MEMORY = "max_memory"
    """Its resident memory passed ``max_memory`` MiB."""


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mib() -> float:
    """This process's resident memory now, MiB (``/proc/self/statm``; elsewhere its peak)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB
