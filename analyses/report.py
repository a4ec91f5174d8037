"""The results page: every study's verdicts and headline numbers, generated from the
runs themselves, so that no number in the docs is typed by hand.

    python -m analyses.report [--data DIR] [--run NAME] [--out FILE]

For every registered study it reads `<data>/results/<study>/<run>/summary.json`
(the folder the runner writes each run to: `default`, `quick`, `quick-seed=3`, ...;
see `fci.cli.run_name`) and writes one Markdown page (default `docs/results.md`):
per study, the run (the command, the code's commit, the machine with its CPU model
and vector instruction set, the date, the wall time and the load on the machine),
the verdict on each claim of the source papers with the test that decided it, its
p, its q and family size, and the study's headline numbers. A study without that
run is listed as such, with the runs it does have and the command that makes the
missing one.
"""

from __future__ import annotations

import argparse
import os
import json
import logging
import math
import shlex
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fci.cli import OneLineParser
from fci.io import vector_isa, write_text

__all__ = ["Run", "find_run", "runs_of", "render", "study_section", "main"]

log = logging.getLogger(__name__)

#: The verdicts in the order the page counts them.
VERDICT_ORDER = ("agrees", "disagrees", "inconclusive", "not applicable")


class Run:
    """One finished run of a study: its folder and its summary.json."""

    def __init__(self, study: str, name: str, folder: Path, summary: dict[str, Any]):
        self.study, self.name, self.folder, self.summary = study, name, folder, summary

    @property
    def paper(self) -> list[dict[str, Any]]:
        return [c for c in self.summary.get("paper") or [] if isinstance(c, dict)]


def runs_of(data: Path, study: str) -> list[str]:
    """The names of the finished runs of `study` under `data` (folders with a summary.json)."""
    root = Path(data) / "results" / study
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/summary.json"))


def find_run(data: Path, study: str, run: str) -> Run | None:
    """The run `run` of `study` under `data`, or None when it has not finished (no
    summary.json, or only a shard's partial one). A summary.json that does not
    parse is an error naming the file."""
    folder = Path(data) / "results" / study / run
    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable summary.json ({e})") from None
    if not isinstance(summary, dict) or summary.get("partial"):
        return None
    return Run(study, run, folder, summary)


# --------------------------------------------------------------------------- formatting


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{float(x):.{digits}g}"


def _pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * float(x):+.{digits}f}%"


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "n/a"
    s = float(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _command(run: Run) -> str:
    rec = run.summary.get("run") or {}
    if rec.get("command"):
        return str(rec["command"])
    argv = (run.summary.get("environment") or {}).get("argv") or []
    return shlex.join(["python", "-m", f"analyses.{run.study}", *[str(a) for a in argv[1:]]])


def _machine(env: Mapping[str, Any]) -> str:
    isa = env.get("vector_isa") or vector_isa(env.get("cpu_features"))
    parts = [str(env.get("cpu") or env.get("machine") or "unknown CPU")]
    if isa:
        parts.append(isa)
    if env.get("cpu_count"):
        parts.append(f"{env['cpu_count']} cores")
    if env.get("cuda_device"):
        parts.append(f"GPU {env['cuda_device']}")
    parts.append(f"device {env.get('device', 'n/a')}")
    return ", ".join(parts)


def _commit(env: Mapping[str, Any]) -> str:
    c = env.get("git_commit")
    if not c:
        return "unknown"
    return f"`{c[:12]}`" + (" (with uncommitted changes)" if env.get("git_dirty") else "")


def _load(rec: Mapping[str, Any]) -> str:
    a, b = rec.get("load_average_start"), rec.get("load_average_end")
    if a is None and b is None:
        return "not recorded"
    return f"{_num(a, 3)} at the start, {_num(b, 3)} at the end (one-minute load average)"


def _measured(m: Any, limit: int = 400) -> str:
    text = m if isinstance(m, str) else json.dumps(m, ensure_ascii=False, allow_nan=True)
    return text if len(text) <= limit else text[:limit] + " …"


def verdict_counts(paper: Iterable[Mapping[str, Any]]) -> str:
    """'3 agree, 1 disagrees, 2 inconclusive' (verdicts in the page's order)."""
    c = Counter(str(x.get("verdict")) for x in paper)
    words = {"agrees": ("agrees", "agree"), "disagrees": ("disagrees", "disagree"), "inconclusive": ("inconclusive",) * 2,
             "not applicable": ("not applicable",) * 2}
    parts = [f"{c[v]} {words[v][c[v] != 1]}" for v in VERDICT_ORDER if c[v]]
    parts += [f"{n} {v}" for v, n in c.items() if v not in VERDICT_ORDER]
    return ", ".join(parts) if parts else "no claims"


def _verdict_lines(paper: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for c in paper:
        q = f" · q = {_num(c.get('q'))} ({c.get('correction')} over {c.get('family_size')})" if c.get("q") is not None else ""
        lines.append(f"- **{c.get('verdict')}** — {c.get('claim')}")
        lines.append(f"  <br>test: {c.get('test')} · p = {_num(c.get('p'))}{q} · α = {c.get('alpha')}"
                     + (f" · {c['reason']}" if c.get("reason") else ""))
        if c.get("measured") is not None:
            lines.append(f"  <br>measured: {_measured(c['measured'])}")
    return lines


def _regime_lines(answer: Mapping[str, Any]) -> list[str]:
    """The regime map's counts per child, corrected and raw, with the named cells."""
    lines = [f"Per child over the grid's cells: wins and losses at q < {answer.get('significance_level', 0.05)} "
             f"({answer.get('correction', 'benjamini-hochberg')} over {answer.get('family', 'the cells')}); "
             "degenerate cells and controls that cannot differ are left out of the family.", "",
             "| child | cells | family size | beats dense | below dense | not significant | degenerate | not applicable | raw p < 0.05 (beats / below) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    kids = [k for k, v in answer.items() if isinstance(v, dict) and "cells" in v]
    for k in kids:
        v = answer[k]
        lines.append(f"| {k} | {v['cells']} | {v.get('family_size', 'n/a')} | {v['beats_dense']} | {v['below_dense']} | "
                     f"{v['not_significant']} | {v.get('degenerate', 0)} | {v.get('not_applicable', 0)} | "
                     f"{v.get('raw_p_beats', 'n/a')} / {v.get('raw_p_below', 'n/a')} |")
    lines.append("")
    for k in kids:
        v = answer[k]
        named = [("beats dense", v.get("beats", [])), ("below dense", v.get("below", [])),
                 ("p < 0.05 but q ≥ 0.05 (does not survive the correction)", v.get("raw_only", []))]
        for what, cells in named:
            if cells:
                lines.append(f"- {k}, {what}: " + "; ".join(
                    f"{c['cell']} {_pct(c.get('rel_improvement'))} (p = {_num(c.get('p'))}, q = {_num(c.get('q'))})" for c in cells))
        if v.get("not_applicable_reason"):
            lines.append(f"- {k}, not applicable in {v['not_applicable']} cells: {v['not_applicable_reason']}")
    return lines


def _pooled_lines(pooled: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["Pooled over the configurations, trials as the unit (q: Benjamini–Hochberg over the conditions):", "",
             "| condition | α | pairs | accuracy | dense | relative improvement | p | q |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in pooled:
        na = " (not applicable)" if r.get("not_applicable") else ""
        lines.append(f"| {r.get('condition')}{na} | {r.get('alpha')} | {r.get('n_pairs')} | {_num(r.get('test_accuracy_mean'), 4)} | "
                     f"{_num(r.get('dense_test_accuracy_mean'), 4)} | {_pct(r.get('rel_improvement_mean'), 2)} | "
                     f"{_num(r.get('p'))} | {_num(r.get('q'))} |")
    return lines


def headline_lines(summary: Mapping[str, Any]) -> list[str]:
    """The study's headline numbers: the regime map's counts, or the per-condition
    comparison pooled over the configurations; empty when the study has neither
    (its verdicts carry its numbers)."""
    if isinstance(summary.get("answer"), dict):
        return _regime_lines(summary["answer"])
    if summary.get("pooled") and all(isinstance(r, dict) and "n_pairs" in r and "condition" in r for r in summary["pooled"]):
        return _pooled_lines(summary["pooled"])
    return []


# --------------------------------------------------------------------------- the page


def study_section(study: str, description: str, run: Run | None, run_name: str, data: Path,
                  available: Sequence[str] = (), picture: str | None = None) -> list[str]:
    """One study's section of the page; `picture`: the study's figure (a path relative
    to the page), drawn from the same runs by `python -m analyses.pictures`."""
    title = description.strip().split("\n")[0] if description else study
    lines = [f"## `{study}`", "", title, ""]
    if run is None:
        others = f" (finished runs there: {', '.join(f'`{r}`' for r in available)})" if available else ""
        flags = {"default": "", "quick": " --quick"}.get(run_name)
        make = (f"make it with `python -m analyses.{study}{flags} --data {shlex.quote(str(data))}`" if flags is not None else
                f"make it with the options that name it (`python -m analyses.{study} --help`)")
        lines += [f"**No `{run_name}` run** under `{data}/results/{study}/`{others}: {make}, then regenerate this page.", ""]
        return lines
    s, env, rec = run.summary, run.summary.get("environment") or {}, run.summary.get("run") or {}
    units = next((f"{rec[k]} {k}" for k in ("trials", "jobs") if k in rec), "")
    done = next((f"{rec.get('trained_' + k, 0)} trained, {rec.get('loaded_' + k, 0)} from the store" for k in ("trials", "jobs")
                 if k in rec), "")
    lines += ["| run | |", "| --- | --- |",
              f"| command | `{_cell(_command(run))}` |",
              f"| run folder | `{run.name}` |",
              f"| commit | {_commit(env)} |",
              f"| machine | {_cell(_machine(env))} |",
              f"| date | {env.get('date', 'n/a')} |",
              f"| wall time | {_duration(rec.get('total_seconds'))} (training {_duration(rec.get('train_seconds'))}; "
              f"{units}: {done}) |",
              f"| load | {_load(rec)} |",
              f"| correction | {s.get('correction', 'none named')} |", ""]
    if picture is not None:
        lines += [f"![{study}]({picture})", ""]
    paper = run.paper
    if paper:
        lines += [f"**Verdicts** ({verdict_counts(paper)}; each from the test named, at α = 0.05 unless stated):", ""]
        lines += _verdict_lines(paper) + [""]
    head = headline_lines(s)
    if head:
        lines += head + [""]
    return lines


def render(data: Path, run_name: str, studies: Mapping[str, str], command: str,
           pictures: Path | None = None, page: Path | None = None) -> tuple[str, list[str]]:
    """The page's Markdown and the studies without the run. `studies`: name ->
    description (the registry's). `pictures`: a folder of `<study>.png` figures drawn
    from these runs (`python -m analyses.pictures --run RUN`), shown in each study's
    section, linked relative to `page`."""
    found = {name: find_run(data, name, run_name) for name in studies}
    missing = [n for n, r in found.items() if r is None]
    lines = ["# Results", "",
             f"Generated by `{command}` from the `{run_name}` run of each study under `{data}/results/` — do not edit by "
             "hand: rerun the studies and this command instead. Every verdict comes from the test named beside it "
             "(`fci.stats`; SPEC §4, \"Statistics over trials\"): *agrees* or *disagrees* when its p (or, in a corrected "
             "family, its q) is below α, *inconclusive* otherwise, *not applicable* where the design cannot test the "
             "claim. Wall times are those of the run on the machine named, with the load it ran under.", "",
             "| study | run | verdicts | wall time | date |", "| --- | --- | --- | ---: | --- |"]
    for name in studies:
        r = found[name]
        if r is None:
            lines.append(f"| [`{name}`](#{name}) | no `{run_name}` run | | | |")
        else:
            rec, env = r.summary.get("run") or {}, r.summary.get("environment") or {}
            lines.append(f"| [`{name}`](#{name}) | `{r.name}` | {verdict_counts(r.paper) if r.paper else 'no claims'} | "
                         f"{_duration(rec.get('total_seconds'))} | {str(env.get('date', 'n/a'))[:10]} |")
    lines.append("")
    for name, desc in studies.items():
        png = pictures / f"{name}.png" if pictures is not None else None
        picture = (Path(os.path.relpath(png, page.parent if page is not None else Path("."))).as_posix()
                   if png is not None and png.is_file() else None)
        lines += study_section(name, desc, found[name], run_name, data, runs_of(data, name), picture)
    return "\n".join(lines).rstrip() + "\n", missing


def _studies() -> dict[str, str]:
    from analyses import studies

    return {name: getattr(s, "description", "") for name, s in studies().items()}


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m analyses.report", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data", help="results store root whose results/<study>/<run>/ folders are read (default: data)")
    ap.add_argument("--run", default="default",
                    help="which run of each study to report: its folder name, e.g. default, quick, quick-seed=3 (default: default)")
    ap.add_argument("--out", default="docs/results.md", help="the page to write (default: docs/results.md)")
    ap.add_argument("--pictures", default=None, metavar="DIR",
                    help="a folder of <study>.png figures drawn from the same runs (python -m analyses.pictures --run RUN), "
                         "shown in each study's section (default: none)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not str(args.data).strip() or (data.exists() and not data.is_dir()):
        ap.error(f"--data {args.data!r} must name a folder (the results store root)")
    if not (data / "results").is_dir():
        ap.error(f"--data {args.data!r} holds no results/ folder: run a study with --data {args.data} first")
    if not args.run or "/" in args.run or args.run in (".", ".."):
        ap.error(f"--run must name one run folder (e.g. default, quick), got {args.run!r}")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        ap.error(f"--out {args.out!r} is a folder; it must name the page to write")
    command = shlex.join(["python", "-m", "analyses.report", *argv])
    try:
        text, missing = render(data, args.run, _studies(), command,
                               Path(args.pictures) if args.pictures else None, out)
    except ValueError as e:
        ap.error(str(e))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(text, out)
    studies = _studies()
    print(f"report: the '{args.run}' run of {len(studies) - len(missing)} of {len(studies)} studies from {data / 'results'} "
          f"-> {out}" + (f"; no '{args.run}' run of: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
