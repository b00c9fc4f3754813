"""Chaos and load testing on real processes, imported as ``chaos.<module>``.

* ``cluster``: a broker and PostgreSQL behind fault proxies, worker processes, runs checked;
* ``jobs``: the test jobs, whose op bodies write the PostgreSQL ledger;
* ``ledger``: reads the ledger and checks a run against the rules (``check_run``);
* ``scenarios``: the fault scenarios (shared by ``test_chaos_slice.py`` and the driver);
* ``chaos_driver``: ``nox -s chaos``, seeded runs of every scenario and their table;
* ``soak_driver``: ``nox -s soak``, the 1,000-step fan-out, 50 concurrent runs, the backlog.

The drivers run as scripts (``python packages/dagster-taskiq-core/tests/chaos/chaos_driver.py``)
and put the tests folder on ``sys.path`` themselves.
"""
