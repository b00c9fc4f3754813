"""What the core package's tests share: imported as ``support.<module>``.

The tests folder is on pytest's ``pythonpath`` (the root ``pyproject.toml``), so this package and
``chaos`` import by their own names; worker and run processes the tests start get the same folder
on ``PYTHONPATH`` (:data:`TESTS_DIR`) and load the job modules by the same names. The tests folder
itself is no package: a ``tests/__init__.py`` would name every package's tests ``tests.*``, and
pytest's importlib mode would hand one package's ``tests.conftest`` to the next.

* ``store``: the PostgreSQL URL and ``require_postgres``, table prefixes, the claim race;
* ``job_shapes``: jobs of every shape the executor handles, writing a side-effect ledger;
* ``executor_harness``: runs a job with in-process workers and summarises it;
* ``thread_broker``: a taskiq broker on a thread-safe queue (one process);
* ``worker_processes``: real ``dagster-taskiq worker`` processes over SQS, Redis or NATS.

The chaos and soak drivers, their cluster, jobs, ledger and scenarios are in ``chaos``.
"""

from pathlib import Path

TESTS_DIR = str(Path(__file__).resolve().parent.parent)
"""The core package's tests folder: what child processes need on ``PYTHONPATH``."""
