"""``python -m dagster_taskiq_testing.servers build-localstack``: build LocalStack's env."""

from __future__ import annotations

import sys
import time

from dagster_taskiq_testing.servers.localstack import build_localstack_env


def main(argv: list[str]) -> int:
    if argv[:1] != ["build-localstack"]:
        print("usage: python -m dagster_taskiq_testing.servers build-localstack", file=sys.stderr)
        return 2
    started = time.monotonic()
    python = build_localstack_env(log=sys.stderr)
    print(f"LocalStack env ready: {python} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
