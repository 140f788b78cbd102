"""The analytic two-quadratics problem shared by the Pareto tests: the "network" outputs its own
parameter vector theta; l_1 = |theta - A|^2, l_2 = |theta - B|^2 (exact front known)."""
import torch
from torch import nn

A = torch.tensor([1.0, 0.0, 0.5])
B = torch.tensor([0.0, 1.0, -0.5])
D = float((A - B).pow(2).sum())


class Point(nn.Module):
    """Target whose output is its own parameter vector theta (one row per input sample)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return self.theta.expand(x.shape[0], -1)


def quad_a(out):
    return (out - A).pow(2).sum(-1).mean()


def quad_b(out):
    return (out - B).pow(2).sum(-1).mean()
