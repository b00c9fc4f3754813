"""Amazon SQS broker for dagster-taskiq."""
