import json

import pytest

import benchmarks.runners.cl_runner as cl_runner
from benchmarks.configuration.config import ConfigError, load_config
from cl_moo.run import main


class Killed(BaseException):
    """A simulated kill: not an Exception, and not the KeyboardInterrupt that cl_moo.run turns into a message."""


TINY = [
    "benchmark=pmnist", "benchmark.n_tasks=3", "benchmark.train_per_task=200", "benchmark.test_per_task=100",
    "benchmark.pad_to=28", "train.iterations=15", "train.batch_size=32", "hnet.hidden=[20]", "target.hidden=[30]",
    "hnet.emb_dim=8", "hnet.chunk_size=1000", "progress=false",
]


def test_unknown_key_lists_valid_keys(capsys):
    assert main(["benchmark=pmnist", "hnet.colour=red"]) == 2
    err = capsys.readouterr().err
    assert "hnet.colour" in err and "hnet.init" in err


def test_unknown_group_key_lists_the_chosen_files_keys():
    with pytest.raises(ConfigError, match=r"for benchmark=multimnist\. Its keys: benchmark\.kind, .*benchmark\.ref_point"):
        load_config(["benchmark=multimnist", "strategy=phn_ls", "benchmark.kindd=mnist"])
    # the default strategy's keys when the group is not chosen on the command line
    with pytest.raises(ConfigError, match=r"for strategy=hnet_cl\. Its keys: strategy\.beta, "):
        load_config(["strategy.betta=0.1"])
    # a quoted choice is the same file; a deleted group falls back to the top-level keys
    with pytest.raises(ConfigError, match=r"for benchmark=adult\. Its keys"):
        load_config(["benchmark='adult'", "strategy=phn_ls", "benchmark.kindd=1"])
    with pytest.raises(ConfigError, match="Unknown configuration key. Valid keys"):
        load_config(["~benchmark=pmnist", "benchmark.kindd=1"])


def test_values_that_would_silently_mean_something_else_are_refused():
    # an empty folder would mean the default folder; a ref point a model cannot dominate gives HV 0;
    # one evaluation / regularizer ray is one lopsided trade-off, not a front
    for override, match in (("run_dir=", "run_dir=''.*leave run_dir out"), ("data.root=", "data.root=''"),
                            ("benchmark.ref_point=[1,0,1]", "every coordinate must be > 0"),
                            ("benchmark.n_eval_rays=1", "n_eval_rays=1.*>= 2"), ("run_dir=123", "quote it: run_dir='123'")):
        with pytest.raises(ConfigError, match=match):
            load_config(["benchmark=adult", "strategy=phn_ls", override])
    with pytest.raises(ConfigError, match="reg_rays=1.*>= 2"):
        load_config(["benchmark=multimnist_seq", "strategy=phn_cl", "strategy.reg_rays=1"])
    seq = ["benchmark=multimnist_seq", "strategy=phn_cl"]
    with pytest.raises(ConfigError, match=r"strategy.start='warm'.*\['phn', 'random'\]"):
        load_config(seq + ["strategy.start=warm"])
    with pytest.raises(ConfigError, match="hnet.mip=true.*pass strategy.start=random"):
        load_config(seq + ["strategy.start=phn", "hnet.mip=true"])
    assert load_config(seq + ["hnet.mip=true"]).strategy.start == "random"
    for override in ("strategy.start=null", "strategy.solver=null"):  # null is no choice either
        with pytest.raises(ConfigError, match=r"=None is not valid; choose one of"):
            load_config(seq + [override])
    assert load_config(["benchmark=adult", "strategy=phn_ls", "benchmark.ref_point=[0.5,0.5,0.5]"]).benchmark.n_eval_rays >= 2


def test_unknown_benchmark_and_bad_values_list_choices():
    with pytest.raises(ConfigError, match="pmnist.*regression"):
        load_config(["benchmark=cifar"])
    with pytest.raises(ConfigError, match=r"hnet.init='he'.*hyperfan_in"):
        load_config(["hnet.init=he"])
    with pytest.raises(ConfigError, match="preset='huge'.*valid presets"):
        load_config(["preset=huge"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config(["hnet.mip=maybe"])


def test_preset_fills_only_keys_not_given_on_the_command_line():
    cfg = load_config(["benchmark=pmnist", "preset=paper", "train.iterations=7"])
    assert list(cfg.target.hidden) == [1000, 1000] and cfg.hnet.chunk_size == 78000
    assert cfg.train.iterations == 7


def test_run_writes_metrics_and_tensorboard(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    run_dir = tmp_path / "run"
    assert main(TINY + [f"run_dir={run_dir}"]) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    assert len(m["matrix"]) == 3 and all(len(r) == 3 for r in m["matrix"])
    assert 0.0 <= m["average_final"] <= 1.0 and m["wall_time_s"] > 0
    assert m["params"]["target_weights"] == 784 * 30 + 30 + 30 * 10 + 10
    assert m["data_note"] is None  # the full 60,000-image training split was used
    assert list((run_dir / "tensorboard").glob("events.out.tfevents*"))
    # a second run into the same folder is refused instead of overwriting it
    assert main(TINY + [f"run_dir={run_dir}"]) == 2  # a usage error: the folder refuses the command


@pytest.mark.slow
def test_eval_tasks_current_evaluates_the_task_just_trained_and_all_at_the_end(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    run_dir = tmp_path / "run"
    assert main(TINY + ["train.eval_tasks=current", f"run_dir={run_dir}"]) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    evaluated = [[v is not None for v in row] for row in m["matrix"]]
    assert evaluated == [[True, False, False], [False, True, False], [True, True, True]]
    assert len(m["task_train_s"]) == len(m["task_eval_s"]) == 3 and min(m["task_train_s"]) > 0
    assert m["average_final"] == pytest.approx(sum(m["matrix"][-1]) / 3)
    assert "train " in (run_dir / "log.txt").read_text()  # per-task times in the log of an unfinished run too
    # the evaluated cells are the same numbers an all-tasks run gives (evaluation draws no random numbers)
    assert main(TINY + [f"run_dir={tmp_path / 'all'}"]) == 0
    full = json.loads((tmp_path / "all" / "metrics.json").read_text())["matrix"]
    for i, row in enumerate(m["matrix"]):
        for j, v in enumerate(row):
            if v is not None:
                assert v == pytest.approx(full[i][j], abs=1e-9), (i, j)


@pytest.mark.slow
def test_resume_after_interruption_gives_identical_metrics(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    full = tmp_path / "full"
    assert main(TINY + [f"run_dir={full}"]) == 0

    original = cl_runner.save_checkpoint
    calls = {"n": 0}

    def interrupted(path, payload):
        original(path, payload)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed  # the process dies right after experience 1's checkpoint

    monkeypatch.setattr(cl_runner, "save_checkpoint", interrupted)
    part = tmp_path / "part"
    with pytest.raises(Killed):
        main(TINY + [f"run_dir={part}"])
    assert not (part / "metrics.json").exists()
    monkeypatch.setattr(cl_runner, "save_checkpoint", original)
    assert main(TINY + [f"run_dir={part}", "resume=true"]) == 0
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((part / "metrics.json").read_text())
    assert a["matrix"] == b["matrix"]
    assert a["average_forgetting"] == b["average_forgetting"]
    assert a["health"] == b["health"]  # the monitors' findings and reference values survive the kill


def test_missing_data_file_names_the_file(tmp_path, capsys):
    assert main(TINY + [f"run_dir={tmp_path / 'r'}", f"data.root={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and str(tmp_path) in err and "CL_MOO_DATA" in err


@pytest.mark.slow
def test_run_writes_the_accuracy_figures_as_png_and_tensorboard_images(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    run_dir = tmp_path / "run"
    assert main(TINY + [f"run_dir={run_dir}"]) == 0
    for name in ("accuracy_matrix.png", "accuracy_over_time.png"):
        png = run_dir / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"accuracy/matrix", "accuracy/over_time"} <= set(events.Tags()["images"])
