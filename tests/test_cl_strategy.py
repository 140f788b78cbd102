import copy
import warnings

import pytest
import torch
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.logging import TensorboardLogger
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from benchmarks.data.pmnist import permuted_mnist
from cl_moo import HypernetworkOptions
from cl_moo.cl_metrics import cl_summary
from strategies import HypernetworkStrategy, OutputRegularizer, build_cl_model, lookahead_delta

warnings.filterwarnings("ignore", message="No loggers specified")


@pytest.fixture(scope="module")
def tiny_pmnist(data_root):
    bench, info = permuted_mnist(3, root=data_root, train_per_task=300, test_per_task=200, pad_to=28)
    return bench


def target_module():
    return nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))


def train_sequence(bench, beta, tmp_path=None, **kwargs):
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=16,
                           hnet_options=HypernetworkOptions(chunk_size=2000, hidden=(40, 40)))
    loggers = [TensorboardLogger(str(tmp_path))] if tmp_path is not None else []
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), forgetting_metrics(experience=True), loggers=loggers)
    strategy = HypernetworkStrategy(model=model, lr=5e-4, beta=beta, train_iterations=150, train_mb_size=32,
                                    evaluator=evaluator, **kwargs)
    matrix = []
    for i, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        res = strategy.eval(bench.test_stream)
        matrix.append([res[f"Top1_Acc_Exp/eval_phase/test_stream/Task{j:03d}/Exp{j:03d}"] for j in range(3)])
    return strategy, matrix


@pytest.mark.slow
def test_regularizer_reduces_forgetting_inside_avalanche(tiny_pmnist, tmp_path):
    strategy, with_reg = train_sequence(tiny_pmnist, beta=0.05, tmp_path=tmp_path)
    _, without = train_sequence(tiny_pmnist, beta=0.0)
    f_reg = cl_summary(with_reg)["average_forgetting"]
    f_none = cl_summary(without)["average_forgetting"]
    assert f_reg < f_none - 0.05, (with_reg, without)
    assert with_reg[0][0] > 0.6  # the tasks were learned at all
    assert list(tmp_path.glob("events.out.tfevents*"))  # Avalanche's TensorBoard logger wrote
    # earlier task embeddings are frozen after their task
    assert [e.requires_grad for e in strategy.model.task_embeddings] == [False, False, True]


def test_earlier_embeddings_do_not_change(tiny_pmnist):
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=2000, hidden=(20,)))
    strategy = HypernetworkStrategy(model=model, lr=1e-3, beta=0.05, train_iterations=20, train_mb_size=32, evaluator=None)
    strategy.train(tiny_pmnist.train_stream[0])
    first = model.task_embeddings[0].detach().clone()
    strategy.train(tiny_pmnist.train_stream[1])
    assert torch.equal(model.task_embeddings[0].detach(), first)
    assert not torch.equal(model.task_embeddings[1].detach(), torch.zeros_like(first))


def test_online_targets_and_subset_match_stored_targets_at_the_start():
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=2000, hidden=(20,)))
    model.ensure_tasks(5)
    embs = model.embeddings([0, 1, 2, 3])
    stored, online = OutputRegularizer(beta=1.0, fast=False), OutputRegularizer(beta=1.0, targets="online")
    fast = OutputRegularizer(beta=1.0, fast=True)
    for reg in (stored, online, fast):
        reg.snapshot(model.hnet, embs, [0, 1, 2, 3])
    assert stored.penalty(model.hnet, embs).item() == 0.0
    assert abs(online.penalty(model.hnet, embs).item()) < 1e-9  # the frozen copy may take other kernels: rounding only
    assert abs(fast.penalty(model.hnet, embs).item()) < 1e-4  # float32 cancellation only
    with torch.no_grad():
        model.hnet.head.bias.add_(0.1)
    p_stored, p_online = stored.penalty(model.hnet, embs), online.penalty(model.hnet, embs)
    assert p_stored.item() == pytest.approx(p_online.item(), rel=1e-5)
    # beta / k * sum over k tasks of ||0.1||^2 over all outputs
    assert p_stored.item() == pytest.approx(0.01 * model.hnet.num_weights, rel=1e-3)
    sub = OutputRegularizer(beta=1.0, subset=2)
    sub.snapshot(model.hnet, embs, [0, 1, 2, 3])
    with torch.no_grad():
        model.hnet.head.bias.add_(0.1)
    assert sub.penalty(model.hnet, embs).item() == pytest.approx(0.01 * model.hnet.num_weights, rel=1e-3)


def test_lookahead_equals_the_step_adam_takes():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5))
    opt = torch.optim.Adam([p], lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        (p.pow(2).sum() + p.sum()).backward()
        delta = lookahead_delta(opt)[p].clone()
        before = p.detach().clone()
        opt.step()
        assert torch.allclose(p.detach() - before, delta, atol=1e-7)


def test_entropy_task_inference_runs_and_picks_trained_tasks(tiny_pmnist):
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=2000, hidden=(20,)))
    strategy = HypernetworkStrategy(model=model, lr=1e-3, beta=0.05, train_iterations=30, train_mb_size=32,
                                    task_inference="entropy", evaluator=None)
    strategy.train(tiny_pmnist.train_stream[0])
    strategy.train(tiny_pmnist.train_stream[1])
    x = tiny_pmnist.test_stream[0].dataset[0][0].unsqueeze(0).repeat(4, 1)
    tasks, logits = model.infer_task(x, [0, 1])
    assert set(tasks.tolist()) <= {0, 1} and logits.shape == (4, 10)


def test_experience_without_task_labels_is_refused():
    from avalanche.benchmarks.scenarios import benchmark_from_datasets
    from avalanche.benchmarks.utils import AvalancheDataset
    from torch.utils.data import TensorDataset

    ds = AvalancheDataset([TensorDataset(torch.randn(8, 784), torch.randint(0, 10, (8,)))])
    bench = benchmark_from_datasets(train=[ds])
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=2000, hidden=(20,)))
    strategy = HypernetworkStrategy(model=model, train_iterations=2, evaluator=None)
    with pytest.raises(ValueError, match="task labels"):
        strategy.train(bench.train_stream[0])


def test_nan_loss_names_the_problem_and_the_fix(tiny_pmnist):
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=2000, hidden=(20,)))
    with torch.no_grad():
        model.hnet.head.bias.fill_(float("nan"))
    strategy = HypernetworkStrategy(model=model, train_iterations=2, evaluator=None)
    with pytest.raises(RuntimeError, match="became nan.*lower the learning rate"):
        strategy.train(tiny_pmnist.train_stream[0])


@pytest.mark.parametrize("mip", [False, True])  # MIP: the residual theta_0 moves too (its Gram cross terms)
@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("subset", [None, 2])
def test_fast_regularizer_equals_the_direct_form(chunked, subset, mip):
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(
        generator="chunked" if chunked else "mlp", chunk_size=3000 if chunked else None, hidden=(20,), mip=mip))
    assert (model.hnet.theta0 is not None) == mip
    model.ensure_tasks(4)
    embs = model.embeddings([0, 1, 2, 3])
    fast, direct = OutputRegularizer(beta=0.3, subset=subset, fast=True), OutputRegularizer(beta=0.3, subset=subset, fast=False)
    fast.snapshot(model.hnet, embs, [0, 1, 2, 3])
    direct.snapshot(model.hnet, embs, [0, 1, 2, 3])
    assert type(fast.targets).__name__ == "HeadSnapshot"
    with torch.no_grad():
        for p in model.hnet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    opt = torch.optim.Adam(model.hnet.parameters(), lr=1e-3)
    model.hnet.forward_flat(embs[:1]).sum().backward()
    delta = lookahead_delta(opt)
    for d in (None, delta):
        grads, values = [], []
        for reg in (fast, direct):
            model.hnet.zero_grad()
            value = reg.penalty(model.hnet, embs, d, generator=torch.Generator().manual_seed(5))
            value.backward()
            values.append(value.item())
            grads.append(torch.cat([p.grad.reshape(-1) for p in model.hnet.parameters()]))
        assert values[0] == pytest.approx(values[1], rel=1e-2)
        assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4 * grads[1].abs().max().item())


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("rows, apps", [((slice(0, 7), slice(0, 4)), (3, 1)), ((slice(2, 6), slice(0, 7)), (2, 3))])
def test_the_head_snapshot_backward_is_the_derivative_of_its_forward(rows, apps, residual):
    """The hand-written backward of the fused head-snapshot error against finite differences (float64),
    with a piece covering every head row and one covering part of them, and with and without MIP's shift."""
    from strategies.regularizer_targets import _HeadSnapshotSqError

    g = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    size = sum(n * len(range(*r.indices(7))) for r, n in zip(rows, apps))
    weight, bias = torch.randn(7, 3, generator=g, **f64), torch.randn(7, generator=g, **f64)
    theta0 = torch.randn(size, generator=g, **f64) if residual else None
    inputs = [torch.randn(2, n, 3, generator=g, **f64) for n in apps]
    fixed = dict(
        theta0_star=torch.randn(size, generator=g, **f64) if residual else None,
        weight0=torch.randn(7, 3, generator=g, **f64),
        bias0=torch.randn(7, generator=g, **f64),
        inputs0=[torch.randn(2, n, 3, generator=g, **f64) for n in apps],
    )
    leaves = [t.requires_grad_() for t in (weight, bias, theta0, *inputs) if t is not None]

    def fused(*args):
        w, b, *rest = args
        th = rest.pop(0) if residual else None
        return _HeadSnapshotSqError.apply(
            rows, w, b, th, fixed["theta0_star"], fixed["weight0"], fixed["bias0"], *rest, *fixed["inputs0"]
        )

    def direct(*args):
        w, b, *rest = args
        th = rest.pop(0) if residual else None
        total, start = 0, 0
        for r, a, a0 in zip(rows, rest, fixed["inputs0"]):
            diff = (a @ w[r].T + b[r]) - (a0 @ fixed["weight0"][r].T + fixed["bias0"][r])
            if residual:
                end = start + diff[0].numel()
                diff = diff + (th[start:end] - fixed["theta0_star"][start:end]).view(diff.shape[1:])
                start = end
            total = total + diff.pow(2).sum()
        return total

    assert fused(*leaves).item() == pytest.approx(direct(*leaves).item(), rel=1e-12)
    assert torch.autograd.gradcheck(fused, tuple(leaves))


def test_the_head_snapshot_frees_its_products_at_backward_and_refuses_a_second_derivative():
    """Its intermediates go through save_for_backward (freed by backward, not kept with the graph until the
    next step, as Avalanche keeps ``strategy.loss``), and create_graph=True is refused with the fix,
    never a silently wrong second derivative."""
    from strategies.regularizer_targets import _HeadSnapshotSqError

    def penalty(weight, bias):
        fixed = (torch.randn(5, 2), torch.randn(5), torch.randn(2, 3, 2), torch.randn(2, 3, 2))
        return _HeadSnapshotSqError.apply((slice(0, 5),), weight, bias, None, None, *fixed)

    weight, bias = torch.randn(5, 2, requires_grad=True), torch.randn(5, requires_grad=True)
    out = penalty(weight, bias)
    out.backward()
    assert not [k for k, v in vars(out.grad_fn).items() if torch.is_tensor(v) or isinstance(v, (list, tuple, dict))
                and any(torch.is_tensor(t) for t in (v.values() if isinstance(v, dict) else v))]
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time|already been freed"):
        out.grad_fn.saved_tensors
    with pytest.raises(RuntimeError, match=r"no second derivative.*OutputRegularizer\(fast=False\)"):
        torch.autograd.grad(penalty(weight, bias), weight, create_graph=True)


@pytest.mark.parametrize("mode", [dict(fast=True), dict(fast=False), dict(targets="online")])
def test_loaded_targets_go_to_the_hypernetworks_device(mode):
    """A state read elsewhere (``torch.load(map_location="cpu")``) is loaded onto the device of the
    hypernetwork it regularizes ("meta" stands in for a GPU here); loaded on the same device, the penalty is the same."""
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=8,
                           hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(20,), mip=True))
    model.ensure_tasks(3)
    embs = model.embeddings([0, 1, 2])
    reg = OutputRegularizer(beta=0.3, **mode)
    reg.snapshot(model.hnet, embs, [0, 1, 2])
    with torch.no_grad():
        model.hnet.head.bias.add_(0.1)
    state = reg.state_dict()
    meta = copy.deepcopy(model.hnet).to("meta")
    on_meta = OutputRegularizer(beta=0.3, **mode)
    on_meta.load_state_dict(state, meta)
    tensors = [t for v in on_meta.targets.state_dict().values() for t in (v if isinstance(v, list) else [v])]
    tensors = [t for v in tensors for t in (v.values() if isinstance(v, dict) else [v]) if t is not None]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    loaded = OutputRegularizer(beta=0.3, **mode)
    loaded.load_state_dict(state, model.hnet)
    assert loaded.penalty(model.hnet, embs).item() == reg.penalty(model.hnet, embs).item() > 0


def test_a_head_snapshot_is_checked_against_the_hypernetwork_when_loaded():
    torch.manual_seed(0)
    plain = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(20,)))
    residual = build_cl_model(target_module(), emb_dim=8,
                              hnet_options=HypernetworkOptions(chunk_size=3000, hidden=(20,), mip=True))
    for model in (plain, residual):
        model.ensure_tasks(2)
    reg = OutputRegularizer(beta=0.3, fast=True)
    reg.snapshot(plain.hnet, plain.embeddings([0, 1]), [0, 1])
    state = reg.state_dict()
    with pytest.raises(ValueError, match="taken without a residual theta_0; take a new snapshot"):
        OutputRegularizer(beta=0.3, fast=True).load_state_dict(state, residual.hnet)
    with pytest.raises(ValueError, match="holds no head"):
        OutputRegularizer(beta=0.3, fast=True).load_state_dict(
            {**state, "targets": {**state["targets"], "weight0": None}}, plain.hnet)
    from strategies.regularizer_targets import HeadSnapshot

    with pytest.raises(RuntimeError, match="no head snapshot yet"):  # used before snapshot(): named, not a TypeError
        HeadSnapshot().sq_error(plain.hnet, plain.embeddings([0]), None)
    unloaded = HeadSnapshot()
    unloaded.snapshot(plain.hnet, plain.embeddings([0, 1]))
    with pytest.raises(ValueError, match="taken without a residual theta_0"):  # and with another hypernetwork
        unloaded.sq_error(residual.hnet, residual.embeddings([0, 1]), None)
    # a generator whose head pieces miss part of theta_0 would leave that part of its gradient unwritten: refused
    with_residual = HeadSnapshot()
    with_residual.snapshot(residual.hnet, residual.embeddings([0, 1]))
    pieces = residual.hnet.head_pieces
    residual.hnet.head_pieces = lambda encoded: pieces(encoded)[:-1]
    with pytest.raises(ValueError, match=r"head pieces cover \d+ outputs, not the \d+ of theta_0"):
        with_residual.sq_error(residual.hnet, residual.embeddings([0, 1]), None)


@pytest.mark.parametrize("chunked, n_tasks, expected", [
    (False, 3, "StoredOutputs"),   # MLP head, d = 20: a Gram matrix of (2*20+1)^2 per row costs more than 3 tasks
    (True, 40, "HeadSnapshot"),    # chunked: 40 tasks x chunks applications of each head row: the Gram wins
])
def test_auto_regularizer_takes_the_cheaper_form_with_the_same_penalty(chunked, n_tasks, expected):
    torch.manual_seed(0)
    model = build_cl_model(target_module(), emb_dim=8, hnet_options=HypernetworkOptions(
        generator="chunked" if chunked else "mlp", chunk_size=1000 if chunked else None, hidden=(20,)))
    model.ensure_tasks(n_tasks)
    tasks = list(range(n_tasks))
    embs = model.embeddings(tasks)
    auto, direct = OutputRegularizer(beta=0.3), OutputRegularizer(beta=0.3, fast=False)
    auto.snapshot(model.hnet, embs, tasks)
    direct.snapshot(model.hnet, embs, tasks)
    assert type(auto.targets).__name__ == expected
    with torch.no_grad():
        for p in model.hnet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert auto.penalty(model.hnet, embs).item() == pytest.approx(direct.penalty(model.hnet, embs).item(), rel=1e-2)
    with pytest.raises(ValueError, match="fast must be True, False or 'auto'"):
        OutputRegularizer(beta=0.3, fast="yes")
