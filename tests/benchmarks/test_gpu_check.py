"""benchmarks/gpu_check.sh, checked without a GPU: its shell syntax, and its
dry run, which lists every step of the check (the CUDA-marked tests, the
trainer benchmark at 256 and 4096 models, a study on the GPU) with commands
whose options the programs accept, and runs nothing."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_the_script_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _dry_run(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_dry_run_lists_every_step_and_runs_nothing(tmp_path):
    out = _dry_run(tmp_path)
    steps = [ln.strip() for ln in out.splitlines() if ln.startswith("  ")]
    assert [s.split(" ", 1)[0] for s in steps] == ["tests", "trainer-256", "trainer-4096", "study"]
    assert "-m pytest -q -m cuda tests" in steps[0]
    assert "-m benchmarks.trainer --device cuda --models 256" in steps[1]
    assert "-m benchmarks.trainer --device cuda --models 4096" in steps[2]
    assert "-m analyses.capacity_vs_alpha --quick --device cuda" in steps[3]
    limits = [int(s.split("(at most ", 1)[1].split(" s)")[0]) for s in steps]
    assert sum(limits) <= 8 * 60 - 20  # the whole check fits in 8 minutes
    assert out.rstrip().endswith("nothing was run")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("step", ["trainer-256", "trainer-4096", "study"])
def test_the_programs_accept_the_dry_runs_options(tmp_path, step):
    """Each command, with --help appended, parses its option values (a bad one
    exits 2), and its help names every option the command passes."""
    line = next(ln for ln in _dry_run(tmp_path).splitlines() if ln.strip().startswith(step + " "))
    cmd = shlex.split(line.split("): ", 1)[1].replace("<a fresh temporary folder>", str(tmp_path)))
    r = subprocess.run([sys.executable, *cmd[1:], "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for flag in (a for a in cmd if a.startswith("--")):
        assert flag in r.stdout, f"{step}: {flag} is not an option of {cmd[2]}"


def test_an_unknown_option_is_refused_in_one_line(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "gpu_check: unknown option --fast (use --dry-run, --out DIR)"
