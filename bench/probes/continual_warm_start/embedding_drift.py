"""Does task 0 of the continual PHN lag a stand-alone PHN because its task embedding, trained by Adam,
grows until it drowns the 2-dim ray? Task 0 (unpermuted Multi-MNIST) only; test HV and the
embedding's norm every 250 steps. Variants: standalone, trained (the default), frozen (embedding
kept at its N(0, 0.1^2) draw), slow (embedding lr x 0.01).
python bench/probes/continual_warm_start/embedding_drift.py VARIANT STEPS"""
import os, sys, time, warnings
import torch
warnings.filterwarnings("ignore")
from cl_moo import HypernetworkOptions
from cl_moo.moo_metrics import evaluation_rays, hypervolume
from strategies import ContinualParetoStrategy, ParetoHypernetworkStrategy
from benchmarks.data.multimnist import LOSSES, MLPTwoHeads, load_multimnist

variant, steps, every = sys.argv[1], int(sys.argv[2]), 250
torch.set_num_threads(1)
train, test = load_multimnist("mnist", os.environ.get("CL_MOO_DATA", "../shared/data"), max_train=None, max_test=5000)
rays = evaluation_rays(2, 25)
kw = dict(losses=LOSSES, hnet_options=HypernetworkOptions(hidden=(100, 100), init="xavier"), rays_per_step=1,
          lr=1e-3, train_mb_size=128, eval_mb_size=5000, seed=0)
torch.manual_seed(0)
t0 = time.time()
if variant == "standalone":
    s = ParetoHypernetworkStrategy(target=MLPTwoHeads(hidden=(100,)), **kw)
    emb = None
else:
    s = ContinualParetoStrategy(target=MLPTwoHeads(hidden=(100,)), beta=0.5, emb_std=0.1, reg_rays=10, **kw)
    s.hnet.ensure_tasks(1)
    s.hnet.current = 0
    emb = s.hnet.task_embeddings[0]
    params = [p for p in s.hnet.inner.parameters()] + [p for p in s.target.parameters() if p.requires_grad]
    groups = [{"params": params}]
    if variant == "trained":
        groups.append({"params": [emb]})
    elif variant == "slow":
        groups.append({"params": [emb], "lr": 1e-5})
    elif variant != "frozen":
        raise SystemExit(f"unknown variant {variant}")
    s.optimizer = torch.optim.Adam(groups, lr=1e-3)
for i in range(steps // every):
    s.train(train, steps=every)
    hv = hypervolume(s.eval(test, rays), [2.0, 2.0])
    norm = "-" if emb is None else f"{emb.norm().item():.3f}"
    print(f"{variant} step {(i + 1) * every}: test HV {hv:.4f}, embedding norm {norm}, {time.time() - t0:.0f} s", flush=True)
