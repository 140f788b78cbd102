"""The run configuration: Hydra composition of ``configs/``, presets and validation (:mod:`.config`).

Above :mod:`benchmarks.data` (it checks names against the registry), below the runners."""
