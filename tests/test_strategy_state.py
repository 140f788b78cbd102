"""The Pareto strategies' state API: ``state_dict()`` / ``load_state_dict()`` of
ParetoHypernetworkStrategy (LS, EPO), ContinualParetoStrategy (between tasks and within one) and the
solvers; resumed = uninterrupted, every entry needed; the runners' checkpoints of the layout before the
state API still resume (converted by their ``upgrade_checkpoint``)."""
import io
import json

import pytest
import torch
from cl_moo import HypernetworkOptions as HO
from torch.utils.data import TensorDataset

import benchmarks.runners.pareto_runner as pareto_runner
import benchmarks.runners.continual_pareto_runner as continual_pareto_runner
from benchmarks.runners.checkpoint import nest_strategy_state
from strategies.phn import ParetoHypernetworkStrategy
from strategies.phn_cl import ContinualParetoStrategy
from strategies.solvers import EPO, SOLVERS, LinearScalarization, Solver, make_solver
from two_quadratics import Point, quad_a, quad_b

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = TensorDataset(torch.zeros(32, 1))


class Record:
    """Every step's scalarized loss and loss vectors."""

    def __init__(self):
        self.losses = []

    def after_training_iteration(self, strategy):
        self.losses.append((strategy.last_loss, strategy.last_losses.tolist()))


def with_plugins(strategy, *plugins):
    """``strategy``'s own plugins (the continual strategy's regularizer, Avalanche's evaluator and clock)
    and ``plugins`` instead of the ones an earlier call added."""
    strategy.plugins = [p for p in strategy.plugins if type(p).__name__ not in ("Record", "SaveAt")] + list(plugins)


def phn(solver="ls", rays_per_step=4, **kw):
    return ParetoHypernetworkStrategy(target=Point(), losses=[quad_a, quad_b], hnet_options=HO(hidden=(16,), target_gain=1.0),
                                      solver=solver, rays_per_step=rays_per_step, lr=1e-2, train_mb_size=8, seed=0,
                                      **kw)


def saved(state):
    """``state`` as a checkpoint gives it back (torch.save / torch.load)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def continue_training(strategy, steps, **kw):
    record = Record()
    with_plugins(strategy, record)
    strategy.train(DATA, steps=steps, **kw)
    return record.losses


def assert_same_state(a, b):
    for part in ("hnet", "target"):
        sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (part, name)
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert oa.keys() == ob.keys()
    for i in oa:
        for key in oa[i]:
            assert torch.equal(oa[i][key], ob[i][key]), (i, key)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.iteration == b.iteration and a.solver.state_dict() == b.solver.state_dict()


# ---------------------------------------------------------------- ParetoHypernetworkStrategy
@pytest.mark.parametrize("solver, rays_per_step", [("ls", 1), ("ls", 4), ("epo", 4)])
def test_a_loaded_strategy_continues_like_the_original(solver, rays_per_step):
    a = phn(solver, rays_per_step)
    continue_training(a, 7)  # 7 steps: the next call starts a new pass over the 4 batches
    state = saved(a.state_dict())
    assert set(state) == set(ParetoHypernetworkStrategy.STATE_KEYS)
    b = phn(solver, rays_per_step)
    b.load_state_dict(state)
    assert_same_state(a, b)
    la, lb = continue_training(a, 9), continue_training(b, 9)
    assert la == lb and a.iteration == b.iteration == 16
    assert_same_state(a, b)
    assert a.epo_rays_solved == b.epo_rays_solved == (16 * rays_per_step if solver == "epo" else 0)
    assert continue_training(phn(solver, rays_per_step), 9) != la  # a fresh strategy does not continue so


@pytest.mark.parametrize("left_out", ["hnet", "optimizer", "generator"])
def test_every_part_of_the_state_is_needed(left_out):
    a = phn()
    continue_training(a, 5)
    state = saved(a.state_dict())
    b = phn()
    state[left_out] = b.state_dict()[left_out]  # the fresh strategy's own
    b.load_state_dict(state)
    assert continue_training(a, 4) != continue_training(b, 4)


def test_epo_fallback_counts_are_part_of_the_state():
    a = phn("epo", 2)
    continue_training(a, 3)
    rays = torch.tensor([[0.25, 0.75], [0.6, 0.4]])
    flat = a.hnet.forward_flat(rays)  # r * l = 0 has no EPO LP: both rays fall back (tests/test_phn_solvers.py)
    a.solver(torch.stack([0.0 * flat.pow(2).sum(1), 0.0 * flat.sum(1)], dim=1), rays, flat)
    assert a.epo_fallbacks == 2 and a.solver.state_dict() == {"fallbacks": 2, "steps": 4}
    b = phn("epo", 2)
    b.load_state_dict(saved(a.state_dict()))
    assert b.epo_fallbacks == 2 and b.solver.steps == 4


def test_solver_state_api():
    assert Solver().state_dict() == {} and LinearScalarization().state_dict() == {}
    LinearScalarization().load_state_dict({})
    with pytest.raises(ValueError, match=r"keeps no state.*\['fallbacks'\]"):
        LinearScalarization().load_state_dict({"fallbacks": 1})
    epo = EPO()
    epo.load_state_dict({"fallbacks": 3, "steps": 10})
    assert (epo.fallbacks, epo.steps) == (3, 10) and epo.state_dict() == {"fallbacks": 3, "steps": 10}
    epo.load_state_dict({})  # a fresh solver's counts
    assert (epo.fallbacks, epo.steps) == (0, 0)
    with pytest.raises(ValueError, match="another solver"):
        epo.load_state_dict({"last_hv": 1.0})
    for name in SOLVERS:  # every registered solver's state survives a round trip
        solver = make_solver(name)
        make_solver(name).load_state_dict(saved(solver.state_dict()))


def test_a_state_without_an_entry_is_refused_naming_it():
    a = phn()
    state = a.state_dict()
    del state["generator"]
    with pytest.raises(KeyError, match=r"lacks \['generator'\]"):
        phn().load_state_dict(state)


# ---------------------------------------------------------------- ContinualParetoStrategy
def to_a(out, a, b):
    return (out - a).pow(2).sum(-1).mean()


def to_b(out, a, b):
    return (out - b).pow(2).sum(-1).mean()


ANCHORS = [(torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, -0.5])),
           (torch.tensor([-1.0, 0.5, 0.0]), torch.tensor([0.5, -1.0, 1.0]))]


def task_data(t, n=32):
    a, b = ANCHORS[t]
    return TensorDataset(torch.zeros(n, 1), a.expand(n, -1).clone(), b.expand(n, -1).clone())


def continual(solver="ls"):
    return ContinualParetoStrategy(target=Point(), losses=[to_a, to_b], emb_dim=4, beta=1.0, reg_rays=4,
                                   hnet_options=HO(hidden=(16,), target_gain=1.0), rays_per_step=4, lr=1e-2, train_mb_size=8,
                                   seed=0, solver=solver)


def train_task(strategy, task, steps):
    record = Record()
    with_plugins(strategy, record)
    strategy.train_task(task, task_data(task), steps=steps)
    return record.losses


@pytest.mark.parametrize("solver", ["ls", "epo"])
def test_continual_strategy_loaded_between_tasks_continues_like_the_original(solver):
    a = continual(solver)
    train_task(a, 0, 6)
    state = saved(a.state_dict())
    assert set(state) == set(ContinualParetoStrategy.STATE_KEYS)
    assert state["trained_tasks"] == [0] and state["current_task"] == 0 and state["num_tasks"] == 1
    b = continual(solver)
    b.load_state_dict(state)
    assert_same_state(a, b)
    assert (a.eval_task(0, task_data(0)) == b.eval_task(0, task_data(0))).all()
    la, lb = train_task(a, 1, 6), train_task(b, 1, 6)
    assert la == lb and b.trained_tasks == [0, 1]
    assert_same_state(a, b)
    for t in (0, 1):
        assert (a.eval_task(t, task_data(t)) == b.eval_task(t, task_data(t))).all()
    assert train_task(continual(solver), 0, 6) != train_task(continual(solver), 1, 6)  # the data matter


class SaveAt:
    """Saves the strategy's state after epoch ``epoch`` (one batch per epoch here)."""

    def __init__(self, epoch):
        self.epoch, self.state = epoch, None

    def after_training_epoch(self, strategy, epoch):
        if epoch == self.epoch:
            self.state = saved(strategy.state_dict())


def test_continual_strategy_loaded_within_a_task_continues_like_the_original():
    """State taken in the middle of task 1 (its optimizer, the regularizer's targets of task 0)."""
    a = continual()
    train_task(a, 0, 5)
    save, record = SaveAt(2), Record()
    with_plugins(a, save, record)
    a.train_task(1, task_data(1, n=8), steps=7)  # one batch per epoch: the state after 3 of 7 steps
    state = save.state
    assert state["current_task"] == 1 and state["regularized_tasks"] == [0] and state["trained_tasks"] == [0]
    assert len(state["regularizer"]["tasks"]) == 4  # task 0's outputs at the K = 4 rays
    b = continual()
    b.load_state_dict(state)
    rest = Record()
    with_plugins(b, rest)
    b.train(task_data(1, n=8), steps=4)
    assert rest.losses == record.losses[3:]
    assert_same_state(a, b)
    # without the regularizer's targets the same steps differ
    c = continual()
    c.load_state_dict({**state, "regularizer": None})
    assert continue_training_on(c, task_data(1, n=8), 4) != record.losses[3:]


class SaveAfterIteration:
    """Saves the strategy's state after its ``iteration``-th step (overall count)."""

    def __init__(self, iteration):
        self.iteration, self.state = iteration, None

    def after_training_iteration(self, strategy):
        if strategy.iteration == self.iteration:
            self.state = saved(strategy.state_dict())


def test_train_task_finishes_a_task_loaded_in_the_middle_of_a_pass():
    a = continual()
    train_task(a, 0, 5)
    save, record = SaveAfterIteration(5 + 2), Record()  # task 1: 2 of a pass's 4 batches
    with_plugins(a, save, record)
    a.train_task(1, task_data(1), steps=6)
    assert save.state["pass"]["position"] == 16
    b, rest = continual(), Record()
    b.load_state_dict(save.state)
    with_plugins(b, rest)
    b.train_task(1, task_data(1), steps=4)
    assert rest.losses == record.losses[2:] and b.trained_tasks == [0, 1]
    assert_same_state(a, b)


def test_train_task_finishes_a_task_loaded_within_it():
    """After loading a state taken within task 1, train_task(1, steps=rest) continues it (the optimizer
    and the regularizer's targets as loaded, no new record) and then counts it as trained."""
    a = continual()
    train_task(a, 0, 5)
    save, record = SaveAt(2), Record()
    with_plugins(a, save, record)
    a.train_task(1, task_data(1, n=8), steps=7)
    b = continual()
    b.load_state_dict(save.state)
    rest = Record()
    with_plugins(b, rest)
    b.train_task(1, task_data(1, n=8), steps=4)
    assert rest.losses == record.losses[3:] and b.trained_tasks == [0, 1]
    assert_same_state(a, b)
    assert (a.eval_task(1, task_data(1)) == b.eval_task(1, task_data(1))).all()
    with pytest.raises(ValueError, match="already trained"):
        b.train_task(1, task_data(1), steps=1)
    # loaded within task 1, starting task 0 again is still refused, and plain train() leaves task 1 unfinished
    c = continual()
    c.load_state_dict(save.state)
    with pytest.raises(ValueError, match="already trained"):
        c.train_task(0, task_data(0), steps=1)
    c.train(task_data(1, n=8), steps=4)
    assert c.trained_tasks == [0]


class Plain(torch.utils.data.Dataset):
    """A dataset that is no TensorDataset (the DataLoader path)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def regression(n):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x[:, :1] * 2, x[:, 1:2] - 1)


def regressor():
    return ParetoHypernetworkStrategy(
        target=torch.nn.Linear(3, 1),
        losses=[lambda o, a, b: (o - a).pow(2).mean(), lambda o, a, b: (o - b).pow(2).mean()],
        hnet_options=HO(hidden=(8,)),
        rays_per_step=2,
        lr=1e-2,
        train_mb_size=8,
        seed=0,
    )


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("n, at", [(32, 2), (32, 4), (32, 5), (28, 3), (28, 4), (28, 6)])
def test_a_state_taken_in_the_middle_of_a_pass_resumes_exactly(n, at, plain):
    """Saved after step ``at`` of a 10-step call (8 per batch: mid-pass, after the last full batch with
    the sampler's remainder draw still to come, after the short last batch), loaded, and trained for the
    rest: the same steps as without the break; without the pass's position, not."""
    data = Plain(regression(n)) if plain else regression(n)
    a, save, record = regressor(), SaveAfterIteration(at), Record()
    with_plugins(a, save, record)
    a.train(data, steps=10)
    assert save.state["pass"] is not None and len(save.state["pass"]["order"]) == n
    b, rest = regressor(), Record()
    b.load_state_dict(save.state)
    with_plugins(b, rest)
    b.train(data, steps=10 - at)
    assert rest.losses == record.losses[at:] and b.iteration == 10
    assert_same_state(a, b)
    c, other = regressor(), Record()
    c.load_state_dict({**saved(save.state), "pass": None})  # a new pass instead of the rest of the saved one
    with_plugins(c, other)
    c.train(data, steps=10 - at)
    assert other.losses != record.losses[at:]
    if plain:  # the DataLoader path gives the batches and draws of the TensorDataset path
        fast, fast_record = regressor(), Record()
        with_plugins(fast, fast_record)
        fast.train(regression(n), steps=10)
        assert fast_record.losses == record.losses


def test_a_state_between_passes_has_no_pass():
    a = regressor()
    at_epoch_end, last = SaveAt(0), SaveAfterIteration(7)
    with_plugins(a, at_epoch_end, last)
    a.train(regression(32), steps=7)  # 4 batches per pass: the epoch ends at step 4, the budget at step 7
    assert at_epoch_end.state["pass"] is None and last.state["pass"] is None and a.state_dict()["pass"] is None
    b = regressor()
    with pytest.raises(ValueError, match="same data"):
        b.load_state_dict(mid_pass_state(regression(32), 2))
        b.train(regression(24), steps=2)


def mid_pass_state(data, at):
    """A regressor's state after step ``at`` of a pass over ``data``."""
    a, save = regressor(), SaveAfterIteration(at)
    with_plugins(a, save)
    a.train(data, steps=at + 1)
    return save.state


def test_the_clock_is_part_of_the_state_and_old_states_load_without_it():
    a = phn()
    continue_training(a, 6)
    state = saved(a.state_dict())
    assert state["clock"]["train_iterations"] == 6 and state["clock"]["train_exp_counter"] == 1
    b = phn()
    b.load_state_dict(state)
    assert b.clock.train_iterations == 6 and b.clock.train_exp_counter == 1 and b.clock.total_iterations == 6
    old = {k: v for k, v in saved(state).items() if k != "clock"}  # own tensors: Adam updates its moments in place
    c = phn()
    c.load_state_dict(old)  # a state saved before the clock was added
    assert c.clock.train_iterations == 0 and continue_training(c, 3) == continue_training(b, 3)
    cs = continual()
    train_task(cs, 0, 3)
    d = continual()
    d.load_state_dict({k: v for k, v in saved(cs.state_dict()).items() if k != "clock"})
    assert d.trained_tasks == [0]


def continue_training_on(strategy, data, steps):
    record = Record()
    with_plugins(strategy, record)
    strategy.train(data, steps=steps)
    return record.losses


# ---------------------------------------------------------------- checkpoints of the layout before the state API
def old_phn_checkpoint(strategy):
    """What pareto_runner's payload held for the strategy before the state API."""
    return {"hnet": strategy.hnet.state_dict(), "target": strategy.target.state_dict(),
            "optimizer": strategy.optimizer.state_dict(), "generator": strategy.generator.get_state(),
            "iteration": strategy.iteration, "epo_fallbacks": strategy.epo_fallbacks,
            "rng": {}, "epochs_done": 1, "elapsed": 1.0, "losses": {}, "kind": "pareto"}


@pytest.mark.parametrize("solver", ["ls", "epo"])
def test_an_old_layout_phn_checkpoint_is_converted_and_continues(solver):
    a = phn(solver)
    continue_training(a, 5)
    if solver == "epo":
        a.solver.fallbacks = 3
    old = saved(old_phn_checkpoint(a))
    state = pareto_runner.upgrade_checkpoint(old)
    assert all(k in state for k in pareto_runner.PHN_REQUIRED)
    assert not any(k in state for k in pareto_runner.PHN_OLD_STRATEGY_KEYS + ("epo_fallbacks",))
    assert state["strategy"]["solver"] == ({"fallbacks": 3} if solver == "epo" else {})
    assert pareto_runner.upgrade_checkpoint(state) is state  # the current layout as it is
    b = phn(solver)
    b.load_state_dict(state["strategy"])
    assert b.epo_fallbacks == a.epo_fallbacks
    assert continue_training(a, 6) == continue_training(b, 6)
    ls_baseline = {"models": [], "elapsed": 0.0}
    assert pareto_runner.upgrade_checkpoint(ls_baseline) is ls_baseline
    assert nest_strategy_state({"hnet": 1}, pareto_runner.PHN_OLD_STRATEGY_KEYS) == {"hnet": 1}  # incomplete: unchanged


def test_an_old_layout_continual_pareto_checkpoint_is_converted_and_continues():
    a = continual()
    train_task(a, 0, 5)
    old = saved({"hnet": a.hnet.state_dict(), "target": a.target.state_dict(), "generator": a.generator.get_state(),
                 "iteration": a.iteration, "epo_fallbacks": a.epo_fallbacks, "next_task": 1, "rng": {},
                 "losses": {}, "hv_matrix": [], "fronts": [], "elapsed": 0.0, "train_s": []})
    state = continual_pareto_runner.upgrade_checkpoint(old)
    assert all(k in state for k in continual_pareto_runner.REQUIRED) and set(state["strategy"]) == set(
        ContinualParetoStrategy.STATE_KEYS) - set(ContinualParetoStrategy.STATE_OPTIONAL)  # no clock, no pass
    assert continual_pareto_runner.upgrade_checkpoint(state) is state
    b = continual()
    b.load_state_dict(state["strategy"])
    assert b.trained_tasks == [0] and b.hnet.current is None
    assert train_task(a, 1, 6) == train_task(b, 1, 6)
    assert_same_state(a, b)


# ---------------------------------------------------------------- the runners resume old-layout checkpoints
class Killed(BaseException):
    pass


def _interrupted_run(module, args, run_dir, data_root, monkeypatch):
    """Runs ``args`` until its first checkpoint is written, then kills it."""
    from cl_moo.run import main

    original = module.save_checkpoint

    def killed(path, payload):
        original(path, payload)
        raise Killed

    monkeypatch.setattr(module, "save_checkpoint", killed)
    with pytest.raises(Killed):
        main(args + [f"run_dir={run_dir}", f"data.root={data_root}"])
    monkeypatch.setattr(module, "save_checkpoint", original)


def _to_old_layout(path, keys):
    """Rewrites a checkpoint in the layout before the state API: the strategy's ``keys`` at the top level,
    EPO's fallbacks as ``epo_fallbacks``; the entries that layout did not have dropped."""
    state = torch.load(path, weights_only=False)
    strategy = state.pop("strategy")
    state.update({k: strategy[k] for k in keys})
    state["epo_fallbacks"] = strategy["solver"].get("fallbacks", 0)
    torch.save(state, path)


SMALL = ["benchmark.max_rows=1500", "train.batch_size=256", "hnet.hidden=[20]", "target.hidden=[10]",
         "benchmark.n_eval_rays=10", "progress=false"]  # tests/reliability/test_runs.py
PARETO_EPO = ["benchmark=adult", "strategy=phn_epo", "train.epochs=3"] + SMALL
SEQ = ["benchmark=multimnist_seq", "strategy=phn_cl", "benchmark.n_tasks=2", "benchmark.max_train=300",
       "benchmark.max_test=100", "train.iterations=20", "hnet.hidden=[20]", "target.hidden=[16]",
       "benchmark.n_eval_rays=5", "progress=false"]  # tests/test_image_pareto_cli.py


@pytest.mark.slow
@pytest.mark.parametrize("which", ["pareto", "continual_pareto"])
def test_runs_resume_an_old_layout_checkpoint_like_an_uninterrupted_run(which, tmp_path, data_root, monkeypatch):
    from cl_moo.run import main

    module, args, keys, numbers = {
        "pareto": (pareto_runner, PARETO_EPO, pareto_runner.PHN_OLD_STRATEGY_KEYS,
                   ("hypervolume", "test_losses", "test_losses_trained_objectives", "epo_fallbacks",
                    "epo_rays_solved")),
        "continual_pareto": (continual_pareto_runner, SEQ, continual_pareto_runner.OLD_STRATEGY_KEYS,
                             ("hv_matrix", "fronts_just_after", "fronts_final")),
    }[which]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(args + [f"run_dir={full}", f"data.root={data_root}"]) == 0
    _interrupted_run(module, args, part, data_root, monkeypatch)
    _to_old_layout(part / "checkpoint.pt", keys)
    assert "strategy" not in torch.load(part / "checkpoint.pt", weights_only=False)
    assert main(args + [f"run_dir={part}", f"data.root={data_root}", "resume=true"]) == 0
    assert "resuming" in (part / "log.txt").read_text()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, part))
    for key in numbers:
        assert a[key] == b[key], key


def test_a_call_refused_for_other_data_keeps_the_saved_pass_for_the_next_call():
    """train() with data of another length is refused and leaves the loaded pass pending: the next call with
    the right data continues exactly as without the mistake."""
    data = regression(32)
    a, save, record = regressor(), SaveAfterIteration(2), Record()
    with_plugins(a, save, record)
    a.train(data, steps=10)
    b, rest = regressor(), Record()
    b.load_state_dict(save.state)
    with pytest.raises(ValueError, match="same data"):
        b.train(regression(24), steps=2)
    with_plugins(b, rest)
    b.train(data, steps=8)
    assert rest.losses == record.losses[2:]
