"""What every runner writes to its TensorBoard folder besides its curves: the writer that continues a
resumed run's step count, the configuration as text, and HParams (the configuration and the final
metrics, so the runs of a sweep compare in TensorBoard's HParams tab).

* :func:`open_writer`: a resumed run's writer drops, in TensorBoard, whatever the interrupted part wrote
  after the global step of its checkpoint (``purge_step``): no step is shown twice and the curves continue.
* :func:`log_config`: the resolved configuration as YAML in the text tab ``config`` (a new run only; a
  resumed run keeps the text its first part wrote).
* :func:`log_hparams`: the HParams summary written into the run's own event folder (not the timestamped
  subfolder ``SummaryWriter.add_hparams`` makes), with the final metrics as scalars ``final/*``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

HParam = Union[str, float, int]
# the preset tables (the values a run used are in the resolved keys), and the keys that say where and how a
# run reads and shows things (a resumed run is not another hyperparameter setting)
LEFT_OUT = ("benchmark.presets", "resume", "run_dir", "progress", "data.root", "data.download", "data.verify")


def open_writer(folder: Path, resume_step: Optional[int] = None) -> SummaryWriter:
    """A ``SummaryWriter`` on ``folder``. ``resume_step``: the global step of the checkpoint a resumed run
    continues from; events of the interrupted part with a larger step are purged (TensorBoard and
    ``EventAccumulator`` drop them), so the resumed part's steps follow on without duplicates."""
    if resume_step is None:
        # a fresh start in a folder that already holds events (a run killed before its first checkpoint,
        # a sweep job started again): the old events are purged, not shown beside the new ones
        stale = folder.is_dir() and any(folder.glob("events.out.tfevents*"))
        return SummaryWriter(str(folder), purge_step=0 if stale else None)
    return SummaryWriter(str(folder), purge_step=int(resume_step) + 1)


def flat_config(config: Mapping[str, Any], prefix: str = "") -> Dict[str, HParam]:
    """``{"train.lr": 0.001, "target.hidden": "[100, 100]", "run_dir": "null", ...}``: dotted keys, scalar
    values (lists as their text, ``None`` as ``"null"``, booleans as ``"true"``/``"false"``), the preset
    tables left out."""
    out: Dict[str, HParam] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in LEFT_OUT:
            continue
        if isinstance(value, Mapping):
            out.update(flat_config(value, name + "."))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            out[name] = value
        elif value is None:
            out[name] = "null"
        else:
            out[name] = str(list(value)) if isinstance(value, (list, tuple)) else str(value)
    return out


def config_yaml(config: Mapping[str, Any]) -> str:
    """The resolved configuration as YAML, the preset tables left out."""
    from omegaconf import OmegaConf

    def strip(node: Any, prefix: str = "") -> Any:
        if isinstance(node, Mapping):
            return {k: strip(v, f"{prefix}{k}.") for k, v in node.items() if f"{prefix}{k}" not in LEFT_OUT}
        return node

    return OmegaConf.to_yaml(OmegaConf.create(strip(dict(config))))


def log_config(writer: SummaryWriter, config: Mapping[str, Any], notes: str = "") -> None:
    """The text tab ``config``: the resolved configuration in a YAML code block (then ``notes``)."""
    text = f"```yaml\n{config_yaml(config)}```"
    writer.add_text("config", text + (f"\n\n{notes}" if notes else ""), 0)
    writer.flush()


def log_hparams(writer: SummaryWriter, config: Mapping[str, Any], metrics: Mapping[str, Optional[float]],
                step: int) -> None:
    """HParams of this run: the flattened configuration and ``metrics`` (written as scalars
    ``final/<name>`` at ``step``, the values the HParams tab shows), into the writer's own folder."""
    values = {f"final/{name}": math.nan if value is None else float(value) for name, value in metrics.items()}
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)
    experiment, start, end = hparams(flat_config(config), values)
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)
    writer.flush()
