"""The run configuration: the schema of every key (:mod:`.schema`: dataclasses in Hydra's ConfigStore, each key
declared once with its type, default, doc and value rule), and Hydra composition of ``configs/``, presets and
validation (:mod:`.config`).

Above :mod:`benchmarks.data` (it checks names against the registry), below the runners."""
