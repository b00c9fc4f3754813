"""The benchmark graphs on dagster-celery's ``celery_executor``, for ``bench_celery``.

Kept out of ``dagster_taskiq_examples`` so that the example project never imports dagster-celery
(a dev-group dependency for this benchmark only). Celery workers import this module, so they
run with the repository root on ``PYTHONPATH``.
"""

from dagster import Definitions
from dagster_celery import celery_executor

from dagster_taskiq_examples.bench_jobs import chain_graph, fan_out_graph

celery_defs = Definitions(
    jobs=[
        chain_graph.to_job(name="chain_20_celery", executor_def=celery_executor),
        fan_out_graph.to_job(name="fan_out_50_celery", executor_def=celery_executor),
    ]
)
