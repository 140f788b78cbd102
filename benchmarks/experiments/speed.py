"""Speed suite: side-by-side step times, both sides measured in the same process run.

``python -m benchmarks.experiments.speed [--device cpu|cuda] [--only overhead regularizer phn hypnettorch]``

1. overhead: one CL training step (permuted-MNIST paper preset: target MLP 1024-1000-1000-10,
   chunked hypernetwork chunk 78000, hidden 25-25, task embedding 24, chunk embedding 8, batch
   128, no earlier task) vs one plain Adam step of the same target network.
   Also: the CL step's FLOP/s as a fraction of a large matmul's, and the in-run iteration (Avalanche's
   whole loop with its data loader) over the solo step.
2. regularizer: step time with T = 1, 10, 50, 100 earlier tasks, batched regularizer (one
   hypernetwork call) vs a per-task Python loop (the hypnettorch way); T = 100 with a random
   subset of 8 earlier tasks per step; memory of stored vs online targets at T = 100.
   regularizer_mip: the same with MIP's residual theta_0, T = 1 and 10, Gram snapshot vs recorded outputs.
3. phn: 16 rays per step in one batched call vs 16 sequential calls (Adult-sized MLP); EPO vs LS.
4. hypnettorch: its ChunkedHMLP + calc_fix_target_reg step on the same configuration at T = 10,
   run in a subprocess from a separate folder (``pip install --no-deps --target DIR hypnettorch``);
   it is never a dependency of cl_moo.

Each timing: warm-up, then ``--reps`` repetitions; median, min and max in milliseconds. Results go
to ``bench/results/<name>.json`` and a table to stdout. Timings on shared machines are noisy:
read the ratios, which compare sides measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from benchmarks.runners.run_records import write_json

RESULTS = Path("bench/results")
PAPER = dict(hidden=(1000, 1000), chunk_size=78000, hnet_hidden=(25, 25), emb_dim=24, chunk_emb_dim=8, batch=128)


def timeit_interleaved(fns: Dict[str, Callable[[], None]], *, warmup: int, reps: int,
                       device: torch.device) -> Dict[str, Dict[str, float]]:
    """:func:`timeit` of several functions, one call of each per round (drift of a shared machine hits
    them alike, so their ratios hold better than those of back-to-back blocks)."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for round_ in range(warmup + reps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_ >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t), "reps": reps}
            for name, t in times.items()}


def timeit(fn: Callable[[], None], *, warmup: int, reps: int, device: torch.device) -> Dict[str, float]:
    """Median / min / max wall time of ``fn`` in ms after ``warmup`` calls."""
    return timeit_interleaved({"fn": fn}, warmup=warmup, reps=reps, device=device)["fn"]


def target_mlp() -> nn.Sequential:
    h1, h2 = PAPER["hidden"]
    return nn.Sequential(nn.Linear(1024, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 10))


def cl_strategy(device: torch.device, beta: float = 0.1, subset: Optional[int] = None, mip: bool = False,
                fast: object = "auto", **kwargs):
    from cl_moo import HypernetworkOptions
    from strategies import HypernetworkStrategy, build_cl_model

    model = build_cl_model(target_mlp(), emb_dim=PAPER["emb_dim"],
                           hnet_options=HypernetworkOptions(
                               chunk_size=PAPER["chunk_size"], chunk_emb_dim=PAPER["chunk_emb_dim"],
                               hidden=PAPER["hnet_hidden"], activation="elu", mip=mip))
    strategy = HypernetworkStrategy(model=model, lr=1e-4, beta=beta, reg_subset=subset, evaluator=None, device=device,
                                    **kwargs)
    strategy.regularizer.fast = fast
    strategy.model.to(device)
    return strategy


def training_iteration(strategy) -> None:
    """One iteration of Avalanche's training loop (``SGDUpdate.training_epoch``'s body, every plugin
    callback included) on ``strategy.mbatch``, without the data loader."""
    from strategies.iteration_body import iteration_body

    strategy._unpack_minibatch()
    strategy._before_training_iteration()
    iteration_body(strategy)
    strategy._after_training_iteration()


def prepare(strategy, task: int, mode: str = "stored") -> None:
    """Puts the strategy in the state it has while training ``task`` after tasks 0..task-1."""
    model = strategy.model
    model.ensure_tasks(task + 1)
    model.to(strategy.device)
    strategy.current_task = task
    strategy.trained_tasks = list(range(task))
    strategy.regularizer.mode = mode
    strategy.make_optimizer()
    strategy.snapshot_earlier_tasks()
    strategy.is_training = True  # as inside train(): the criterion keeps the task loss for the health monitors


def cl_batch(device: torch.device, task: int = 0):
    x = torch.rand(PAPER["batch"], 1024, device=device)
    y = torch.randint(0, 10, (PAPER["batch"],), device=device)
    return [x, y, torch.full((PAPER["batch"],), task, device=device)]


def loop_penalty(reg, targets, hnet, embeddings, delta=None, generator=None):
    """The per-task loop (hypnettorch's way): one hypernetwork call per earlier task against
    materialised targets ``(T, num_weights)``."""
    index = list(range(len(reg.tasks)))
    if reg.subset is not None and reg.subset < len(index):
        index = torch.randperm(len(index), generator=generator)[: reg.subset].tolist()
    total = 0.0
    for i in index:
        total = total + (hnet.forward_flat(embeddings[i : i + 1].detach()) - targets[i : i + 1]).pow(2).sum()
    return reg.beta / len(index) * total


def bench_overhead(device, warmup, reps) -> Dict:
    strategy = cl_strategy(device)
    prepare(strategy, 0)
    strategy.mbatch = cl_batch(device)
    x, y, _ = strategy.mbatch

    def plain_step(plain: nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(plain(x), y).backward()
        opt.step()

    steps: Dict[str, Callable[[], None]] = {"cl_step": partial(training_iteration, strategy)}
    for name, fused in (("plain_step_default_adam", None), ("plain_step_fused_adam", True)):
        plain = target_mlp().to(device)
        steps[name] = partial(plain_step, plain, torch.optim.Adam(plain.parameters(), lr=1e-4, fused=fused))
    # one step of each per round: the ratios compare steps taken side by side on a shared machine
    timings = timeit_interleaved(steps, warmup=warmup, reps=reps, device=device)
    hnet_step = timings.pop("cl_step")
    plain_steps = timings
    hnet = strategy.model.hnet
    cl = hnet_step["median_ms"]
    flops, peak = step_flops(strategy), matmul_flops_per_s(device)
    achieved = flops / (cl / 1000)
    return {"cl_step": hnet_step, **plain_steps,
            "cl_step_gflop": flops / 1e9, "cl_step_gflop_per_s": achieved / 1e9, "matmul_gflop_per_s": peak / 1e9,
            "cl_step_fraction_of_matmul_peak": achieved / peak,
            **in_run_iteration(device),
            "ratio_vs_default_adam": cl / plain_steps["plain_step_default_adam"]["median_ms"],
            "ratio_vs_fused_adam": cl / plain_steps["plain_step_fused_adam"]["median_ms"],
            "note": "the CL strategy uses fused Adam (cl_moo.make_adam); ratio_vs_fused_adam compares like with like",
            "target": "ratio_vs_fused_adam <= 1.3", "hnet_params": hnet.num_generator_params, "target_weights": hnet.num_weights}


def bench_compile(device, warmup, reps) -> Dict:
    """The CL step (the overhead row's setting) eager and with ``compile=True`` (issue 21 item 2): median
    step times, their ratio, the first compiled step's time (compilation included) and whether it compiled."""
    steps, first_s, compiled = {}, None, None
    for name, compile_step in (("eager", False), ("compiled", True)):
        torch.manual_seed(0)
        strategy = cl_strategy(device, compile=compile_step)
        prepare(strategy, 0)
        strategy.mbatch = cl_batch(device)
        if compile_step:
            start = time.perf_counter()
            training_iteration(strategy)  # compiles the forward (and its backward) on the first call
            first_s, compiled = time.perf_counter() - start, strategy.compiled
        steps[name] = timeit(partial(training_iteration, strategy), warmup=warmup, reps=reps, device=device)
    return {"cl_step_eager": steps["eager"], "cl_step_compiled": steps["compiled"],
            "ratio_compiled_vs_eager": steps["compiled"]["median_ms"] / steps["eager"]["median_ms"],
            "first_compiled_step_s": first_s, "compiled": compiled,
            "mode": "reduce-overhead (CUDA graphs)" if device.type == "cuda" else "default (inductor)"}


def bench_regularizer(device, warmup, reps, tasks=(1, 10, 50, 100)) -> Dict:
    out: Dict = {"steps": {}}
    for T in tasks:
        strategy = cl_strategy(device)
        prepare(strategy, T)
        strategy.mbatch = cl_batch(device, T)
        batched = timeit(partial(training_iteration, strategy), warmup=warmup, reps=reps, device=device)
        reg = strategy.regularizer
        with torch.no_grad():  # what the loop (and hypnettorch) stores: one weight set per task
            targets = strategy.model.hnet.forward_flat(strategy.model.embeddings(reg.tasks))
        original = reg.penalty
        reg.penalty = lambda hnet, embs, delta=None, generator=None: loop_penalty(reg, targets, hnet, embs, delta, generator)
        looped = timeit(partial(training_iteration, strategy), warmup=warmup, reps=reps, device=device)
        reg.penalty = original
        out["steps"][T] = {"batched": batched, "loop": looped, "loop_over_batched": looped["median_ms"] / batched["median_ms"]}
        if T == max(tasks):
            out["memory_stored_outputs_mb"] = targets.numel() * targets.element_size() / 2**20
            out["memory_snapshot_fast_path_mb"] = reg.memory_bytes() / 2**20
            del targets
            strategy.regularizer.subset = 8
            out["subset8"] = timeit(partial(training_iteration, strategy), warmup=warmup, reps=reps, device=device)
            prepare(strategy, T, mode="online")
            out["memory_online_targets_mb"] = strategy.regularizer.memory_bytes() / 2**20
        else:
            del targets
        print(f"  regularizer T={T}: batched {batched['median_ms']:.1f} ms, loop {looped['median_ms']:.1f} ms", flush=True)
        del strategy
    t1 = out["steps"][min(tasks)]["batched"]["median_ms"]
    out["subset8_T%d_over_T1" % max(tasks)] = out["subset8"]["median_ms"] / t1
    out["targets"] = "loop/batched >= 3 at T=50; subset-8 step at T=100 <= 4x step at T=1"
    return out


def bench_regularizer_mip(device, warmup, reps, tasks=(1, 10), far: int = 100) -> Dict:
    """MIP's residual hypernetwork (theta = theta_0 + Delta theta): step time at T = 1 and 10 earlier tasks
    with the default targets (``fast="auto"``: the cheaper form at each T), the Gram head snapshot
    (``fast=True``, also at T = ``far``) and the recorded outputs (``fast=False``); T = 0 (no earlier task,
    no regularizer) gives the step it all adds to."""
    variants = (("auto", "auto"), ("gram", True), ("recorded_outputs", False))
    out: Dict = {"steps": {}}
    strategies, kinds = {}, {}
    for T in (0, *tasks, far):  # T = 0: the same step without a regularizer, for scale
        for name, fast in variants:
            if (T == far and name != "gram") or (T == 0 and name != "auto"):
                continue
            strategy = cl_strategy(device, mip=True, fast=fast)
            prepare(strategy, T)
            strategy.mbatch = cl_batch(device, T)
            strategies[(T, name)] = strategy
            kinds[(T, name)] = type(strategy.regularizer.targets).__name__
    # every variant at every T timed in each round: the T=10 / T=1 ratios compare calls made side by side
    times = timeit_interleaved({key: partial(training_iteration, s) for key, s in strategies.items()},
                               warmup=warmup, reps=reps, device=device)
    for (T, name), timing in times.items():
        out["steps"].setdefault(T, {})[name] = timing
        out["steps"][T][f"{name}_targets"] = kinds[(T, name)]
    for T, row in out["steps"].items():
        print(f"  MIP regularizer T={T}: " + ", ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in row.items()
                                                     if isinstance(v, dict)), flush=True)
    del strategies
    lo, hi = min(tasks), max(tasks)
    for name, _ in variants:
        out[f"{name}_T{hi}_over_T{lo}"] = out["steps"][hi][name]["median_ms"] / out["steps"][lo][name]["median_ms"]
    out[f"gram_T{far}_over_T{lo}"] = out["steps"][far]["gram"]["median_ms"] / out["steps"][lo]["gram"]["median_ms"]
    out[f"auto_T{hi}_over_gram_T{lo}"] = out["steps"][hi]["auto"]["median_ms"] / out["steps"][lo]["gram"]["median_ms"]
    out["target"] = f"step at T={hi} <= 1.2x the step at T={lo}"
    return out


def in_run_iteration(device: torch.device, iterations: Tuple[int, int] = (20, 120), reps: int = 3) -> Dict:
    """Time per iteration of ``strategy.train(experience)`` through Avalanche's whole loop (data loader,
    collation, every callback) on an in-memory permuted task of random images, against the solo step
    (:func:`training_iteration` on one fixed batch) of the same strategy, measured in the same run.

    ``train()`` is timed at two lengths: the difference gives the cost of one more iteration in a run
    (``in_run_marginal``: what a task of thousands of iterations pays per step) and the rest the set-up
    of each experience (``experience_setup_ms``: optimizer, snapshot of earlier tasks, loaders), which a
    run pays once per task. ``in_run_iteration`` is the plain mean at the longer length."""
    from benchmarks.data.avalanche_streams import task_benchmark

    short, long = iterations
    g = torch.Generator().manual_seed(0)
    n = PAPER["batch"] * 40
    x, y = torch.rand(n, 1024, generator=g), torch.randint(0, 10, (n,), generator=g)
    perm = torch.randperm(1024, generator=g)
    bench = task_benchmark([(x, y, perm)], [(x[:256], y[:256], perm)])
    strategy = cl_strategy(device, train_iterations=short, train_mb_size=PAPER["batch"], allow_task_revisit=True)
    strategy.train(bench.train_stream[0])  # warm-up (and the first experience's set-up)
    totals: Dict[int, List[float]] = {short: [], long: []}
    for _ in range(reps):
        for count in (short, long):  # interleaved: drift of a shared machine hits both lengths alike
            strategy.train_iterations = count
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            strategy.train(bench.train_stream[0])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            totals[count].append((time.perf_counter() - t0) * 1000)
    prepare(strategy, 0)
    strategy.mbatch = cl_batch(device)
    solo = timeit(partial(training_iteration, strategy), warmup=2, reps=max(reps, 5), device=device)
    t_short, t_long = statistics.median(totals[short]), statistics.median(totals[long])
    marginal = (t_long - t_short) / (long - short)
    per_iteration = [t / long for t in totals[long]]
    in_run = {"median_ms": statistics.median(per_iteration), "min_ms": min(per_iteration),
              "max_ms": max(per_iteration), "reps": reps, "iterations": long}
    return {"in_run_iteration": in_run, "in_run_marginal_ms": marginal,
            "experience_setup_ms": t_short - short * marginal, "train_ms_at": {str(k): v for k, v in totals.items()},
            "solo_step": solo, "in_run_over_solo": marginal / solo["median_ms"],
            "in_run_mean_over_solo": in_run["median_ms"] / solo["median_ms"],
            "in_run_target": "in_run_over_solo <= 1.1 (per extra iteration; the set-up is reported apart)"}


def matmul_flops_per_s(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of one large float32 matmul (``n x n @ n x n``): the machine's practical peak here."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    t = timeit(lambda: a @ b, warmup=2, reps=reps, device=device)
    return 2 * n**3 / (t["median_ms"] / 1000)


def step_flops(strategy) -> int:
    """FLOPs of one training iteration, as torch's FLOP counter counts them (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        training_iteration(strategy)
    return int(counter.get_total_flops())


def bench_phn(device, warmup, reps, rays: int = 16) -> Dict:
    from strategies import ParetoHypernetworkStrategy
    from benchmarks.data.fairness import FAIRNESS_LOSSES

    torch.manual_seed(0)
    n_features, n = 108, 512
    x = torch.randn(n, n_features, device=device)
    y = (torch.rand(n, device=device) > 0.7).float()
    s = (torch.rand(n, device=device) > 0.5).float()
    batch = [x, y, s]
    out: Dict = {}
    for solver in ("ls", "epo"):
        module = nn.Sequential(nn.Linear(n_features, 60), nn.ReLU(), nn.Linear(60, 25), nn.ReLU(), nn.Linear(25, 1))
        phn = ParetoHypernetworkStrategy(target=module, losses=FAIRNESS_LOSSES, solver=solver, rays_per_step=rays, device=device)
        out[f"{solver}_batched_{rays}_rays"] = timeit(lambda: phn.training_step(batch), warmup=warmup, reps=reps, device=device)
        if solver == "ls":
            def sequential():
                phn.optimizer.zero_grad(set_to_none=True)
                total = 0.0
                for r in phn.dirichlet.sample((rays,)):
                    values = phn.objective_values(phn.hnet(r.unsqueeze(0)), batch)
                    total = total + (r * values[0]).sum()
                (total / rays).backward()
                phn.optimizer.step()

            out[f"ls_sequential_{rays}_rays"] = timeit(sequential, warmup=warmup, reps=reps, device=device)
    out["sequential_over_batched"] = out[f"ls_sequential_{rays}_rays"]["median_ms"] / out[f"ls_batched_{rays}_rays"]["median_ms"]
    out["epo_over_ls"] = out[f"epo_batched_{rays}_rays"]["median_ms"] / out[f"ls_batched_{rays}_rays"]["median_ms"]
    out["target"] = "sequential/batched >= 4"
    return out


HYPNETTORCH_STEP = r'''
import json, statistics, sys, time, torch
from hypnettorch.mnets import MLP
from hypnettorch.hnets import ChunkedHMLP
import hypnettorch.utils.hnet_regularizer as hreg
T, warmup, reps, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), torch.device(sys.argv[4])
torch.manual_seed(0)
mnet = MLP(n_in=1024, n_out=10, hidden_layers=(1000, 1000), no_weights=True, verbose=False).to(device)
hnet = ChunkedHMLP(mnet.layout.shapes, chunk_size=78000, chunk_emb_size=8, cond_in_size=24, layers=(25, 25),
                   num_cond_embs=T + 1, activation_fn=torch.nn.ELU(), verbose=False).to(device)
targets = hreg.get_current_targets(T, hnet)
theta = list(hnet.unconditional_params)
opt = torch.optim.Adam(theta, lr=1e-4)
emb_opt = torch.optim.Adam([hnet.conditional_params[T]], lr=1e-4)
x = torch.rand(128, 1024, device=device); y = torch.randint(0, 10, (128,), device=device)
def step():
    opt.zero_grad(); emb_opt.zero_grad()
    w = hnet.forward(cond_id=T)
    loss = torch.nn.functional.cross_entropy(mnet.forward(x, weights=w), y)
    loss.backward()
    reg = hreg.calc_fix_target_reg(hnet, T, targets=targets, mnet=mnet)
    (0.1 * reg).backward()
    opt.step(); emb_opt.step()
for _ in range(warmup): step()
ts = []
for _ in range(reps):
    if device.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter(); step()
    if device.type == "cuda": torch.cuda.synchronize()
    ts.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "reps": reps}))
'''


def bench_hypnettorch(device, warmup, reps, folder: Path, T: int = 10) -> Dict:
    if not (folder / "hypnettorch").is_dir():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder), "hypnettorch"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return {"error": f"could not install hypnettorch into {folder}: {done.stderr.strip()[-500:]}"}
    env = dict(os.environ, PYTHONPATH=str(folder))
    done = subprocess.run([sys.executable, "-c", HYPNETTORCH_STEP, str(T), str(warmup), str(reps), str(device)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": f"hypnettorch step failed: {done.stderr.strip()[-800:]}"}
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    strategy = cl_strategy(device)
    prepare(strategy, T)
    strategy.mbatch = cl_batch(device, T)
    ours = timeit(partial(training_iteration, strategy), warmup=warmup, reps=reps, device=device)
    return {"T": T, "hypnettorch_step": theirs, "cl_moo_step": ours,
            "hypnettorch_over_cl_moo": theirs["median_ms"] / ours["median_ms"], "target": ">= 2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="+", default=["overhead", "compile", "regularizer", "regularizer_mip", "phn", "hypnettorch"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--hypnettorch-dir", default="bench/hypnettorch_pkg")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    meta = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    runners = {
        "overhead": lambda: bench_overhead(device, args.warmup, args.reps),
        "compile": lambda: bench_compile(device, args.warmup, args.reps),
        "regularizer": lambda: bench_regularizer(device, args.warmup, args.reps, tuple(args.tasks)),
        "regularizer_mip": lambda: bench_regularizer_mip(device, args.warmup, args.reps),
        "phn": lambda: bench_phn(device, args.warmup, args.reps),
        "hypnettorch": lambda: bench_hypnettorch(device, args.warmup, args.reps, Path(args.hypnettorch_dir)),
    }
    for name in args.only:
        print(f"== {name}", flush=True)
        result = {**runners[name](), "meta": meta}
        write_json(RESULTS / f"speed_{name}.json", result)
        print(json.dumps({k: v for k, v in result.items() if k != "meta"}, indent=1, default=str)[:3000], flush=True)


if __name__ == "__main__":
    main()
