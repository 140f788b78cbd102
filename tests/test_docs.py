"""Every code block in README.md and docs/ runs, the generated pages are up to date, and the pages
are the ones the site builds.

* ```python blocks are exec'ed, page by page in one namespace (a later block may use an earlier one's
  names), in a temporary folder, with the real data from CL_MOO_DATA.
* ```bash blocks: each ``python -m cl_moo.run`` line is checked by composing its configuration
  (``--cfg job``; a sweep ``-m`` through the same check that runs before any job starts), so a wrong
  key, value or preset fails; ``--help`` / ``--cfg`` / ``--info`` lines run as written; a benchmark
  script must be a module with a ``main``; the set-up commands must be the install and test commands
  (the test command byte-identical to ``.ci/run``'s). Any other line fails: a new kind of command needs
  a rule here.
* ```text / ```console blocks are output and are not run (``tests/test_quickstart.py`` checks the
  quickstart's numbers against a real run).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
LANGS = {"python", "bash", "text", "console"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
PLACEHOLDERS = {"<date>/<time>": "2026-01-01/00-00-00", "<partition>": "gpu", "<head>": "localhost",
                "<name>": "study"}


def blocks(path: Path) -> List[Tuple[str, str, int]]:
    """(language, code, line) of each fenced block of a page, the list-item indent removed."""
    text = path.read_text()
    found = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        body = "".join(line[indent:] if line[:indent].strip() == "" else line
                       for line in m["body"].splitlines(keepends=True))
        found.append((m["lang"], body, text[:m.start()].count("\n") + 1))
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def ci_command() -> str:
    """The last line of .ci/run: the README's test command."""
    return (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]


def shell_lines() -> List[Tuple[str, str]]:
    """(where, command) of every command in the pages' bash blocks, comments removed."""
    lines = []
    for page in PAGES:
        for lang, code, line in blocks(page):
            if lang in ("bash", "sh", "shell"):
                for offset, raw in enumerate(code.splitlines()):
                    command = raw.split("  #")[0].strip()
                    if command and not command.startswith("#"):
                        lines.append((f"{_rel(page)}:{line + 1 + offset}", command))
    return lines


def _cl_moo_run_args(command: str) -> List[str]:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    tokens = shlex.split(command)
    start = tokens.index("cl_moo.run") + 1
    return tokens[start:]


def check_cl_moo_run(command: str) -> None:
    """Composes (and checks) the configuration the command would run with; raises AssertionError."""
    from benchmarks.configuration.config import ConfigError
    from cl_moo.run import main

    args = _cl_moo_run_args(command)
    if "-m" in args or "--multirun" in args:
        from benchmarks.command_line.sweep import prepare_sweep

        if "resume=true" in args:  # a resume needs the interrupted sweep's folder: check the sweep it finishes
            args = [a for a in args if a != "resume=true"]
        try:
            prepare_sweep(args)
        except ConfigError as exc:
            raise AssertionError(f"{command}: {exc}") from exc
        return
    shows = {"--help", "-h", "--cfg", "-c", "--info", "-i"} & set(args)
    argv = args if shows else [*args, "--cfg", "job"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, f"{command}: exit {code}: {err.getvalue().strip()}"
    assert out.getvalue().strip(), f"{command}: printed nothing"


def check_command(command: str) -> None:
    """One documented command, by kind (see the module docstring)."""
    if command.startswith("python3 -m venv .venv && "):
        steps = command.split(" && ")
        install = re.fullmatch(r'\.venv/bin/pip install -q -c constraints\.txt -e (\.|"\.\[(?P<extras>[a-z,]+)\]")',
                               steps[1])
        assert install, f"{command}: the install step is not `pip install -q -c constraints.txt -e ...`"
        setup = (ROOT / "setup.py").read_text()
        for extra in (install["extras"] or "").split(","):
            assert not extra or f'"{extra}":' in setup, f"{command}: setup.py has no extra {extra!r}"
        if "pytest" in command:
            assert command == ci_command(), "the test command differs from what .ci/run runs"
        elif len(steps) > 2:  # set-up command 1: install, then the main job
            assert len(steps) == 3 and "cl_moo.run" in steps[2], command
            check_cl_moo_run(steps[2])
        return
    if re.match(r"(\S+=\S+ )*(\.venv/bin/)?python3? -m cl_moo\.run( |$)", command):
        check_cl_moo_run(command)
        return
    match = re.match(r"(\.venv/bin/)?python3? -m (?P<module>(benchmarks|cl_moo)(\.\w+)+)", command)
    if match:
        module = importlib.import_module(match["module"])
        assert callable(getattr(module, "main", None)), f"{command}: {match['module']} has no main()"
        return
    match = re.match(r"(\S+=\S+ )*bash (?P<script>\S+)", command)
    if match:
        assert (ROOT / match["script"]).is_file(), f"{command}: no such script"
        return
    raise AssertionError(f"{command}: no rule in tests/test_docs.py checks this kind of command")


# ---------------------------------------------------------------------------------------------------


def test_every_block_has_a_language_the_tests_know():
    unknown = [f"{_rel(p)}:{line} ```{lang}" for p in PAGES for lang, _, line in blocks(p) if lang not in LANGS]
    assert not unknown, unknown
    assert sum(len(blocks(p)) for p in PAGES) >= 15  # the parser found the blocks


def test_the_test_command_is_what_ci_runs_and_builds_the_docs():
    command = ci_command()
    assert ".venv/bin/mkdocs build --strict" in command and '-e ".[test,docs]"' in command
    for page in (ROOT / "README.md", DOCS / "quickstart.md"):
        shown = [c for lang, code, _ in blocks(page) if lang == "bash" for c in code.splitlines() if "pytest" in c]
        assert shown == [command], f"{_rel(page)}: set-up command 2 is not .ci/run's command"


@pytest.mark.parametrize("where,command", shell_lines(), ids=lambda v: v if ":" in v else None)
def test_shell_command(where, command, tmp_path, monkeypatch, data_root):
    monkeypatch.chdir(tmp_path)  # sweeps check their folder; nothing is written
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    check_command(command)


@pytest.mark.parametrize("command", [
    "python -m cl_moo.run benchmark=pmnist train.lrr=0.1",                      # a misspelled key
    "python -m cl_moo.run benchmark=pmist",                                     # a misspelled benchmark
    "python -m cl_moo.run -m benchmark=regression hnet.init=hyperfan_in,he",   # a bad value in a sweep
    "python -m benchmarks.no_such_script",
    "rm -rf runs",                                                              # no rule for it
    "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e \".[test]\" && "
    "CL_MOO_DATA=../shared/data .venv/bin/python -m pytest -q tests",          # not .ci/run's command
])
def test_a_wrong_command_fails_the_check(command, tmp_path, monkeypatch, data_root):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    with pytest.raises((AssertionError, ModuleNotFoundError)):
        check_command(command)


PYTHON_PAGES = [p for p in PAGES if any(lang == "python" for lang, _, _ in blocks(p))]


@pytest.mark.slow  # trains small models: 1-15 s per page on 2 cores
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=_rel)
def test_python_blocks_run(page, tmp_path, monkeypatch, data_root, one_thread):
    monkeypatch.chdir(tmp_path)  # checkpoints and runs land here
    monkeypatch.setenv("CL_MOO_DATA", str(data_root))
    namespace: Dict[str, object] = {"__name__": "__docs__"}
    for lang, code, line in blocks(page):
        if lang != "python":
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, f"{_rel(page)}:{line}", "exec"), namespace)


def test_a_failing_python_block_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n   ```python\n   assert 1 + 1 == 3\n   ```\n")
    [(lang, code, _)] = blocks(page)
    assert lang == "python" and code == "assert 1 + 1 == 3\n"
    with pytest.raises(AssertionError):
        exec(compile(code, str(page), "exec"), {})


# ---------------------------------------------------------------------------------------------------
# generated pages and the site's navigation


def test_the_generated_pages_are_up_to_date():
    from benchmarks.experiments import doc_pages

    assert doc_pages.main(["--check"]) == 0, "run: python -m benchmarks.experiments.doc_pages"


def test_a_changed_result_makes_the_results_page_stale(tmp_path):
    import json
    import shutil

    from benchmarks.experiments import doc_pages

    results = tmp_path / "results"
    shutil.copytree(doc_pages.RESULTS, results)
    assert doc_pages.render_results(results) == (DOCS / "results.md").read_text()
    data = json.loads((results / "solvers.json").read_text())
    data["benchmarks"]["adult"]["ls"]["hv"]["mean"] = 0.123456
    (results / "solvers.json").write_text(json.dumps(data))
    assert "0.123 ±" in doc_pages.render_results(results)


def test_the_plugin_page_lists_every_classified_plugin():
    from strategies.hnet_cl import SUPPORTED_PLUGINS, UNSUPPORTED_PLUGINS

    text = (DOCS / "plugins.md").read_text()
    for name in [*SUPPORTED_PLUGINS, *UNSUPPORTED_PLUGINS]:
        assert f"| `{name}` |" in text


@pytest.mark.parametrize("package", ["cl_moo", "strategies"])
def test_the_api_page_documents_every_export(package):
    exports = importlib.import_module(package)._EXPORTS
    documented = re.findall(rf"^::: {package}\.(\w+)\.(\w+)$", (DOCS / "api" / f"{package}.md").read_text(), re.M)
    assert sorted(documented) == sorted((module, name) for name, module in exports.items())


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))

    def files(node):
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [f for v in node.values() for f in files(v)]
        return [f for v in node for f in files(v)]

    nav = set(files(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert nav == pages
    assert {"config.md", "results.md", "plugins.md", "api/cl_moo.md", "api/strategies.md"} <= nav
    assert "site/" in (ROOT / ".gitignore").read_text().split()
