"""The FPE schedule itself: claims inside `run_fpe` (two processes on one store
train each trial once), `FPERun.trained`, and progress bars that read well
outside a terminal (no "[A" cursor-up fragments from nested bars)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from fci import progress as _progress
from fci.store import Store
from fci.tasks import TaskConfig
from fci.train import FPESpec, TrainConfig, run_fpe, trial_keys
from tests.helpers import ROOT

CFG = TrainConfig(lr=0.02, batch_size=64, warmup=3, finetune=3)
TASK = TaskConfig(n_clauses=3, clause_size=2, n_train=96, n_test=64)


def _specs(n: int) -> list[FPESpec]:
    return [FPESpec(task=TASK, hidden=4, seed=s, expansions=(("random", 2),), train=CFG) for s in range(n)]


WORKER = textwrap.dedent("""
    import json, sys, time
    from fci.store import Store
    from fci.tasks import TaskConfig
    from fci.train import FPESpec, TrainConfig, run_fpe
    import fci.train.schedule as schedule
    real = schedule._run_chunk
    def slow(specs, *a, **k):  # long enough that the two processes overlap
        time.sleep(1.0)
        return real(specs, *a, **k)
    schedule._run_chunk = slow
    cfg = TrainConfig(lr=0.02, batch_size=64, warmup=3, finetune=3)
    task = TaskConfig(n_clauses=3, clause_size=2, n_train=96, n_test=64)
    specs = [FPESpec(task=task, hidden=4, seed=s, expansions=(("random", 2),), train=cfg) for s in range(int(sys.argv[2]))]
    out = run_fpe(specs, device="cpu", store=Store(sys.argv[1]))
    print(json.dumps({"trained": out.trained, "acc": [r.dense.test_accuracy for r in out]}))
""")


def test_two_processes_running_the_schedule_on_one_store_train_each_trial_once(tmp_path):
    n = 8
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(n)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    a, b = (set(o["trained"]) for o in outs)
    assert not a & b and a | b == set(range(n))  # every trial trained once, by one of them
    assert a and b  # and the work was split
    assert outs[0]["acc"] == outs[1]["acc"]  # both return every trial, the other's loaded from the store
    assert len(Store(tmp_path).keys()) == 2 * n


def test_run_fpe_says_what_it_trained(tmp_path):
    store = Store(tmp_path)
    first = run_fpe(_specs(2), device="cpu", store=store)
    assert first.trained == [0, 1]
    again = run_fpe(_specs(3), device="cpu", store=store)
    assert again.trained == [2] and [r.dense.test_accuracy for r in again[:2]] == [r.dense.test_accuracy for r in first]
    assert repr(again) == "FPERun(3 trials, 1 trained here)"
    assert all(store.has(k) for g in trial_keys(_specs(3)) for k in g)


def test_a_corrupt_entry_is_retrained_by_the_schedule(tmp_path):
    store = Store(tmp_path)
    (spec,) = _specs(1)
    before = run_fpe([spec], device="cpu", store=store)[0]
    dense_key = trial_keys([spec])[0][0]
    (store.path(dense_key) / "metrics.json").write_text("{not json")
    after = run_fpe([spec], device="cpu", store=store)
    assert after.trained == [0] and len(store.quarantined()) == 1
    assert after[0].dense.test_accuracy == before.dense.test_accuracy  # the same model again


SCRIPT = textwrap.dedent("""
    from fci.tasks import TaskConfig
    from fci.train import FPESpec, TrainConfig, run_fpe
    cfg = TrainConfig(lr=0.02, batch_size=32, warmup=2, finetune=2)
    task = TaskConfig(n_clauses=3, clause_size=2, n_train=96, n_test=64)
    run_fpe([FPESpec(task=task, hidden=4, seed=s, train=cfg) for s in range(3)], device="cpu", progress=True, max_stack=1)
""")


def test_progress_outside_a_terminal_has_no_cursor_up_fragments():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "FPE trials" in p.stderr and "3/3" in p.stderr  # the bar over trials is there
    assert "\x1b[A" not in p.stderr and "dense warmup" not in p.stderr  # nested per-fit bars are not drawn
    assert "IProgress" not in p.stderr


def test_a_nested_bar_is_drawn_on_a_terminal(monkeypatch):
    monkeypatch.setattr(_progress, "_terminal", lambda: True)
    with _progress.bar(total=2, desc="outer") as outer:
        inner = _progress.bar(total=2, desc="inner")
        assert not outer.disable and not inner.disable
        inner.close()
    monkeypatch.setattr(_progress, "_terminal", lambda: False)
    with _progress.bar(total=2, desc="outer") as outer:
        inner = _progress.bar(total=2, desc="inner")
        assert not outer.disable and inner.disable  # nested, not a terminal: not drawn
        inner.close()


def test_a_notebook_without_ipywidgets_gets_a_text_bar(monkeypatch):
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_progress, "widgets_available", lambda: False)
    with _progress.bar(total=1, desc="x") as b:
        assert type(b).__module__ == "tqdm.std"
