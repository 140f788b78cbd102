"""Hyperfan init in continual learning (Chang, Flokas & Lipson, ICLR 2020, Sec. 5.2, Fig. 4, App. B.2).

Von Oswald et al.'s task-conditioned hypernetwork with the output regularizer (their Eq. 2) learns the
three 1D regression tasks of :func:`benchmarks.data.regression.regression_1d` in sequence, from each
hypernetwork init of :data:`cl_moo.init.INIT_SCHEMES` and each learning rate of App. B.2, with vanilla
SGD. The hypernetworks are the library's (:func:`cl_moo.build_hypernetwork`, initialised by
:func:`cl_moo.init_hypernetwork`), the target is a :class:`cl_moo.FunctionalTarget`.

Speed: one run of the plain loop (library forward with its input checks, ``OutputRegularizer.penalty``,
``torch.optim.SGD``) cost 2-4 ms per iteration on one contended CPU thread (measured), so the 48 runs x
18,000 iterations would take about an hour; the vectorised step below costs about 13 ms for all 48.
All runs are therefore trained together: the library hypernetwork's own forward (``encoder`` ->
``generate_parts``) is vectorised over the runs' stacked parameters with
``torch.func.vmap(functional_call)``, the target runs every run's weight set in one batched
``FunctionalTarget`` call, the regularizer is Eq. 2 on the stacked outputs, and SGD is
``p <- p - lr_run * grad``. The runs are independent (the summed loss has a block-diagonal Jacobian),
and ``tests/test_paper_claim_hyperfan_cl.py`` checks that this equals a per-run loop with the library's
``hnet(e)`` forward, ``OutputRegularizer.penalty`` and ``p -= lr * grad``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from cl_moo import INIT_SCHEMES, Hypernetwork, build_hypernetwork, make_functional_target, task_embedding_seed
from cl_moo.target import FunctionalTarget

from . import ClaimOutcome

PAPER = "Chang, Flokas & Lipson, ICLR 2020, Sec. 5.2, Fig. 4 and App. B.2"
CLAIM = (
    '"Notably, Kaiming (fan-in) could only be trained from learning rate 10^-5, with losses diverging soon '
    'after initialization using the other learning rates." (App. B.2) and "We observe that the hyperfan '
    "methods produce smaller training losses at initialization and during training, eventually converging "
    'to a smaller loss for each task." (Sec. 5.2, Fig. 4)'
)

#: Hypernetwork inits compared (the paper's Kaiming fan-out init is not among the library's schemes).
INITS: Tuple[str, ...] = tuple(s for s in ("kaiming", "xavier", "hyperfan_in", "hyperfan_out") if s in INIT_SCHEMES)
HYPERFAN: Tuple[str, ...] = ("hyperfan_in", "hyperfan_out")
BASELINES: Tuple[str, ...] = ("kaiming", "xavier")
LEARNING_RATES: Tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)
ONLY_KAIMING_LR = 1e-5  # the one rate the paper could train Kaiming (fan-in) at
BETA_OUTPUT = 0.005  # von Oswald et al.'s beta_output, kept by the paper
EMB_DIM = 2
EMB_HALF_WIDTH = math.sqrt(3.0)  # embeddings ~ U(-sqrt 3, sqrt 3): variance 1
MAIN_HIDDEN = (10, 10)
HNET_HIDDEN = (10, 10)
BATCH = 32
ITERATIONS = 6000  # per task (App. B.2)
RECORD_EVERY = 100  # Fig. 4's resolution
QUICK_ITERATIONS, QUICK_RECORD_EVERY = 40, 10
DIVERGED_ABOVE = 1e3  # a loss above this and above GROWTH x the task's start (or NaN/inf) counts as divergence
GROWTH = 10.0  # an init whose loss STARTS above 1e3 (Kaiming can) has not diverged until it grows 10x
TRAINED_RATIO = 0.5  # a run "trains" when its final / initial loss, averaged over tasks, is at most this

SETTING = (
    "von Oswald et al.'s hypernetwork continual learning on our 3-task 1D regression "
    "(benchmarks/data/regression.py:regression_1d, 100 noisy training points per task, data seed = run seed): "
    f"mainnet 1-{MAIN_HIDDEN[0]}-{MAIN_HIDDEN[1]}-1 ReLU, all of whose weights and biases come from the library's "
    f"MLP hypernetwork (cl_moo.build_hypernetwork, hidden {HNET_HIDDEN[0]}-{HNET_HIDDEN[1]} ReLU, linear head) "
    f"conditioned on a trainable task embedding of size {EMB_DIM} drawn from U(-sqrt3, sqrt3); output regularizer "
    f"(von Oswald Eq. 2) with beta_output {BETA_OUTPUT} against the outputs recorded before each task; earlier "
    f"embeddings frozen; {ITERATIONS} iterations per task, batch {BATCH} (drawn without replacement within a "
    "batch, the same batch sequence for every run of a seed), vanilla SGD, lr in {1e-2, 1e-3, 1e-4, 1e-5}; "
    f"inits {', '.join(INITS)} (cl_moo.init.INIT_SCHEMES) on the same initial draw per (init, seed) across lrs, "
    "hyperfan with the U(-sqrt3, sqrt3) embedding distribution as probe conditions and target gain 2. "
    f"Loss = the current task's MSE on its whole training set, recorded every {RECORD_EVERY} iterations; a run "
    "diverges when a mini-batch loss (task + regularizer) or a recorded loss is NaN/inf or above "
    f"max({DIVERGED_ABOVE:g}, {GROWTH:g} x the task's loss at its start) (it is then frozen and its later records are "
    "missing; the relative part keeps an init whose loss starts above 1e3 from counting as diverged before any "
    "update); a run trains when it did not diverge and its final / initial loss, averaged over the tasks, is at "
    f"most {TRAINED_RATIO}. Best lr per init: fewest diverged seeds, then lowest final loss (end of each task, mean "
    "over tasks and the non-diverged seeds). Departures from the paper: Kaiming fan-out is not compared (the "
    "library has no such scheme); the library draws Kaiming and Xavier weights from normal distributions and the "
    "hyperfan head from a normal (the paper samples uniform distributions of the same variances); Xavier uses gain "
    "1 on every hypernetwork layer; the library's hyperfan variances use the ReLU gain 2 for every generated weight "
    "tensor (the linear output layer too, where Table 1 gives 1) and 1/2 (hyperfan-in) or 1 - fan_in/fan_out "
    "(hyperfan-out) for the biases without Table 1's ReLU factor 2 (cl_moo.init.target_variances); the inputs "
    "are not standardised (x in [-4, 4], hyperfan assumes Var(x) = 1, Sec. 4.1), as in von Oswald et al.'s task; "
    "3 seeds instead of the paper's 15 runs. The 48 runs are trained as one vectorised computation over the "
    "library's hypernetwork (module docstring; tested equal to a per-run loop with cl_moo's OutputRegularizer). "
    "No iterations were cut."
)


# ---------------------------------------------------------------------------------------------- setup
def target_module() -> nn.Module:
    """The mainnet of App. B.2: two hidden ReLU layers of 10 units, one input and one output."""
    return nn.Sequential(
        nn.Linear(1, MAIN_HIDDEN[0]),
        nn.ReLU(),
        nn.Linear(MAIN_HIDDEN[0], MAIN_HIDDEN[1]),
        nn.ReLU(),
        nn.Linear(MAIN_HIDDEN[1], 1),
    )


def task_data(seed: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The training split ``(x (100, 1), y (100, 1))`` of each task of :func:`regression_1d` for ``seed``."""
    from benchmarks.data.regression import regression_1d

    bench: Any = regression_1d(seed=seed)[0]  # an Avalanche benchmark (typed object there)
    out = []
    for exp in bench.train_stream:
        rows = [(r[0], r[1]) for r in exp.dataset]
        out.append((torch.stack([x for x, _ in rows]), torch.stack([y for _, y in rows])))
    return out


def task_embeddings(seed: int, n_tasks: int) -> torch.Tensor:
    """``(n_tasks, EMB_DIM)`` embeddings from U(-sqrt3, sqrt3), one generator per task (App. B.2)."""
    rows = []
    for t in range(n_tasks):
        gen = torch.Generator().manual_seed(task_embedding_seed(seed, t))
        rows.append((torch.rand(EMB_DIM, generator=gen) * 2 - 1) * EMB_HALF_WIDTH)
    return torch.stack(rows)


def build_run_hypernetwork(target: FunctionalTarget, init: str, seed: int) -> Hypernetwork:
    """The library's hypernetwork for one (init, seed), initialised with probes from the embedding law."""
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init {init!r}; choose one of {list(INIT_SCHEMES)}")
    torch.manual_seed(10_007 * seed + INIT_SCHEMES.index(init))
    probe = (torch.rand(256, EMB_DIM) * 2 - 1) * EMB_HALF_WIDTH
    return build_hypernetwork(
        target, EMB_DIM, hidden=HNET_HIDDEN, init=init, probe_conditions=probe, input_range="unbounded"
    )


def batch_plan(seeds: Sequence[int], n_tasks: int, iterations: int, n_train: int) -> torch.Tensor:
    """Mini-batch row indices ``(n_tasks, len(seeds), iterations, BATCH)``, without replacement per batch."""
    if n_train < BATCH:
        raise ValueError(f"each task needs at least {BATCH} training points for a batch, got {n_train}")
    plans = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(1_000_003 + seed)
        plans.append(torch.rand(n_tasks, iterations, n_train, generator=gen).argsort(-1)[..., :BATCH])
    return torch.stack(plans, dim=1)


# ------------------------------------------------------------------------------------ stacked runs
class _Generate(nn.Module):
    """The library hypernetwork's forward without its input checks (which vmap cannot trace):
    ``generate_parts(encoder(cond))`` concatenated, the flat weights ``(k, num_weights)``."""

    def __init__(self, hnet: Hypernetwork) -> None:
        super().__init__()
        self.hnet = hnet

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.hnet.generate_parts(self.hnet.encoder(cond)), dim=-1)


@dataclass
class RunGrid:
    """``M`` independent runs: the stacked hypernetwork parameters, each run's seed index and lr."""

    template: Hypernetwork
    params: Dict[str, torch.Tensor]  # name -> (M, *shape), leaf tensors with gradients
    seed_index: torch.Tensor  # (M,) index into the seeds (data, embeddings, batches)
    lrs: torch.Tensor  # (M,)

    def __post_init__(self) -> None:
        self._generate = _Generate(self.template)
        self._names = [f"hnet.{n}" for n in self.params]

    def generate(self, cond: torch.Tensor, params: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """Flat weights ``(M, k, num_weights)`` of every run for its conditions ``cond`` ``(M, k, EMB_DIM)``."""
        ps = self.params if params is None else params

        def one(p: Dict[str, torch.Tensor], c: torch.Tensor) -> torch.Tensor:
            return functional_call(self._generate, dict(zip(self._names, p.values())), (c,))

        return vmap(one)(ps, cond)


def stack_runs(hnets: Sequence[Hypernetwork], seed_index: Sequence[int], lrs: Sequence[float]) -> RunGrid:
    """Stacks the runs' hypernetworks (copies: the given ones stay as they are)."""
    if not (len(hnets) == len(seed_index) == len(lrs)) or not hnets:
        raise ValueError(
            f"need one seed index and lr per hypernetwork, got {len(hnets)}, {len(seed_index)}, {len(lrs)}"
        )
    if any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
        raise ValueError(f"learning rates must be positive and finite, got {list(lrs)}")
    params, _ = stack_module_state(list(hnets))
    params = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    return RunGrid(hnets[0], params, torch.tensor(list(seed_index)), torch.tensor(list(lrs), dtype=torch.float32))


def output_penalty(flat_prev: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """Von Oswald et al. Eq. 2 per run: ``beta / (T - 1) * sum_t' ||h(e_t') - h*(e_t')||^2``, ``(M,)``."""
    n_prev = flat_prev.shape[1]
    return BETA_OUTPUT / n_prev * (flat_prev - stored).pow(2).sum(dim=(1, 2))


def task_mse(
    target: FunctionalTarget, grid: RunGrid, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Each run's MSE ``(M,)`` with its weights ``flat`` ``(M, W)`` on its inputs ``x``, ``y`` ``(M, N, 1)``."""
    weights = grid.template.layout.split(flat)
    return (target(weights, x) - y).pow(2).mean(dim=(1, 2))


@dataclass
class Trace:
    """What the training of all runs recorded; NaN where a run had diverged."""

    curves: torch.Tensor  # (M, T, points): task MSE on the whole training set, every record_every iterations
    initial: torch.Tensor  # (M, T): at the start of each task
    final: torch.Tensor  # (M, T): at the end of each task
    diverged: torch.Tensor  # (M,) bool
    diverged_at: List[Optional[Tuple[int, int]]]  # (task, iteration) of the divergence


class _Progress:
    """Which runs are still alive (not diverged), where each diverged, and the recorded losses."""

    def __init__(self, m: int, n_tasks: int, points: int) -> None:
        self.limit = torch.full((m,), DIVERGED_ABOVE)  # the current task's divergence bound, per run
        self.alive = torch.ones(m, dtype=torch.bool)
        self.diverged_at: List[Optional[Tuple[int, int]]] = [None] * m
        self.curves = torch.full((m, n_tasks, points), float("nan"))

    def check(self, loss: torch.Tensor, task: int, it: int) -> None:
        """Marks runs whose ``loss`` is NaN/inf or above their bound as diverged (frozen from now)."""
        bad = ~torch.isfinite(loss) | (loss > self.limit)
        for i in torch.nonzero(bad & self.alive).flatten().tolist():
            self.diverged_at[i] = (task, it)
        self.alive.logical_and_(~bad)

    def record(self, loss: torch.Tensor, task: int, point: int, it: int) -> None:
        """Records the full training-set loss; at a task's start it sets the task's divergence bound."""
        if point == 0:
            self.limit = torch.maximum(torch.full_like(loss, DIVERGED_ABOVE), GROWTH * loss.nan_to_num(0.0))
        self.check(loss, task, it)
        self.curves[:, task, point] = torch.where(self.alive, loss, torch.full_like(loss, float("nan")))


def sgd_step(leaves: Sequence[torch.Tensor], total: torch.Tensor, lrs: torch.Tensor, alive: torch.Tensor) -> None:
    """Vanilla SGD ``p <- p - lr_run * grad`` per run; diverged runs stay where they are."""
    grads = torch.autograd.grad(total, list(leaves))
    with torch.no_grad():
        step = torch.where(alive, lrs, torch.zeros_like(lrs))
        for p, g in zip(leaves, grads):
            g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)  # a diverged run's NaNs stay out of p
            p.sub_(step.view(-1, *([1] * (p.dim() - 1))) * g)


def train_runs(
    grid: RunGrid,
    target: FunctionalTarget,
    data: Sequence[Sequence[Tuple[torch.Tensor, torch.Tensor]]],
    embeddings: torch.Tensor,
    plan: torch.Tensor,
    record_every: int,
) -> Trace:
    """Trains every run on the tasks in sequence (von Oswald et al. Sec. 3, vanilla SGD): per iteration the
    current task's mini-batch MSE plus the output regularizer (Eq. 2) on the earlier tasks' frozen embeddings.

    ``data[s][t]``: seed ``s``'s training set of task ``t``; ``embeddings`` ``(S, T, EMB_DIM)``;
    ``plan`` ``(T, S, iterations, BATCH)`` from :func:`batch_plan`.
    """
    n_tasks, _, iterations, _ = plan.shape
    if record_every < 1 or iterations % record_every:
        raise ValueError(f"iterations ({iterations}) must be a positive multiple of record_every ({record_every})")
    si = grid.seed_index
    emb = embeddings[si].clone()  # (M, T, EMB_DIM): each run its own, trained copy
    progress = _Progress(len(grid.lrs), n_tasks, iterations // record_every + 1)
    for t in range(n_tasks):
        x_all = torch.stack([data[s][t][0] for s in range(len(data))])[si]  # (M, N, 1)
        y_all = torch.stack([data[s][t][1] for s in range(len(data))])[si]
        e_t = emb[:, t].clone().requires_grad_(True)
        stored = grid.generate(emb[:, :t]).detach() if t else None  # h*(e_t') of Eq. 2, before task t
        for it in range(iterations + 1):
            if it % record_every == 0:
                with torch.no_grad():
                    full = task_mse(target, grid, grid.generate(e_t.unsqueeze(1))[:, 0], x_all, y_all)
                progress.record(full, t, it // record_every, it)
            if it == iterations:
                break
            idx = plan[t, :, it][si].unsqueeze(-1)  # (M, BATCH, 1)
            conds = e_t.unsqueeze(1) if stored is None else torch.cat([e_t.unsqueeze(1), emb[:, :t]], dim=1)
            flat = grid.generate(conds)
            loss = task_mse(target, grid, flat[:, 0], torch.gather(x_all, 1, idx), torch.gather(y_all, 1, idx))
            if stored is not None:
                loss = loss + output_penalty(flat[:, 1:], stored)
            progress.check(loss.detach(), t, it)
            total = torch.where(progress.alive, loss, torch.zeros_like(loss)).sum()
            sgd_step(list(grid.params.values()) + [e_t], total, grid.lrs, progress.alive)
        emb[:, t] = e_t.detach()
    curves = progress.curves
    return Trace(curves, curves[:, :, 0], curves[:, :, -1], ~progress.alive, progress.diverged_at)


# ------------------------------------------------------------------------------------------ verdict
def _mean(values: Sequence[float]) -> float:
    """The mean, or inf when any value is missing (a diverged seed) or there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if values and len(finite) == len(values) else float("inf")


def run_trains(initial: Sequence[float], final: Sequence[float], diverged: bool) -> bool:
    """A run trains when it did not diverge and its final / initial loss, averaged over tasks, is <= 0.5."""
    if diverged or not all(math.isfinite(v) for v in list(initial) + list(final)):
        return False
    return sum(f / i for i, f in zip(initial, final)) / len(initial) <= TRAINED_RATIO


def best_lr(per_lr: Dict[float, Dict[str, Any]]) -> float:
    """The lr with the fewest diverged seeds, then the lowest final loss (mean over tasks and the other seeds)."""
    if not per_lr:
        raise ValueError("best_lr needs at least one learning rate")
    return min(per_lr, key=lambda lr: (per_lr[lr]["n_diverged"], per_lr[lr]["mean_final_surviving"]))


def _finite_or_none(v: float) -> Optional[float]:
    return v if math.isfinite(v) else None


def _per_seed(trace: Trace, k: int) -> Dict[str, Any]:
    ini, fin = trace.initial[k].tolist(), trace.final[k].tolist()
    div = bool(trace.diverged[k])
    return {
        "initial_per_task": [_finite_or_none(v) for v in ini],
        "final_per_task": [_finite_or_none(v) for v in fin],
        "diverged": div,
        "diverged_at_task_iteration": trace.diverged_at[k],
        "trains": run_trains(ini, fin, div),
        "curve_index": k,
    }


def _means(entry: Dict[str, Any]) -> None:
    """Adds per-task means over all seeds (inf when a seed diverged) and over the seeds that did not diverge."""
    runs = list(entry["seeds"].values())
    entry["n_diverged"] = sum(r["diverged"] for r in runs)
    entry["n_trains"] = sum(r["trains"] for r in runs)
    for key in ("initial", "final"):
        for suffix, chosen in (("", runs), ("_surviving", [r for r in runs if not r["diverged"]])):
            per_task = [
                _mean([float("nan") if r[f"{key}_per_task"][t] is None else r[f"{key}_per_task"][t] for r in chosen])
                for t in range(len(runs[0]["final_per_task"]))
            ]
            entry[f"mean_{key}_per_task{suffix}"] = per_task
            entry[f"mean_{key}{suffix}"] = _mean(per_task)


def summarise(trace: Trace, inits: Sequence[str], lrs: Sequence[float], seeds: Sequence[int]) -> Dict[str, Any]:
    """Per init and lr: each seed's initial/final loss per task, divergence and whether it trains, and means."""
    out: Dict[str, Any] = {init: {lr: {"seeds": {}} for lr in lrs} for init in inits}
    k = 0
    for seed in seeds:  # the runs' order of build_grid
        for init in inits:
            for lr in lrs:
                out[init][lr]["seeds"][seed] = _per_seed(trace, k)
                k += 1
    for init in inits:
        for lr in lrs:
            _means(out[init][lr])
    return out


def _criterion_1(kaiming: Dict[float, Dict[str, Any]], lrs: Sequence[float]) -> Tuple[bool, str]:
    others_fail = all(kaiming[lr]["n_trains"] == 0 for lr in lrs if lr != ONLY_KAIMING_LR)
    at_only = kaiming.get(ONLY_KAIMING_LR)
    met = others_fail and at_only is not None and at_only["n_trains"] == len(at_only["seeds"])
    detail = "; ".join(
        f"lr {lr:g}: diverged {kaiming[lr]['n_diverged']}/{len(kaiming[lr]['seeds'])}, trains "
        f"{kaiming[lr]['n_trains']}/{len(kaiming[lr]['seeds'])}"
        for lr in lrs
    )
    return met, (
        "criterion 1: Kaiming (fan-in) diverges or fails to train (divergence, or final/initial loss averaged over "
        f"tasks > {TRAINED_RATIO}) on every seed at every lr except 1e-5, and trains on every seed at 1e-5 -> "
        f"{'met' if met else 'not met'} ({detail})"
    )


def _compare(summary: Dict[str, Any], best: Dict[str, float], suffix: str) -> Tuple[int, int, List[str]]:
    """Hyperfan vs baseline, per task, initial and final loss at each init's best lr: (wins, total, failures)."""
    wins, total, failures = 0, 0, []
    for key in ("initial", "final"):
        for hf in (i for i in HYPERFAN if i in summary):
            for base in (i for i in BASELINES if i in summary):
                a = summary[hf][best[hf]][f"mean_{key}_per_task{suffix}"]
                b = summary[base][best[base]][f"mean_{key}_per_task{suffix}"]
                for t, (x, y) in enumerate(zip(a, b)):
                    total += 1
                    wins += x < y
                    if not x < y:
                        failures.append(f"{key} task {t + 1}: {hf} {x:.4g} >= {base} {y:.4g}")
    return wins, total, failures


def criteria(summary: Dict[str, Any], best: Dict[str, float], lrs: Sequence[float]) -> Tuple[List[bool], List[str]]:
    """The two criteria of the claim, each met or not, with the numbers behind them."""
    if "kaiming" in summary:
        c1, text1 = _criterion_1(summary["kaiming"], lrs)
    else:
        c1, text1 = False, "criterion 1: Kaiming (fan-in) trains only at lr 1e-5 -> not met (kaiming not compared)"
    wins, total, failures = _compare(summary, best, "")
    c2 = total > 0 and wins == total
    s_wins, s_total, _ = _compare(summary, best, "_surviving")
    best_txt = ", ".join(f"{init} {lr:g} ({summary[init][lr]['n_diverged']} diverged)" for init, lr in best.items())
    text2 = (
        "criterion 2: at each init's best lr (fewest diverged seeds, then lowest final loss), hyperfan-in and "
        "hyperfan-out have a lower initial and a lower final loss on every task than Kaiming and Xavier (mean over "
        f"seeds; a diverged seed makes the mean infinite) -> {'met' if c2 else 'not met'} ({wins}/{total} comparisons; "
        f"best lr: {best_txt}" + (f"; failed: {'; '.join(failures)}" if failures else "") + "; for information, "
        f"with means over the non-diverged seeds only: {s_wins}/{s_total})"
    )
    return [c1, c2], [text1, text2]


# ------------------------------------------------------------------------------------------- figure
def _plot_curves(ax: Any, trace: Trace, summary: Dict[str, Any], best: Dict[str, float], record_every: int) -> None:
    """Panel (a): each init's loss at its best lr, mean +- s.e. over the seeds that did not diverge."""
    n_tasks, points = trace.curves.shape[1], trace.curves.shape[2]
    for init, lr in best.items():
        entry = summary[init][lr]
        idx = [r["curve_index"] for r in entry["seeds"].values() if not r["diverged"]]
        if not idx:
            continue
        curves = trace.curves[idx]  # (S, T, points)
        mean = curves.mean(0)
        se = curves.std(0, unbiased=True) / math.sqrt(len(idx)) if len(idx) > 1 else torch.zeros_like(mean)
        note = (
            f", {entry['n_diverged']} of {len(entry['seeds'])} seeds diverged: not shown" if entry["n_diverged"] else ""
        )
        color = None
        for t in range(n_tasks):
            xs = (t * (points - 1) + torch.arange(points)) * record_every
            (line,) = ax.plot(xs, mean[t], color=color, label=f"{init} (lr {lr:g}{note})" if t == 0 else None)
            color = line.get_color()
            ax.fill_between(xs, (mean[t] - se[t]).clamp_min(1e-12), mean[t] + se[t], color=color, alpha=0.2)
    for t in range(1, n_tasks):
        ax.axvline(t * (points - 1) * record_every, color="grey", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("training iteration (tasks 1-3 in sequence; dashed: task boundary)")
    ax.set_ylabel("current task's training MSE (whole training set)")
    ax.set_title("(a) loss at each init's best lr, mean +- s.e. over seeds (cf. Fig. 4)")
    ax.legend(fontsize=8)


def _plot_lr_sweep(bx: Any, summary: Dict[str, Any], lrs: Sequence[float]) -> None:
    """Panel (b): each seed's final loss (mean over tasks) per init and lr; a diverged seed is an x at the top."""
    for j, (init, per_lr) in enumerate(summary.items()):
        color = f"C{j}"
        for i, lr in enumerate(lrs):
            x = i + (j - (len(summary) - 1) / 2) * 0.15
            runs = list(per_lr[lr]["seeds"].values())
            for k, r in enumerate(runs):
                xk = x + (k - (len(runs) - 1) / 2) * 0.1 / max(len(runs), 1)  # seeds side by side
                if r["diverged"]:
                    bx.plot(xk, 0.97, "x", color=color, transform=bx.get_xaxis_transform(), clip_on=False)
                else:
                    bx.plot(xk, sum(r["final_per_task"]) / len(r["final_per_task"]), "o", color=color, ms=4)
        bx.plot([], [], "o", color=color, label=init)
    bx.plot([], [], "x", color="k", label="diverged seed")
    bx.set_yscale("log")
    bx.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    bx.set_xlabel("learning rate (vanilla SGD)")
    bx.set_ylabel("final training MSE, mean over the 3 tasks")
    bx.set_title("(b) every seed's final loss per init and lr")
    bx.legend(fontsize=8)


def draw_figure(
    path: Path, trace: Trace, summary: Dict[str, Any], best: Dict[str, float], lrs: Sequence[float], record_every: int
) -> None:
    """Fig. 4 mirror: loss curves at each init's best lr (panel a) and the lr sweep (panel b)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [1.7, 1]})
    _plot_curves(ax, trace, summary, best, record_every)
    _plot_lr_sweep(bx, summary, lrs)
    fig.suptitle(
        "Hypernetwork inits in continual learning, 3-task 1D regression (Chang et al. 2020, Fig. 4 / App. B.2)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- run
def build_grid(seeds: Sequence[int], inits: Sequence[str], lrs: Sequence[float]) -> Tuple[RunGrid, FunctionalTarget]:
    """One library hypernetwork per (seed, init), repeated for every lr; runs ordered seed, init, lr."""
    target = make_functional_target(target_module())
    hnets, seed_index, run_lrs = [], [], []
    for s, seed in enumerate(seeds):
        for init in inits:
            hnet = build_run_hypernetwork(target, init, seed)
            for lr in lrs:
                hnets.append(hnet)
                seed_index.append(s)
                run_lrs.append(lr)
    return stack_runs(hnets, seed_index, run_lrs), target


def _summary_line(summary: Dict[str, Any], best: Dict[str, float], met: List[bool], n_seeds: int) -> str:
    kaiming = summary.get("kaiming", {})
    k_div = ", ".join(f"{lr:g}: {e['n_diverged']}/{n_seeds}" for lr, e in kaiming.items())
    at_best = "; ".join(
        f"{init} (lr {lr:g}) initial "
        + "/".join(f"{v:.3g}" for v in summary[init][lr]["mean_initial_per_task"])
        + ", final "
        + "/".join(f"{v:.3g}" for v in summary[init][lr]["mean_final_per_task"])
        for init, lr in best.items()
    )
    return (
        f"Kaiming diverged on (lr: seeds) {k_div}; mean training MSE per task at each init's best lr: {at_best} "
        f"(inf: a seed diverged); criteria met {sum(met)}/2"
    )


def _curves_json(trace: Trace, summary: Dict[str, Any], best: Dict[str, float]) -> Dict[str, Any]:
    """Every seed's recorded losses per task at each init's best lr (None once diverged)."""
    return {
        f"{init}@lr{lr:g}": {
            str(seed): [
                [_finite_or_none(v) for v in trace.curves[r["curve_index"], t].tolist()]
                for t in range(trace.curves.shape[1])
            ]
            for seed, r in summary[init][lr]["seeds"].items()
        }
        for init, lr in best.items()
    }


def run(*, seeds: list, quick: bool, figure: Path) -> ClaimOutcome:
    """Trains every (init, lr, seed) on the three tasks, judges the two criteria and draws the figure."""
    if not seeds:
        raise ValueError("run needs at least one seed")
    iterations, record_every = (QUICK_ITERATIONS, QUICK_RECORD_EVERY) if quick else (ITERATIONS, RECORD_EVERY)
    inits, lrs = list(INITS), list(LEARNING_RATES)
    data = [task_data(seed) for seed in seeds]
    n_tasks, n_train = len(data[0]), len(data[0][0][0])
    embeddings = torch.stack([task_embeddings(seed, n_tasks) for seed in seeds])
    grid, target = build_grid(seeds, inits, lrs)
    trace = train_runs(grid, target, data, embeddings, batch_plan(seeds, n_tasks, iterations, n_train), record_every)
    summary = summarise(trace, inits, lrs, seeds)
    best = {init: best_lr(summary[init]) for init in inits}
    met, checked = criteria(summary, best, lrs)
    draw_figure(figure, trace, summary, best, lrs, record_every)
    numbers = {
        "per_init_lr": {init: {f"{lr:g}": summary[init][lr] for lr in lrs} for init in inits},
        "best_lr": best,
        "curves_at_best_lr": _curves_json(trace, summary, best),
        "criteria_met": met,
    }
    settings = {
        "inits": inits,
        "learning_rates": lrs,
        "iterations_per_task": iterations,
        "record_every": record_every,
        "batch_size": BATCH,
        "beta_output": BETA_OUTPUT,
        "mainnet_hidden": list(MAIN_HIDDEN),
        "hnet_hidden": list(HNET_HIDDEN),
        "embedding_dim": EMB_DIM,
        "embedding_distribution": "U(-sqrt3, sqrt3)",
        "optimizer": "vanilla SGD",
        "diverged_when": f"NaN/inf or above max({DIVERGED_ABOVE:g}, {GROWTH:g} x the task's loss at its start)",
        "trains_when": f"not diverged and final/initial loss, averaged over tasks, <= {TRAINED_RATIO}",
        "n_runs": len(grid.lrs),
    }
    holds: Any = True if all(met) else "partly" if any(met) else False
    return ClaimOutcome(
        holds=holds,
        summary=_summary_line(summary, best, met, len(seeds)),
        numbers=numbers,
        settings=settings,
        checked=checked,
    )
