"""The paper-claims command: its registry, its refusals and the generated claims page."""
import json
import re
from types import SimpleNamespace

import pytest

from benchmarks.experiments import doc_pages
from benchmarks.experiments.paper_claims import CLAIMS, ClaimOutcome, claim_module
from benchmarks.experiments.paper_claims import __main__ as cli


def _fake_claim(holds, write_figure=True):
    def run(*, seeds, quick, figure):
        if write_figure:
            figure.write_bytes(b"\x89PNG fake")
        return ClaimOutcome(holds=holds, summary=f"ratio {len(seeds) * 1.5}", numbers={"per_seed": list(seeds)},
                            checked=["ratio > 1 -> met"])

    return SimpleNamespace(PAPER="A et al., Fig. 1", CLAIM="it works", SETTING="tiny", run=run)


def test_every_registered_claim_has_its_module_contract():
    for name in CLAIMS:
        module = claim_module(name)
        keys = ("PAPER", "CLAIM", "SETTING")
        assert all(isinstance(getattr(module, key), str) and getattr(module, key) for key in keys)
        assert callable(module.run)


def test_an_unknown_claim_names_the_known_ones():
    with pytest.raises(KeyError, match="known: hyperfan_cl"):
        claim_module("mip_magnitud")


def test_holds_is_true_false_or_partly():
    with pytest.raises(ValueError, match="true, false or 'partly'"):
        ClaimOutcome(holds="yes", summary="", numbers={})


def test_a_quick_run_needs_its_own_folder(capsys):
    with pytest.raises(SystemExit):
        cli.main(["mip_magnitude", "--quick"])
    assert "pass --out DIR" in capsys.readouterr().err


def test_a_full_run_needs_three_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "claim_module", lambda name: _fake_claim(True))
    with pytest.raises(ValueError, match="at least 3 seeds"):
        cli.run_claim("fake", seeds=[0, 1], quick=False, out=tmp_path)


def test_the_record_holds_the_outcome_and_a_missing_figure_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "claim_module", lambda name: _fake_claim("partly"))
    record = cli.run_claim("fake", seeds=[0, 1, 2], quick=False, out=tmp_path)
    on_disk = json.loads((tmp_path / "fake.json").read_text())
    assert on_disk["holds"] == record["holds"] == "partly"
    assert on_disk["summary"] == "ratio 4.5" and on_disk["seeds"] == [0, 1, 2] and (tmp_path / "fake.png").is_file()
    monkeypatch.setattr(cli, "claim_module", lambda name: _fake_claim(True, write_figure=False))
    with pytest.raises(RuntimeError, match="wrote no figure"):
        cli.run_claim("nofig", seeds=[0, 1, 2], quick=False, out=tmp_path)


def test_the_claims_page_shows_each_verdict_and_refuses_quick_runs(tmp_path, monkeypatch):
    folder = tmp_path / "paper_claims"
    for name, holds in (("a_claim", False), ("b_claim", "partly")):
        monkeypatch.setattr(cli, "claim_module", lambda _, holds=holds: _fake_claim(holds))
        cli.run_claim(name, seeds=[0, 1, 2], quick=False, out=folder)
    page = doc_pages.render_paper_claims(tmp_path)
    assert "| [a_claim](#a_claim) | A et al., Fig. 1 | **does not hold** |" in page
    assert "**Here: holds partly.** ratio 4.5" in page and "* ratio > 1 -> met" in page
    cli.run_claim("c_claim", seeds=[0], quick=True, out=folder)
    with pytest.raises(ValueError, match=r"quick \(test-size\) runs: \['c_claim'\]"):
        doc_pages.render_paper_claims(tmp_path)


def test_the_readme_states_each_recorded_verdict():
    readme = (cli.ROOT / "README.md").read_text()
    records = [json.loads(p.read_text()) for p in sorted(cli.RESULTS.glob("*.json"))]
    assert {r["name"] for r in records} == set(CLAIMS), "every claim has a recorded result"
    for r in records:
        assert f"(`{r['name']}`): **{doc_pages.HOLDS[r['holds']]}**" in readme, r["name"]


@pytest.mark.parametrize(
    "seeds, message",
    [
        (["0", "0", "1"], r"--seeds must be distinct .*\[0\] repeated in \[0, 0, 1\]"),
        (["0", "0", "1", "2"], r"--seeds must be distinct .*\[0\] repeated in \[0, 0, 1, 2\]"),
        (["0", "-1", "2"], r"--seeds must be non-negative integers, got \[-1\]"),
    ],
)
def test_duplicate_or_negative_seeds_are_refused_by_the_command(seeds, message, capsys, monkeypatch):
    monkeypatch.setattr(cli, "run_claim", lambda *a, **k: pytest.fail("run_claim must not be reached"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["mip_magnitude", "--seeds", *seeds])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err
