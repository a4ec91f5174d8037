"""The documentation site: its worked examples run as written, its API index names every
top-level name, and `mkdocs build --strict` passes (when mkdocs is installed) without
fetching anything from the network."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import fci
from tests.helpers import ROOT, assert_uses_only_top_level_names

DOCS = ROOT / "docs"


def python_blocks(page: Path) -> list[str]:
    """Every ```python block of a page, in order (titled blocks included)."""
    return re.findall(r"^```python[^\n]*\n(.*?)^```", page.read_text(), re.S | re.M)


def run_blocks(page: Path, blocks: list[str]) -> dict:
    """Run the blocks in order in one namespace, as a notebook would; a failure names its block."""
    namespace: dict = {"__name__": "docs_example"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page.name} (python block {i + 1})", "exec"), namespace)
    return namespace


def test_the_extraction_finds_every_python_block():
    page = DOCS / "extending.md"
    blocks = python_blocks(page)
    assert len(blocks) == page.read_text().count("```python") and len(blocks) >= 6
    assert all(b.strip() and "```" not in b for b in blocks)
    assert any(b.startswith('"""Clause load') for b in blocks)  # the study module, docstring first


# --------------------------------------------------------------------------- the extending page


@pytest.fixture
def clean_registries():
    """The extending page registers a split, a study, a backend and a dataset kind; remove them after."""
    from analyses import STUDIES
    from fci.data.spec import DATASET_KINDS
    from fci.fpe.splits import REGISTRY as SPLITS
    from fci.train.backends import BACKENDS

    registries = (SPLITS, STUDIES, BACKENDS, DATASET_KINDS)
    before = [set(r.names()) for r in registries]
    yield
    for r, names in zip(registries, before):
        for name in set(r.names()) - names:
            r.unregister(name)


@pytest.mark.slow
def test_the_extending_examples_run_as_written(tmp_path, monkeypatch, clean_registries):
    import torch

    from analyses import STUDIES
    from fci.fpe import SPLITS, split_groups
    from fci.train.backends import BackendUnavailable

    monkeypatch.chdir(tmp_path)
    ns = run_blocks(DOCS / "extending.md", python_blocks(DOCS / "extending.md"))

    # The split: registered, balanced within each neuron, and the child keeps the parent's budget.
    assert "magnitude" in SPLITS
    W = torch.tensor([[0.1, -3.0, 2.0, 0.5], [1.0, 0.0, -4.0, 0.2]])
    M = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]])
    ids = split_groups(W, M, 2, "magnitude")  # by |w|: row 0 ranks inputs 1, 2, 3, 0; row 1 ranks 2, 0, 3 (1 is masked)
    assert ids.tolist() == [[1, 0, 1, 0], [1, -1, 0, 0]]
    assert ns["child"].nnz() == ns["parent"].nnz()
    assert len(ns["results"]) == 2 and ("magnitude", 2) in ns["results"][0].children

    # The study: registered under its name, and its main runs the whole study on a tiny level.
    assert STUDIES.get("clause_load") is ns["STUDY"]
    assert ns["main"](["--tiny", "--data", str(tmp_path / "data"), "--device", "cpu"]) == 0
    out = tmp_path / "data" / "results" / "clause_load" / "tiny"  # one folder per run, named by its level
    assert {"results.csv", "stats.csv", "summary.json", "clause_load.html"} <= {p.name for p in out.iterdir()}

    # The backend: it matched the reference above, and refuses what it does not implement, saying why.
    torch.testing.assert_close(ns["loss_mine"], ns["loss_ref"])
    adam = fci.TrainConfig(optimizer="adam")
    with pytest.raises(BackendUnavailable, match="plain SGD only"):
        ns["fit"](ns["mine"], ns["xs"], ns["ys"], adam, range(1), backend="plain_sgd")

    # The dataset kind: a spec of it validates its options and names the same data alike.
    assert 0.5 < ns["res"][0].dense.test_accuracy <= 1  # 3 classes: chance is about 1/3
    with pytest.raises(ValueError, match="test_fraction must lie in"):
        fci.DatasetSpec("wine", {"test_fraction": 2})
    assert fci.DatasetSpec("wine", {}, seed=0) == fci.DatasetSpec("wine", {"test_fraction": 0.25}, seed=0)


# --------------------------------------------------------------------------- the notebook example


def _notebook_block() -> str:
    text = (DOCS / "getting-started.md").read_text()
    section = text.split("## Use it from a notebook", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the notebook section of getting-started.md has no python block"
    return blocks[0]


def test_the_notebook_example_uses_only_top_level_names():
    assert_uses_only_top_level_names(_notebook_block())


@pytest.mark.slow
def test_the_notebook_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its store, Store("data"), lands in a fresh folder
    namespace: dict = {}
    exec(compile(_notebook_block(), "getting-started.md (notebook example)", "exec"), namespace)
    assert namespace["child"].nnz() == namespace["model"].nnz()
    assert len(namespace["results"]) == 5 and len(namespace["res"]) == 5
    assert len(namespace["store"].keys()) == 30  # (the Boolean and the digits sweep) x 5 trials x (dense + 2 children)
    assert 0.5 < namespace["res"][0].dense.test_accuracy <= 1
    assert namespace["res"].trained == [0, 1, 2, 3, 4]  # a fresh store: this call trained every digits trial


# --------------------------------------------------------------------------- the API reference


def test_the_api_index_names_every_top_level_name():
    """docs/api/index.md links each name of fci.__all__ to its reference; mkdocs --strict
    then fails on a link that does not resolve."""
    text = (DOCS / "api" / "index.md").read_text()
    linked = set(re.findall(r"\[`(\w+)`\]\[fci\.[\w.]+\]", text))
    assert linked == set(fci.__all__) - {"__version__"}


def test_every_module_page_of_the_api_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(DOCS).as_posix() for p in (DOCS / "api").glob("*.md")}
    assert pages and all(page in nav for page in pages)


# --------------------------------------------------------------------------- the build


@pytest.mark.slow
def test_the_site_builds_strictly_and_offline(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    pages = list(site.rglob("*.html"))
    assert (site / "index.html").is_file() and (site / "api" / "codes" / "index.html").is_file()
    # The API pages are generated from the docstrings: a name and its docstring's first words appear.
    codes = (site / "api" / "codes" / "index.html").read_text()
    assert 'id="fci.codes.decode_function"' in codes
    # Nothing is loaded from another site when a page opens (fonts, scripts, styles).
    external = re.compile(r"""<(?:link|script|img)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//""", re.I)
    offenders = {p.relative_to(site).as_posix() for p in pages if external.search(p.read_text(errors="replace"))}
    assert not offenders, f"pages that load assets from the network: {sorted(offenders)[:5]}"

