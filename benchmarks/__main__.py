"""Dispatch ``python -m benchmarks <target> [args...]`` to ``benchmarks/bench_<target>.py``."""

from __future__ import annotations

import importlib
import pathlib
import sys


def _targets() -> list[str]:
    here = pathlib.Path(__file__).parent
    return sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    targets = _targets()
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: nox -s bench -- <target> [args...]; targets: {', '.join(targets)}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        return max(
            (importlib.import_module(f"benchmarks.bench_{t}").main([]) for t in targets), default=0
        )
    if name not in targets:
        print(
            f"unknown benchmark target {name!r}; choose one of: {', '.join(targets)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"benchmarks.bench_{name}")
    return int(module.main(rest))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
