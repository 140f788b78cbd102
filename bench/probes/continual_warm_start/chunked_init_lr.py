import os, warnings
import torch
warnings.filterwarnings("ignore")
from cl_moo import HypernetworkOptions
from strategies import ParetoHypernetworkStrategy
from benchmarks.data.multimnist import LOSSES, MLPTwoHeads, load_multimnist
from cl_moo.moo_metrics import evaluation_rays, hypervolume
torch.set_num_threads(1)
train, test = load_multimnist("mnist", os.environ.get("CL_MOO_DATA", "../shared/data"), max_train=20000, max_test=2000)
for lr, chunk, init in ((1e-3, 2000, "xavier"), (1e-3, 2000, "hyperfan_in"), (1e-4, 2000, "hyperfan_in"),
                        (1e-3, None, "hyperfan_in"), (1e-3, 2000, "hyperfan_out")):
    torch.manual_seed(0)
    s = ParetoHypernetworkStrategy(target=MLPTwoHeads(hidden=(100,)), losses=LOSSES, rays_per_step=1,
                                   hnet_options=HypernetworkOptions(hidden=(100, 100), init=init, chunk_size=chunk,
                                                                    chunk_emb_dim=8),
                                   lr=lr, train_mb_size=128, seed=0)
    for k in range(2):
        s.train(train, steps=150)
    L = s.eval(test, evaluation_rays(2, 5))
    print(lr, chunk, init, 300, L[[0, 4]].round(3).tolist(), round(hypervolume(L, [2., 2.]), 3), flush=True)
