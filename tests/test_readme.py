"""The README's notebook example runs as written (on the top-level `fci` names)."""

from __future__ import annotations

import re

import pytest

import fci
from tests.helpers import ROOT

README = ROOT / "README.md"


def _notebook_block() -> str:
    text = README.read_text()
    section = text.split("## Use it from a notebook", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the README's notebook section has no python block"
    return blocks[0]


def test_the_notebook_example_uses_only_top_level_names():
    code = _notebook_block()
    assert re.findall(r"^\s*(?:from|import) (\S+)", code, re.M) == ["fci"]
    used = set(re.findall(r"\bfci\.(\w+)", code))
    assert used and used <= set(fci.__all__)


@pytest.mark.slow
def test_the_readme_notebook_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its store, Store("data"), lands in a fresh folder
    namespace: dict = {}
    exec(compile(_notebook_block(), "README.md (notebook example)", "exec"), namespace)
    assert namespace["child"].nnz() == namespace["model"].nnz()
    assert len(namespace["results"]) == 5 and len(namespace["res"]) == 5
    assert len(namespace["store"].keys()) == 30  # (the Boolean and the digits sweep) x 5 trials x (dense + 2 children)
    assert 0.5 < namespace["res"][0].dense.test_accuracy <= 1
    assert namespace["res"].trained == [0, 1, 2, 3, 4]  # a fresh store: this call trained every digits trial


def test_import_fci_is_cheap_and_lazy():
    import subprocess
    import sys

    code = "import sys, fci; assert 'torch' not in sys.modules; fci.Store; assert 'fci.store' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=README.parent, timeout=120)
