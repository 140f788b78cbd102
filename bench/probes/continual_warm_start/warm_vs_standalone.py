"""Why does task 1 fall short right after learning it (no regularizer)? warm start vs fresh."""
import os, sys, time, warnings
import torch
warnings.filterwarnings("ignore")
from cl_moo import HypernetworkOptions
from cl_moo.moo_metrics import evaluation_rays, hypervolume
from strategies import ContinualParetoStrategy, ParetoHypernetworkStrategy
from benchmarks.data.multimnist import LOSSES, MLPTwoHeads, load_multimnist, permuted_tasks
variant = sys.argv[1]; steps = int(sys.argv[2]); chunk = 500
torch.set_num_threads(1)
train, test = load_multimnist("mnist", os.environ.get("CL_MOO_DATA", "../shared/data"), max_train=None, max_test=5000)
tasks = permuted_tasks(2, train, test)
trsub = torch.utils.data.TensorDataset(*[t[:5000] for t in tasks[1][0].tensors])
rays = evaluation_rays(2, 25); hv = lambda L: hypervolume(L, [2., 2.])
hnet = dict(hidden=tuple(int(w) for w in os.environ.get("HIDDEN", "100,100").split(",")), init="xavier")
if os.environ.get("CHUNK_SIZE"):  # a chunked hypernetwork: one small head shared by every chunk
    hnet.update(chunk_size=int(os.environ["CHUNK_SIZE"]), chunk_emb_dim=int(os.environ.get("CHUNK_EMB", 8)))
kw = dict(losses=LOSSES, hnet_options=HypernetworkOptions(**hnet), rays_per_step=1,
          lr=float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3, train_mb_size=128, eval_mb_size=5000, seed=0)
torch.manual_seed(0)
log = []
def report(s, tag):
    Lte = s_eval(tasks[1][1]); Ltr = s_eval(trsub)
    log.append((tag, hv(Lte), hv(Ltr), Lte[[0, 12, 24]].round(3).tolist()))
    print(variant, tag, f"HV test {log[-1][1]:.3f} train {log[-1][2]:.3f}", log[-1][3], flush=True)
t0 = time.time()
if variant == "standalone":
    s = ParetoHypernetworkStrategy(target=MLPTwoHeads(hidden=(100,)), **kw)
    s_eval = lambda d: s.eval(d, rays)
    for i in range(steps // chunk):
        s.train(tasks[1][0], steps=chunk); report(s, (i + 1) * chunk)
else:
    s = ContinualParetoStrategy(target=MLPTwoHeads(hidden=(100,)), beta=0.0 if variant == "noreg" else float(os.environ.get("BETA", 0.5)), emb_std=0.1, reg_rays=10, **kw)
    s.train_task(0, tasks[0][0], steps=steps)
    print("task0 HV", hv(s.eval_task(0, tasks[0][1], rays)), flush=True)
    s_eval = lambda d: s.eval_task(1, d, rays)
    s.train_task(1, tasks[1][0], steps=chunk); report(s, chunk)
    for i in range(1, steps // chunk):
        s.train(tasks[1][0], steps=chunk); report(s, (i + 1) * chunk)
    print("task0 HV after task 1", hv(s.eval_task(0, tasks[0][1], rays)), flush=True)
print("wall", time.time() - t0)
