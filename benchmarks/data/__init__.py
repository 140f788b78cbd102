"""Data sets, the benchmark registry and the published numbers: the lowest layer of ``benchmarks``.

Imports nothing from the other ``benchmarks`` subpackages (``.importlinter``, the layers contract)."""
