"""Mean-squared-error metrics for Avalanche (0.6 ships accuracy-based ones only).

``MSE_Exp`` / ``MSE_Stream``: mean of ``(y_hat - y)^2`` over an evaluation experience / stream.
``MSEForgetting_Exp``: increase of an experience's MSE since it was first trained
(``MSE_last - MSE_after_training``; positive means forgotten).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from avalanche.evaluation import GenericPluginMetric, Metric
from avalanche.evaluation.metrics.forgetting_bwt import GenericExperienceForgetting


class MeanSquaredError(Metric[float]):
    """Running mean of squared errors over all scalar outputs seen."""

    def __init__(self) -> None:
        self._sum = 0.0
        self._count = 0

    @torch.no_grad()
    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        predicted = predicted.reshape(target.shape).float()
        self._sum += float((predicted - target.float()).pow(2).sum())
        self._count += target.numel()

    def result(self) -> float:
        return self._sum / self._count if self._count else 0.0

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0


class _MSEPluginMetric(GenericPluginMetric[float, MeanSquaredError]):
    def __init__(self, reset_at: str, emit_at: str, name: str) -> None:
        super().__init__(MeanSquaredError(), reset_at=reset_at, emit_at=emit_at, mode="eval")
        self._name = name

    def update(self, strategy) -> None:
        self._metric.update(strategy.mb_output, strategy.mb_y)

    def __str__(self) -> str:
        return self._name


class ExperienceMSE(_MSEPluginMetric):
    def __init__(self) -> None:
        super().__init__("experience", "experience", "MSE_Exp")


class StreamMSE(_MSEPluginMetric):
    def __init__(self) -> None:
        super().__init__("stream", "stream", "MSE_Stream")


class ExperienceMSEForgetting(GenericExperienceForgetting[MeanSquaredError, Dict[int, float], Optional[float]]):
    """Per-experience MSE increase since the experience was trained."""

    def __init__(self) -> None:
        super().__init__(MeanSquaredError())

    def result_key(self, k: int) -> Optional[float]:
        value = self.forgetting.result_key(k=k)
        return None if value is None else -value

    def result(self) -> Dict[int, float]:
        return {k: -v for k, v in self.forgetting.result().items()}

    def metric_update(self, strategy) -> None:
        self._current_metric.update(strategy.mb_output, strategy.mb_y)

    def metric_result(self, strategy) -> float:
        return self._current_metric.result()

    def __str__(self) -> str:
        return "MSEForgetting_Exp"


def mse_metrics(*, experience: bool = True, stream: bool = True, forgetting: bool = True) -> List[GenericPluginMetric]:
    """MSE plugin metrics to pass to an Avalanche ``EvaluationPlugin``."""
    out: List = []
    if experience:
        out.append(ExperienceMSE())
    if stream:
        out.append(StreamMSE())
    if forgetting:
        out.append(ExperienceMSEForgetting())
    return out
