"""What the runners write to TensorBoard, read back with TensorBoard's own EventAccumulator: HParams and the
config text, one continuous global step across an interrupted-then-resumed run, HV per epoch (Pareto), HV
forgetting per task and the fronts per evaluation (continual Pareto); and the figures' titles, masks and
seed captions (issue 22, items 3 and 4)."""
import gc
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import benchmarks.runners.cl_runner as cl_runner
import benchmarks.runners.pareto_runner as pareto_runner
from benchmarks.runners.cl_figures import forgetting_figure, matrix_figure, pyplot
from benchmarks.runners.continual_pareto_runner import fronts_figure
from cl_moo.run import main

REGRESSION = ["benchmark=regression", "train.iterations=30", "device=cpu", "progress=false"]
ADULT = ["benchmark=adult", "strategy=phn_ls", "benchmark.max_rows=1500", "train.epochs=3", "train.batch_size=256",
         "hnet.hidden=[20]", "target.hidden=[10]", "benchmark.n_eval_rays=6", "device=cpu", "progress=false"]
SEQ = ["benchmark=multimnist_seq", "strategy=phn_cl", "benchmark.n_tasks=2", "benchmark.max_train=300",
       "benchmark.max_test=100", "train.iterations=20", "hnet.hidden=[20]", "target.hidden=[16]",
       "benchmark.n_eval_rays=5", "benchmark.ref_point=[3.0,3.0]", "device=cpu", "progress=false"]  # HV > 0 at chance


class Killed(BaseException):
    """A simulated kill (not an Exception, not the KeyboardInterrupt that cl_moo.run turns into a message)."""


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def steps(accumulator: EventAccumulator, tag: str):
    return [e.step for e in accumulator.Scalars(tag)]


def hparams_of(accumulator: EventAccumulator):
    """(the HParams session's hyperparameters, the metric tags the experiment names)."""
    content = accumulator.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert "_hparams_/session_end_info" in content
    values = {k: (v.string_value if v.HasField("string_value") else v.number_value)
              for k, v in start.session_start_info.hparams.items()}
    return values, [m.name.tag for m in experiment.experiment.metric_infos]


def config_text(accumulator: EventAccumulator) -> str:
    return accumulator.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()


# ---------------------------------------------------------------- continual: HParams, config, steps across a resume
@pytest.mark.slow
def test_continual_run_resumed_mid_task_continues_its_steps_and_writes_hparams(tmp_path, monkeypatch, one_thread):
    out = tmp_path / "run"
    original = cl_runner.LossRecorder.after_training_iteration

    def killed_mid_task_1(self, strategy, **kwargs):
        original(self, strategy, **kwargs)
        if strategy.total_iterations == 50:  # task 1 runs iterations 31-60; its checkpoint comes at 60
            raise Killed

    monkeypatch.setattr(cl_runner.LossRecorder, "after_training_iteration", killed_mid_task_1)
    with pytest.raises(Killed):
        main(REGRESSION + [f"run_dir={out}"])
    gc.collect()  # Avalanche's writer is closed when its logger goes
    first = events(out / "tensorboard")
    assert steps(first, "train/task_loss") == [10, 20, 30, 40, 50]  # 40 and 50: after the checkpoint at 30
    monkeypatch.setattr(cl_runner.LossRecorder, "after_training_iteration", original)
    assert main(REGRESSION + [f"run_dir={out}", "resume=true"]) == 0
    gc.collect()

    tb = events(out / "tensorboard")
    for tag in tb.Tags()["scalars"]:
        counts = Counter(steps(tb, tag))
        assert max(counts.values()) == 1, (tag, counts)  # no step written twice
        assert steps(tb, tag) == sorted(counts), tag
    assert steps(tb, "train/task_loss") == list(range(10, 91, 10))  # continues past the first part: 60..90
    assert steps(tb, "mse/task0") == [0, 1, 2]
    # Avalanche's logger: its clock continues from the checkpoint (evaluations after 30, 60, 90 iterations)
    avalanche = events(out / "tensorboard" / "avalanche")
    tags = avalanche.Tags()["scalars"]
    assert tags and not any("Forgetting" in t or "BWT" in t for t in tags)  # one forgetting definition: ours
    for tag in tags:
        assert steps(avalanche, tag) == [30, 60, 90][-len(steps(avalanche, tag)):], tag

    # HParams: the resolved config (dotted keys, lists as text) and the final metrics, in the run's own folder
    values, metrics = hparams_of(tb)
    assert values["benchmark.name"] == "regression" and values["train.iterations"] == 30
    assert values["target.hidden"] == "[10, 10]" and "resume" not in values and "run_dir" not in values  # where, not what
    assert not any(k.startswith("benchmark.presets") for k in values)
    assert set(metrics) == {"final/average_mse", "final/average_forgetting", "final/bwt", "final/wall_time_s"}
    m = json.loads((out / "metrics.json").read_text())
    assert tb.Scalars("final/average_mse")[-1].value == pytest.approx(m["average_final"], rel=1e-6)
    assert tb.Scalars("final/average_forgetting")[-1].value == pytest.approx(m["average_forgetting"], abs=1e-7)
    assert not [p for p in (out / "tensorboard").iterdir() if p.is_dir() and p.name != "avalanche"]  # no subfolder
    # the config as YAML text, written once (by the first part), with what forgetting/bwt mean
    text = config_text(tb)
    assert "```yaml" in text and "iterations: 30" in text and "presets" not in text
    assert "forgetting/average" in text and "Avalanche" in text
    assert len(tb.Tensors("config/text_summary")) == 1


# ---------------------------------------------------------------- Pareto: HV per epoch
@pytest.mark.slow
def test_pareto_run_logs_the_front_every_epoch_when_cheap_and_hparams(tmp_path, data_root, monkeypatch, one_thread):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    monkeypatch.setattr(pareto_runner, "HV_EVAL_FREE_S", 60.0)  # cheap here, whatever the machine's load
    out = tmp_path / "run"
    assert main(ADULT + [f"run_dir={out}"]) == 0
    tb = events(out / "tensorboard")
    per_epoch = steps(tb, "pareto/hypervolume")
    assert len(per_epoch) == 3 and per_epoch == sorted(set(per_epoch)) and per_epoch[0] > 0  # epochs 1, 2, 3
    m = json.loads((out / "metrics.json").read_text())
    assert tb.Scalars("pareto/hypervolume")[-1].value == pytest.approx(m["hypervolume"], rel=1e-6)  # the final
    assert steps(tb, "pareto/uniformity_mean") == per_epoch
    assert [e.step for e in tb.Images("pareto/front")] == per_epoch
    values, metrics = hparams_of(tb)
    assert values["strategy.name"] == "phn_ls" and values["benchmark.n_eval_rays"] == 6
    assert {"final/hypervolume", "final/uniformity_mean"} <= set(metrics)
    assert "name: phn_ls" in config_text(tb) and "ref_point:" in config_text(tb)

    # expensive evaluations: only the first epoch's, then the final one
    monkeypatch.setattr(pareto_runner, "HV_EVAL_FREE_S", 0.0)
    monkeypatch.setattr(pareto_runner, "HV_EVAL_SHARE", 0.0)
    assert main(ADULT + [f"run_dir={tmp_path / 'dear'}"]) == 0
    assert len(steps(events(tmp_path / "dear" / "tensorboard"), "pareto/hypervolume")) == 2


def test_pareto_front_figure_shows_title_hv_and_reference_point():
    losses = np.array([[0.2, 0.8, 0.1], [0.5, 0.4, 0.3], [0.9, 0.1, 0.2]])
    fig = pareto_runner.pareto_figure(losses, ["BCE", "FP gap", "FN gap"], ref=[1.0, 1.0, 1.0], hv=0.4321,
                                   title="adult phn_ls: test losses per evaluation ray, epoch 2/3")
    assert "hypervolume 0.4321" in fig._suptitle.get_text() and "[1.0, 1.0, 1.0]" in fig._suptitle.get_text()
    assert "epoch 2/3" in fig._suptitle.get_text()
    for ax in fig.axes:
        labels = ax.get_legend_handles_labels()[1]
        assert "HV reference point" in labels and ax.get_xlabel() and ax.get_ylabel()
    pyplot().close(fig)


# ---------------------------------------------------------------- continual Pareto: HV forgetting, fronts per task
@pytest.mark.slow
def test_continual_pareto_run_logs_hv_forgetting_and_fronts_per_task(tmp_path, data_root, one_thread):
    out = tmp_path / "seq"
    assert main(SEQ + [f"run_dir={out}", f"data.root={data_root}"]) == 0
    tb = events(out / "tensorboard")
    assert steps(tb, "hypervolume_forgetting/task_0") == [1]
    m = json.loads((out / "metrics.json").read_text())
    assert tb.Scalars("hypervolume_forgetting/task_0")[0].value == pytest.approx(m["hv_forgetting_relative"][0],
                                                                                rel=1e-5, abs=1e-7)
    assert steps(tb, "hypervolume_forgetting/mean_earlier_tasks") == [1]
    assert [e.step for e in tb.Images("pareto_cl/fronts")] == [0, 1]  # one per evaluation, not again at the end
    values, metrics = hparams_of(tb)
    assert values["strategy.name"] == "phn_cl" and "final/hv_forgetting_relative_mean" in metrics
    assert "hypervolume_forgetting/task_j" in config_text(tb)


def test_fronts_figure_says_hv_before_and_after_and_marks_the_reference_point():
    front = [[0.5, 1.5], [1.0, 1.0], [1.5, 0.5]]
    worse = [[0.8, 1.8], [1.3, 1.3], [1.8, 0.8]]
    fig = fronts_figure([[front], [worse, front]], ["CE top-left", "CE bottom-right"], [2.0, 2.0])
    first = fig.axes[0]
    assert first.get_title().startswith("task 0\nHV ") and "->" in first.get_title()
    assert "HV reference point" in first.get_legend_handles_labels()[1]
    assert "reference point [2.0, 2.0]" in fig._suptitle.get_text()
    pyplot().close(fig)


# ---------------------------------------------------------------- figures: masked untrained cells, seed captions
def test_heatmap_masks_untrained_cells_and_says_mean_over_seeds_only_for_several():
    matrix = np.array([[0.9, 0.1, 0.12], [0.85, 0.95, 0.1], [0.8, 0.9, 0.97]])
    fig = matrix_figure(matrix, "accuracy", "pmnist hnet_cl")
    data = fig.axes[0].images[0].get_array()
    assert np.ma.isMaskedArray(data)
    assert data.mask.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    image = fig.axes[0].images[0]
    assert image.norm.vmin == pytest.approx(0.8) and image.norm.vmax == pytest.approx(0.97)  # chance cells left out
    title = fig.axes[0].get_title()
    assert title.startswith("pmnist hnet_cl\naccuracy on task j after training task i") and "grey" in title
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts) + fig.axes[1].get_ylabel()
    assert "mean over" not in texts + title
    pyplot().close(fig)

    fig = matrix_figure(matrix, "accuracy", "group", n_seeds=3)
    assert "mean over 3 seeds" in fig.axes[1].get_ylabel() and "mean over 3 seeds" in fig.axes[0].get_title()
    pyplot().close(fig)
    # not evaluated (None -> NaN) is masked too
    partial = np.array([[0.9, np.nan], [np.nan, 0.8]])
    fig = matrix_figure(partial, "accuracy", "current-task evaluation")
    assert fig.axes[0].images[0].get_array().mask.tolist() == [[False, True], [True, False]]
    pyplot().close(fig)

    fig = forgetting_figure(matrix, "accuracy", "pmnist hnet_cl")
    assert all(ax.get_title() for ax in fig.axes) and "mean over" not in fig._suptitle.get_text()
    pyplot().close(fig)
    fig = forgetting_figure(matrix, "accuracy", "group", n_seeds=5)
    assert "mean over 5 seeds" in fig._suptitle.get_text()
    pyplot().close(fig)


def test_a_fresh_start_over_old_events_purges_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from benchmarks.runners.tb_logging import open_writer

    folder = tmp_path / "tensorboard"
    old = open_writer(folder)
    for step in range(5):
        old.add_scalar("train/loss", 1.0, step)
    old.close()
    new = open_writer(folder)  # e.g. a run killed before its first checkpoint, started again
    for step in range(3):
        new.add_scalar("train/loss", 2.0, step)
    new.close()
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(0, 2.0), (1, 2.0), (2, 2.0)]
