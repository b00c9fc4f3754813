"""Real SQS servers: moto's server in this process or in its own, LocalStack in its own process;
TCP proxies: one that cuts or holds connections, one that counts PostgreSQL round trips."""

from dagster_taskiq_testing.servers._base import SqsServer, boto3_client
from dagster_taskiq_testing.servers.localstack import (
    LOCALSTACK_PINS,
    LocalStackServer,
    build_localstack_env,
    localstack_env_dir,
)
from dagster_taskiq_testing.servers.moto import MotoProcessServer, MotoServer
from dagster_taskiq_testing.servers.pg_counter import PgCountingProxy, PgCounts
from dagster_taskiq_testing.servers.proxy import EndpointProxy

__all__ = [
    "LOCALSTACK_PINS",
    "EndpointProxy",
    "LocalStackServer",
    "MotoProcessServer",
    "MotoServer",
    "PgCountingProxy",
    "PgCounts",
    "SqsServer",
    "boto3_client",
    "build_localstack_env",
    "localstack_env_dir",
]
