"""The command lines behind ``python -m cl_moo.run`` (flags, sweeps) and ``python -m cl_moo.report``,
and the configuration reference page.

Above :mod:`benchmarks.runners`, below :mod:`benchmarks.experiments`."""
