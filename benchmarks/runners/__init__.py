"""Runners and what a run writes: the three runners, the composition root, run folders, checkpoints,
the time budget, progress, TensorBoard logging, records and figures.

Above :mod:`benchmarks.configuration` and :mod:`benchmarks.data`, below the command line."""
