"""In-memory SQS stub and test helpers for dagster-taskiq."""
