"""Training-health checks: runs that are not learning say so instead of ending quietly.

The measures here are plain tensor functions, cheap enough to run every N steps on the device:

* :class:`DeadUnitProbe`: the fraction of ReLU units of a network that no input of a batch
  activates, per ReLU module (a unit dead on a whole batch gets no gradient; a layer of dead
  units cuts the network off and its accuracy falls to chance);
* :func:`constant_prediction_loss`: the loss of the best prediction that ignores the input (the
  label entropy for cross-entropy, the target variance for the squared error). A training loss
  that stays at this value has learned nothing from the inputs, whatever the number of classes
  present in a task.

:class:`HealthLog` keeps what the monitors found: each finding is warned once (a
:class:`HealthWarning` naming the likely cause and the setting to change) and kept for the
``health`` section of a run's ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type

import torch
from torch import nn

DEAD_UNIT_MODULES: Tuple[Type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)


class HealthWarning(UserWarning):
    """A training-health monitor found a run that is not learning as it should."""


@dataclass
class HealthFinding:
    """One finding: what (``kind``), about what (``subject``), the training iteration it was found at
    (``step``; 0 for a verdict on the finished run), the measured value and the message."""

    kind: str
    subject: str
    message: str
    step: int
    value: float


class HealthLog:
    """The findings of a run's health monitors; each (kind, subject) is warned once.

    ``as_dict()`` is the ``health`` section of ``metrics.json``: ``ok`` (no finding), the
    ``warnings`` (messages) and the ``findings`` with their measured values.
    """

    def __init__(self, *, emit: bool = True, on_finding: Optional[Callable[[str], None]] = None) -> None:
        self.findings: List[HealthFinding] = []
        self.emit = emit  # False: keep findings without a Python warning (a caller that prints them itself)
        self.on_finding = on_finding  # called with each new finding's message (e.g. a run's log)

    def report(self, kind: str, subject: str, message: str, *, step: int, value: float) -> bool:
        """Records and warns a finding; False (nothing done) when this kind and subject were reported before."""
        if any(f.kind == kind and f.subject == subject for f in self.findings):
            return False
        self.findings.append(HealthFinding(kind, subject, message, int(step), float(value)))
        if self.emit:
            warnings.warn(message, HealthWarning, stacklevel=2)
        if self.on_finding is not None:
            self.on_finding(message)
        return True

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "warnings": [f.message for f in self.findings],
            "findings": [asdict(f) for f in self.findings],
        }

    def state_dict(self) -> Dict[str, Any]:
        return {"findings": [asdict(f) for f in self.findings]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.findings = [HealthFinding(**f) for f in state.get("findings", [])]


def constant_prediction_loss(kind: str, targets: torch.Tensor, num_outputs: Optional[int] = None) -> torch.Tensor:
    """Loss of the best input-independent prediction on ``targets`` (a 0-dim tensor, on their device).

    ``kind="cross_entropy"``: the entropy of the label frequencies, ``-sum_c p_c log p_c`` (predicting
    the frequencies; ``log C`` for balanced classes). ``kind="mse"``: the variance of the targets
    per output, averaged over outputs (predicting their mean), as ``nn.MSELoss`` averages.
    """
    if kind == "cross_entropy":
        counts = torch.bincount(targets.reshape(-1).long(), minlength=num_outputs or 0).float()
        p = counts / counts.sum().clamp_min(1.0)
        return -(p * torch.log(p.clamp_min(1e-12))).sum()
    if kind == "mse":
        flat = targets.reshape(len(targets), -1).float()
        return flat.var(dim=0, unbiased=False).mean()
    raise ValueError(f"kind must be 'cross_entropy' or 'mse', got {kind!r}")


class DeadUnitProbe:
    """Dead-unit fraction per ReLU module of ``module`` on one batch (von Oswald et al.'s targets are ReLU MLPs).

    A unit is dead on a batch when none of the batch's inputs activates it: for ``(N, units)``
    outputs each feature, for ``(N, C, ...)`` outputs each channel (over all positions). Use
    ``with probe.recording() as dead: model(x)``; ``dead`` then maps each ReLU module's name to its
    dead fraction (a 0-dim tensor on the module's device: reading it is the only host sync).
    ReLUs called as functions (``torch.relu`` in a ``forward``) are not seen.
    """

    def __init__(self, module: nn.Module) -> None:
        self.layers: List[Tuple[str, nn.Module]] = [
            (name or type(m).__name__, m) for name, m in module.named_modules() if isinstance(m, DEAD_UNIT_MODULES)
        ]

    @contextlib.contextmanager
    def recording(self) -> Iterator[Dict[str, torch.Tensor]]:
        dead: Dict[str, torch.Tensor] = {}

        def hook(name: str):
            def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
                if not torch.is_tensor(output) or output.dim() < 2 or output.shape[0] == 0:
                    return
                active = output.detach() > 0
                if active.dim() > 2:  # (N, C, ...): a channel is a unit
                    active = active.flatten(2).any(dim=2)
                dead[name] = 1.0 - active.any(dim=0).float().mean()

            return record

        handles = [m.register_forward_hook(hook(name)) for name, m in self.layers]
        try:
            yield dead
        finally:
            for h in handles:
                h.remove()
