"""dagster-taskiq: run every step of a Dagster job on long-lived TaskIQ workers."""
