"""The README: short, the two set-up commands verbatim, links that resolve, a tour whose
notebook cell runs as written on the top-level `fci` names, and a licence and citation
that agree with the package and the papers the README names."""

from __future__ import annotations

import re

import pytest

import fci
from tests.helpers import ROOT

README = ROOT / "README.md"

#: The two commands the project is set up with; `.ci/run` runs the second verbatim.
EXPLORER = 'pip install torch==2.13.0 && pip install -e . && python -m app'
TESTS = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'

#: Pages the README links to that are generated or written elsewhere; a link to one is
#: checked like any other once the page exists.
PENDING = {"docs/results.md"}


def _tour_block() -> str:
    section = README.read_text().split("## A ten-line tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's tour has no python block"
    return blocks[0]


def test_the_readme_is_short_and_holds_the_two_commands_verbatim():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    lines = [line.strip() for line in text.splitlines()]
    assert EXPLORER in lines and TESTS in lines  # each on a line of its own, as a reader copies it
    assert TESTS in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_tour_is_ten_lines():
    section = README.read_text().split("## A ten-line tour", 1)[1].split("\n## ", 1)[0]
    code = [line for block in re.findall(r"```\w+\n(.*?)```", section, re.S) for line in block.splitlines() if line.strip()]
    assert len(code) <= 10


def test_the_readme_links_resolve():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local
    missing = [t for t in local if not (ROOT / t).exists() and t not in PENDING]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_tour_uses_only_top_level_names():
    code = _tour_block()
    assert re.findall(r"^\s*(?:from|import) (\S+)", code, re.M) == ["fci"]
    used = set(re.findall(r"\bfci\.(\w+)", code))
    assert used and used <= set(fci.__all__)


@pytest.mark.slow
def test_the_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its store, Store("data"), lands in a fresh folder
    namespace: dict = {}
    exec(compile(_tour_block(), "README.md (tour)", "exec"), namespace)
    results, r = namespace["results"], namespace["r"]
    assert len(results) == 3 and r is results[0]
    assert set(r.children) == {("clause", 2), ("random", 2)}  # FPESpec's default expansions, as the comment says
    assert r.children[("clause", 2)].model.nnz() == r.parent.model.nnz()  # the FPE budget
    assert len(fci.Store("data").keys()) == 9  # 3 trials x (dense + 2 children), all stored


def test_the_licence_and_citation_agree_with_the_package():
    yaml = pytest.importorskip("yaml")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"} and (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert (cff["version"], cff["license"]) == (project["version"], "MIT") and cff["version"] == fci.__version__
    cited = {i["value"] for ref in cff["references"] for i in ref["identifiers"]}
    # Every paper the README names by its arXiv id is a reference, and no other.
    named = {f"arXiv:{m}" for m in re.findall(r"arxiv\.org/abs/(\d{4}\.\d{4,5})", (ROOT / "README.md").read_text())}
    assert cited == named and {"arXiv:2510.04500", "arXiv:2504.08842"} <= cited
    for ref in cff["references"]:
        assert ref["url"] == f"https://arxiv.org/abs/{ref['identifiers'][0]['value'].removeprefix('arXiv:')}"


def test_import_fci_is_cheap_and_lazy():
    import subprocess
    import sys

    code = "import sys, fci; assert 'torch' not in sys.modules; fci.Store; assert 'fci.store' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=README.parent, timeout=120)
