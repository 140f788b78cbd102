"""The experiments: benchmark scripts (``python -m benchmarks.experiments.<name>``), the paper claims and the
generated documentation pages. The top layer of ``benchmarks``: nothing else imports it."""
