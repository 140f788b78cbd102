"""Benchmarks, runners and experiments on top of ``strategies`` and ``cl_moo``, in layers that import downward
only (``.importlinter``): ``experiments`` -> ``command_line`` -> ``runners`` -> ``configuration`` -> ``data``."""
