"""Benchmarks run by ``uv run nox -s bench -- <target> [<target> ...]``.

Each target is a module ``benchmarks/bench_<target>.py`` with a ``main(argv: list[str]) -> int``.
Benchmarks report ratios against a baseline measured in the same run, never bare numbers alone.
"""
