"""Task-1 learning after task 0, from one saved task-0 state: variants of how task 1 is trained."""
import os, sys, time, warnings
import torch
warnings.filterwarnings("ignore")
from cl_moo import HypernetworkOptions
from cl_moo.moo_metrics import evaluation_rays, hypervolume
from strategies import ContinualParetoStrategy
from benchmarks.data.multimnist import LOSSES, MLPTwoHeads, load_multimnist, permuted_tasks
torch.set_num_threads(1)
variant = sys.argv[1]; steps = int(sys.argv[2]); opts = dict(a.split("=") for a in sys.argv[3:])
lr1 = float(opts.get("lr", 1e-3)); beta = float(opts.get("beta", 0.0)); emb_std = float(opts.get("emb_std", 0.1))
train, test = load_multimnist("mnist", os.environ.get("CL_MOO_DATA", "../shared/data"), max_train=None, max_test=5000)
tasks = permuted_tasks(2, train, test)
rays = evaluation_rays(2, 25); hv = lambda L: hypervolume(L, [2., 2.])
def make():
    torch.manual_seed(0)
    return ContinualParetoStrategy(target=MLPTwoHeads(hidden=(100,)), losses=LOSSES, rays_per_step=1,
                                   hnet_options=HypernetworkOptions(hidden=(100, 100), init="xavier"),
                                   lr=1e-3, train_mb_size=128, eval_mb_size=5000, seed=0,
                                   beta=beta, emb_std=emb_std, reg_rays=10)
ck = os.environ.get("PROBE_CKPT", "/tmp/cl_moo_probe_task0.pt")  # the task-0 state every variant starts from
s = make()
if variant == "task0":
    s.train_task(0, tasks[0][0], steps=2000)
    torch.save(s.hnet.state_dict(), ck)
    print("task0 HV", hv(s.eval_task(0, tasks[0][1], rays)), flush=True); sys.exit()
s.hnet.ensure_tasks(1); s.hnet.load_state_dict(torch.load(ck)); s.trained_tasks = [0]
hv0 = hv(s.eval_task(0, tasks[0][1], rays))
def hidden_norm(task):
    inner = s.hnet.inner
    conds = s.hnet.conditions(task, torch.as_tensor(rays, dtype=torch.float32))
    with torch.no_grad():
        h = inner.body(inner.encoder(conds))
    return round(float(h.norm(dim=1).mean()), 3), round(float((h > 0).float().mean()), 3)
print(variant, opts, "task0 HV from checkpoint", round(hv0, 4), "hidden norm/active", hidden_norm(0), "head |W|", round(float(s.hnet.inner.head.weight.norm()),2), flush=True)
s.lr = lr1
s.hnet.emb_std = float(opts.get("new_std", emb_std))
if "zero_bias" in variant:
    with torch.no_grad(): s.hnet.inner.head.bias.zero_()
if "shrink" in variant:
    with torch.no_grad():
        for p in s.hnet.inner.head.parameters(): p.mul_(float(opts.get("lam", 0.3)))
if "fresh_head" in variant:
    fresh = make()  # make() seeds 0: the head's values before task 0
    s.hnet.inner.head.load_state_dict(fresh.hnet.inner.head.state_dict())
t0 = time.time(); chunk = 500
s.train_task(1, tasks[1][0], steps=chunk)
for i in range(steps // chunk):
    if i: s.train(tasks[1][0], steps=chunk)
    L = s.eval_task(1, tasks[1][1], rays)
    print(variant, opts, (i + 1) * chunk, f"task1 HV {hv(L):.3f} task0 HV {hv(s.eval_task(0, tasks[0][1], rays)):.3f}",
          L[[0, 12, 24]].round(3).tolist(), f"{time.time()-t0:.0f}s", flush=True)
