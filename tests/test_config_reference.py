"""docs/config.md lists every configuration key with its default, allowed values and meaning, and is
regenerated whenever a config changes."""
from benchmarks.command_line import config_reference


def test_the_committed_reference_is_the_generated_one():
    assert config_reference.main(["--check"]) == 0, "run: python -m benchmarks.command_line.config_reference"


def test_every_key_has_a_meaning_and_a_row():
    assert config_reference.undocumented() == []
    text = config_reference.render()
    for key in ("`seed`", "`train.lr`", "`hnet.mip`", "`benchmark.ref_point`", "`strategy.solver`", "`strategy.beta`"):
        assert f"| {key} |" in text
    assert "ls \\| epo \\| tch \\| stch \\| hvi" in text  # the solver registry's choices


def test_a_key_without_a_doc_is_reported(monkeypatch):
    monkeypatch.setattr(config_reference, "meanings", lambda: {})
    assert "seed" in config_reference.undocumented()
    assert config_reference.main(["--check"]) == 1
