"""The image Pareto benchmarks from the command line: ``benchmark=multimnist`` (PHN's LeNet, any
solver, the separate-LS baseline) and ``benchmark=multimnist_seq strategy=phn_cl`` (continual fronts),
with metrics.json, TensorBoard, figures, checkpoints and resume."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmarks.runners.continual_pareto_runner as continual_pareto_runner
from cl_moo.run import main

pytestmark = pytest.mark.slow  # image Pareto runs end to end: outside the quick subset (pytest -m 'not slow')


class Killed(BaseException):
    """A simulated kill: not an Exception, and not the KeyboardInterrupt that cl_moo.run turns into a message."""


MULTI = ["benchmark=multimnist", "benchmark.max_train=600", "benchmark.max_test=200", "train.epochs=1",
         "hnet.hidden=[20]", "benchmark.n_eval_rays=5", "progress=false"]
SEQ = ["benchmark=multimnist_seq", "strategy=phn_cl", "benchmark.n_tasks=2", "benchmark.max_train=300",
       "benchmark.max_test=100", "train.iterations=20", "hnet.hidden=[20]", "target.hidden=[16]",
       "benchmark.n_eval_rays=5", "progress=false"]


def run(args, out, data_root, *extra):
    return main(list(args) + [f"run_dir={out}", f"data.root={data_root}", *extra])


def metrics(out):
    return json.loads((Path(out) / "metrics.json").read_text())


def stop_after_first_checkpoint(monkeypatch, exception):
    """The continual Pareto runner raises ``exception`` right after writing its first checkpoint;
    returns the function that puts the real ``save_checkpoint`` back."""
    original = continual_pareto_runner.save_checkpoint

    def stopped(path, payload):
        original(path, payload)
        raise exception

    monkeypatch.setattr(continual_pareto_runner, "save_checkpoint", stopped)
    return lambda: monkeypatch.setattr(continual_pareto_runner, "save_checkpoint", original)


@pytest.mark.parametrize("extra", [["strategy=phn_ls"], ["strategy=phn_epo", "benchmark.kind=fashion_mnist"],
                                   ["strategy=phn_ls", "strategy.solver=tch", "benchmark.kind=fashion"]])
def test_multimnist_pareto_run_writes_its_front(tmp_path, data_root, one_thread, extra):
    out = tmp_path / "run"
    assert run(MULTI + extra, out, data_root) == 0
    m = metrics(out)
    losses = np.array(m["test_losses"])
    assert losses.shape == (5, 2) and m["objectives"] == ["CE top-left", "CE bottom-right"]
    assert np.all((losses > 0) & (losses < 5))  # two 10-way cross-entropies after one short epoch
    assert m["ref_point"] == [2.0, 2.0] and m["hypervolume"] == pytest.approx(
        __import__("cl_moo").hypervolume(losses, [2.0, 2.0]))
    assert m["config"]["benchmark"]["kind"] == next((e.split("=")[1] for e in extra if "kind" in e), "mnist")
    assert m["built"]["hnet"]["hidden"] == [20]
    assert m["built"]["target"] == {"class": "LeNetTarget", "linear_out_features": [50, 10, 10]}
    assert m["data_sizes"] == {"train": 600, "test": 200} and m["data_note"] is None
    assert (out / "pareto_front.png").stat().st_size > 1000 and list((out / "tensorboard").glob("events.out*"))


@pytest.mark.slow
def test_separate_ls_baseline_trains_one_lenet_per_ray(tmp_path, data_root, one_thread):
    out = tmp_path / "ls"
    assert run([o for o in MULTI if not o.startswith("hnet.")]
               + ["strategy=ls_separate", "benchmark.n_eval_rays=3", "train.epochs=3", "train.batch_size=32"],
               out, data_root) == 0
    m = metrics(out)
    assert len(m["test_losses"]) == 3
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert len(state["models"]) == 3 and "conv1.weight" in state["models"][0]
    # the left-heavy ray's model is better on the left item than the right-heavy ray's model
    rays, losses = np.array(m["rays"]), np.array(m["test_losses"])
    left, right = int(np.argmax(rays[:, 0])), int(np.argmax(rays[:, 1]))
    assert losses[left, 0] < losses[right, 0] and losses[right, 1] < losses[left, 1]


def test_bad_image_benchmark_settings_are_refused(tmp_path, capsys):
    assert main(["benchmark=multimnist", "benchmark.kind=cifar"]) == 2
    assert "benchmark.kind='cifar' is not valid; choose one of ['mnist', 'fashion', 'fashion_mnist']" in \
        capsys.readouterr().err
    assert main(["benchmark=multimnist", "strategy=phn_cl"]) == 2
    err = capsys.readouterr().err
    assert "does not apply" in err and "benchmark=multimnist_seq with strategy=phn_cl" in err
    assert main(["benchmark=multimnist", "benchmark.ref_point=[2.0]"]) == 2
    assert "one per objective of benchmark=multimnist (CE top-left, CE bottom-right)" in capsys.readouterr().err
    assert main(["benchmark=multimnist", "strategy=phn_ls", "strategy.solver=hvi"]) == 2  # presets: 1 ray per step
    assert "needs strategy.rays_per_step >= 2 (now 1); pass e.g. strategy.rays_per_step=4" in capsys.readouterr().err
    assert main(["benchmark=multimnist_seq", "strategy=phn_cl", "strategy.emb_std=0"]) == 2
    assert "strategy.emb_std=0 is not valid" in capsys.readouterr().err
    out = tmp_path / "nodata"
    assert main(MULTI + ["strategy=phn_ls", f"run_dir={out}", f"data.root={tmp_path}"]) == 1
    assert "MNIST/raw/train-images-idx3-ubyte.gz" in capsys.readouterr().err


@pytest.fixture(scope="module")
def seq_full(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("seq") / "full"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run(SEQ, out, data_root) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_continual_pareto_run_reports_fronts_before_and_after(seq_full):
    m = metrics(seq_full)
    hv = m["hv_matrix"]
    assert len(hv) == 2 and hv[0][1] is None and all(v is not None for v in hv[1])
    assert m["hv_just_after"] == [hv[0][0], hv[1][1]] and m["hv_final"] == hv[1]
    assert np.array(m["fronts_just_after"]).shape == (2, 5, 2) and np.array(m["fronts_final"]).shape == (2, 5, 2)
    assert m["fronts_final"][1] == m["fronts_just_after"][1]  # the last task: nothing trained after it
    assert m["fronts_final"][0] != m["fronts_just_after"][0]  # task 0's front moved while task 1 trained
    assert m["hypervolume"] == pytest.approx(float(np.mean(m["hv_final"])))
    assert m["config"]["strategy"]["beta"] == 2.0 and m["built"]["hnet"]["emb_std"] == 0.1
    for name in ("fronts.png", "hypervolume_matrix.png", "hypervolume_over_time.png"):
        assert (seq_full / name).stat().st_size > 1000, name
    assert list((seq_full / "tensorboard").glob("events.out*"))


def test_the_regularizer_keeps_the_first_front_closer(seq_full, tmp_path, data_root, one_thread):
    """Without the regularizer (beta = 0) task 0's front moves further while task 1 trains."""
    free = tmp_path / "free"
    assert run(SEQ + ["strategy.beta=0"], free, data_root) == 0

    def drift(out):
        m = metrics(out)
        return float(np.abs(np.array(m["fronts_final"][0]) - np.array(m["fronts_just_after"][0])).sum())

    assert metrics(free)["fronts_just_after"][0] == metrics(seq_full)["fronts_just_after"][0]  # same task 0
    assert drift(seq_full) < 0.5 * drift(free)


@pytest.mark.slow
def test_continual_pareto_resumes_after_a_task_like_an_uninterrupted_run(seq_full, tmp_path, data_root, one_thread,
                                                                         monkeypatch, capsys):
    part = tmp_path / "part"
    restore = stop_after_first_checkpoint(monkeypatch, Killed)
    with pytest.raises(Killed):
        run(SEQ, part, data_root)
    restore()
    assert not (part / "metrics.json").exists()
    assert run(SEQ, part, data_root, "resume=true", "strategy.beta=0.4") == 2
    assert "strategy.beta: 2.0 -> 0.4" in capsys.readouterr().err
    assert run(SEQ, part, data_root, "resume=true") == 0
    assert "after task 0 of 2" in (part / "log.txt").read_text()
    a, b = metrics(seq_full), metrics(part)
    for key in ("hv_matrix", "fronts_just_after", "fronts_final", "hypervolume"):
        assert a[key] == b[key], key


def test_reproduced_phn_hypervolumes_match_only_their_setting():
    from benchmarks.data.published import published_for

    config = {"benchmark.name": "multimnist", "benchmark.kind": "fashion_mnist", "strategy.name": "phn_epo",
              "strategy.solver": "epo"}
    entry = published_for(config, "hypervolume")
    assert entry.value == 2.74 and "Chen & Kwok" in entry.source and entry.note == "another group's runs of PHN"
    assert published_for({**config, "strategy.solver": "tch"}, "hypervolume") is None  # another solver: no number
    assert published_for({**config, "benchmark.name": "multimnist_seq"}, "hypervolume") is None


@pytest.mark.slow
def test_more_images_than_the_split_holds_is_said_and_recorded(tmp_path, data_root, one_thread, capsys):
    out = tmp_path / "big"
    assert run(MULTI + ["strategy=phn_ls", "benchmark.max_test=1000000000", "benchmark.n_eval_rays=2"], out,
               data_root) == 0
    m = metrics(out)
    assert m["data_sizes"]["test"] == 20000
    assert m["data_note"] == "benchmark.max_test=1000000000 but the split holds 20000: all 20000 were used"
    assert "NOTE: benchmark.max_test=1000000000" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_ends_with_a_resume_hint_not_a_traceback(tmp_path, data_root, one_thread, monkeypatch, capsys):
    out = tmp_path / "ctrl_c"
    restore = stop_after_first_checkpoint(monkeypatch, KeyboardInterrupt)
    assert run(SEQ, out, data_root) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and f"resume=true (run_dir={out})" in err and "Traceback" not in err
    restore()
    assert run(SEQ, out, data_root, "resume=true") == 0 and len(metrics(out)["hv_matrix"]) == 2


@pytest.mark.slow
def test_a_front_that_learned_nothing_gets_a_hypervolume_note(tmp_path, data_root, capsys):
    # a chunked hypernetwork with hyperfan init at lr 1e-3 collapses to chance-level outputs: HV 0
    out = tmp_path / "collapsed"
    assert run(["benchmark=multimnist", "strategy=phn_ls", "hnet.chunked=true", "hnet.chunk_size=2000",
                "hnet.chunk_emb_dim=8", "hnet.init=hyperfan_in", "train.lr=1e-3", "benchmark.max_train=2000",
                "benchmark.max_test=200", "train.batch_size=32", "train.epochs=2", "progress=false"], out, data_root) == 0
    m = metrics(out)
    assert m["hypervolume"] == 0.0
    note = m["hypervolume_note"]
    assert "hypervolume 0: none of its 25 models" in note and "best per objective: CE top-left" in note
    best = np.min(np.asarray(m["test_losses"]), axis=0)
    assert f"CE top-left {best[0]:.4g}" in note and "check train.lr and hnet.init" in note
    assert "WARNING: training health: the front: hypervolume 0" in capsys.readouterr().err
    assert "WARNING: training health: the front: hypervolume 0" in (out / "log.txt").read_text()
    health = json.loads((out / "metrics.json").read_text())["health"]
    assert not health["ok"] and health["findings"][0]["kind"] == "hypervolume_zero"


def test_zero_hypervolume_note_only_for_fronts_that_dominate_nothing():
    from benchmarks.runners.run_records import zero_hypervolume_note

    names = ["a", "b"]
    assert zero_hypervolume_note([[2.5, 0.1], [0.1, 2.5]], [2.0, 2.0], names, "front") is not None  # each misses one
    assert zero_hypervolume_note([[2.5, 0.1], [1.9, 1.9]], [2.0, 2.0], names, "front") is None
    assert "best per objective: a 0.1, b 0.1" in zero_hypervolume_note([[2.5, 0.1], [0.1, 2.5]], [2, 2], names, "front")
