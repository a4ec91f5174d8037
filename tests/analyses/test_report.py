"""Verdicts and the results page: every study's `paper` entries on real (tiny) runs
name their test and follow from their own p or q; `python -m analyses.report` turns
hand-made and real summary.json files into the page, saying which run it read and
which studies have none."""

from __future__ import annotations

import json

import pytest

from analyses import report, study_names
from fci.stats import VERDICTS, check_verdict

#: Studies whose summary.json states no claim of a source paper (they measure, the others decide).
WITHOUT_CLAIMS = {"capacity_vs_alpha", "code_gallery", "regimes"}


def _summary(data, name):
    return json.loads((data / "results" / name / "tiny" / "summary.json").read_text())


@pytest.mark.parametrize("name", study_names())
def test_every_paper_entry_names_its_test_and_its_verdict_follows_from_it(tiny_runs, name):
    s = _summary(tiny_runs, name)
    assert s["correction"] == "benjamini-hochberg" and s["run"]["command"].startswith(f"python -m analyses.{name} --tiny")
    paper = s.get("paper") or []
    assert bool(paper) == (name not in WITHOUT_CLAIMS), f"{name}: claims {len(paper)}"
    for c in paper:
        assert check_verdict(c) is None, f"{name}: {check_verdict(c)}: {c['claim'][:80]}"
        assert c["test"] and c["test"] != "none" or c["reason"], c["claim"]
        assert c["verdict"] in VERDICTS and (c["p"] is not None or c["reason"])
        if c["q"] is not None:  # a corrected family names its correction and size
            assert c["correction"] == "benjamini-hochberg" and c["family_size"] >= 1 and c["q"] >= c["p"] - 1e-12
        assert "measured" in c and "regime" in c


def test_the_regime_map_counts_by_q_and_names_what_it_left_out(tiny_runs):
    a = _summary(tiny_runs, "regimes")["answer"]
    for key in ("random-2", "random-4", "clause-2", "clause-4", "restart-1"):
        v = a[key]
        assert v["family_size"] + v["degenerate"] + v["not_applicable"] + v["untested"] == v["cells"]
        assert v["beats_dense"] + v["below_dense"] + v["not_significant"] == v["family_size"]
    assert a["restart-1"]["not_applicable"] == a["restart-1"]["cells"] // 2  # the SGD half of the tiny grid


def _hand_summary(command, cpu, features, verdicts, partial=False):
    return {"partial": partial, "correction": "benjamini-hochberg",
            "environment": {"cpu": cpu, "cpu_features": features, "cpu_count": 2, "device": "cpu", "date": "2025-01-02T03:04:05+00:00",
                            "git_commit": "0123456789abcdef0123", "git_dirty": False},
            "run": {"command": command, "trials": 5, "trained_trials": 5, "loaded_trials": 0, "train_seconds": 90.0,
                    "total_seconds": 125.0, "load_average_start": 1.5, "load_average_end": 2.0},
            "paper": verdicts}


def _write(data, study, run, summary):
    folder = data / "results" / study / run
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))


def test_the_page_from_two_hand_made_runs(tmp_path):
    data = tmp_path / "data"
    agree = {"claim": "A beats B", "test": "paired t-test", "p": 0.004, "q": 0.012, "alpha": 0.05,
             "correction": "benjamini-hochberg", "family_size": 3, "supports": True, "verdict": "agrees", "reason": None,
             "measured": {"gain_pct": 5.4}}
    flat = {"claim": "C grows with D", "test": "Page's L test (trials as blocks), increasing", "p": 0.3, "q": None, "alpha": 0.05,
            "correction": "none", "family_size": 1, "supports": None, "verdict": "inconclusive", "reason": None, "measured": "flat"}
    _write(data, "alpha", "default", _hand_summary("python -m analyses.alpha", "AMD EPYC 7B13", ["avx2", "fma", "avx"], [agree, flat]))
    _write(data, "beta", "default", _hand_summary("python -m analyses.beta --trials 3", "Xeon", ["avx512f", "avx2"], []))
    _write(data, "beta", "quick", _hand_summary("python -m analyses.beta --quick", "Xeon", ["avx512f"], [flat]))
    _write(data, "gamma", "default", _hand_summary("python -m analyses.gamma", "Xeon", [], [], partial=True))
    studies = {"alpha": "Alpha: a study.", "beta": "Beta: another.", "gamma": "Gamma: only a shard ran.", "delta": "Delta: never ran."}
    page, missing = report.render(data, "default", studies, "python -m analyses.report --data DIR")
    assert missing == ["gamma", "delta"]
    assert "`python -m analyses.alpha`" in page and "`python -m analyses.beta --trials 3`" in page
    assert "AMD EPYC 7B13, AVX2, 2 cores" in page and "Xeon, AVX-512" in page  # the machine with its vector ISA
    assert "`0123456789ab`" in page and "2025-01-02" in page and "2.1 min" in page and "1.5 at the start" in page
    assert "**agrees** — A beats B" in page and "p = 0.004 · q = 0.012 (benjamini-hochberg over 3)" in page
    assert "**inconclusive** — C grows with D" in page and "1 agrees, 1 inconclusive" in page
    assert "**No `default` run** under" in page and "`python -m analyses.delta --data" in page
    gamma = page[page.index("## `gamma`"):page.index("## `delta`")]
    assert "No `default` run" in gamma  # a shard's partial summary is not a finished run
    beta = page[page.index("## `beta`"):page.index("## `gamma`")]
    assert "--trials 3" in beta and "--quick" not in beta  # the run asked for, not another
    quick, missing = report.render(data, "quick", studies, "cmd")
    assert "`python -m analyses.beta --quick`" in quick and set(missing) == {"alpha", "gamma", "delta"}
    assert "finished runs there: `default`" in quick  # alpha's section names the runs it does have


def test_report_end_to_end_on_tiny_runs(tiny_runs, tmp_path, capsys):
    out = tmp_path / "docs" / "results.md"
    assert report.main(["--data", str(tiny_runs), "--run", "tiny", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"the 'tiny' run of {len(study_names())} of {len(study_names())} studies" in said
    page = out.read_text()
    assert page.startswith("# Results") and f"--run tiny --out {out}" in page and "No `tiny` run" not in page
    for name in study_names():
        section = page[page.index(f"## `{name}`"):]
        section = section[:section.index("\n## ") if "\n## " in section else len(section)]
        assert f"`python -m analyses.{name} --tiny --device cpu --data {tiny_runs}`" in section
        paper = _summary(tiny_runs, name).get("paper") or []
        assert section.count("- **") == len(paper)  # one entry per verdict
        assert all(f"**{c['verdict']}** — {c['claim']}" in section for c in paper)
    regimes = page[page.index("## `regimes`"):]
    assert "| restart-1 |" in regimes and "not applicable in" in regimes  # the SGD restart, with its reason


@pytest.mark.parametrize("argv,message", [
    (["--run", "a/b"], "--run must name one run folder"),
    (["--data", "missing"], "holds no results/ folder"),
])
def test_bad_report_options_fail_in_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "results").mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        report.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "docs").exists()


def test_a_studys_picture_is_shown_in_its_section_when_one_was_drawn(tmp_path):
    data = tmp_path / "data"
    _write(data, "alpha", "default", _hand_summary("python -m analyses.alpha", "Xeon", ["avx2"], []))
    _write(data, "beta", "default", _hand_summary("python -m analyses.beta", "Xeon", ["avx2"], []))
    pictures = tmp_path / "docs" / "analyses"
    pictures.mkdir(parents=True)
    (pictures / "alpha.png").write_bytes(b"\x89PNG")  # beta has none
    page, _ = report.render(data, "default", {"alpha": "Alpha.", "beta": "Beta."}, "cmd", pictures, tmp_path / "docs" / "results.md")
    alpha, beta = page[page.index("## `alpha`"):page.index("## `beta`")], page[page.index("## `beta`"):]
    assert "![alpha](analyses/alpha.png)" in alpha and "![" not in beta
    assert "![" not in report.render(data, "default", {"alpha": "Alpha."}, "cmd")[0]  # no folder given: no pictures
