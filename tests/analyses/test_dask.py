"""Studies on a Dask cluster (`--dask`): the same results.csv (wall-clock columns aside)
and the same store keys as a local run, for a study of FPE trials, for job studies
whose batches run on the workers and for one whose `run_fpe` calls do; a worker killed
mid-run changes nothing; a study that cannot run on a cluster is refused in one line.
One LocalCluster of two worker processes serves the module, reached by its address as
a cluster started elsewhere would be."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from analyses.kinds import LOCAL_BATCHES, JobStudy, local_batches
from analyses.runner import run
from fci.store import Store, config_key
from fci.train.backends.kernel import library as kernel
from tests.fci.train.test_dask import KillOnce

needs_kernel = pytest.mark.skipif(not kernel.available(), reason="bit identity across stacks needs the C kernel")


@pytest.fixture(scope="module")
def address():
    pytest.importorskip("distributed")
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.WARNING) as cluster:
        yield cluster.scheduler_address


def _run(study, root: Path, *extra: str) -> Path:
    """Run `study` at the tiny level on the store under `root`; returns its output folder."""
    assert run(study, ["--tiny", "--device", "cpu", "--data", str(root), *extra]) == 0
    (out,) = (root / "results" / study.name).iterdir()
    return out


def _assert_same_outputs(here: Path, there: Path, skip: tuple[str, ...] = ()) -> None:
    """results.csv equal but for wall-clock columns (and `skip`), and the same store keys."""
    a, b = pd.read_csv(here / "results.csv"), pd.read_csv(there / "results.csv")
    assert list(a.columns) == list(b.columns) and len(a)
    cols = [c for c in a.columns if not c.endswith("_seconds") and c not in skip]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    assert Store(here.parents[2]).keys() == Store(there.parents[2]).keys()


def _study(name: str):
    from analyses import studies

    return studies().get(name)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    return _run(_study("superposition_sweep"), tmp_path_factory.mktemp("local"))


@pytest.mark.slow
@needs_kernel
def test_a_sweep_on_the_cluster_writes_what_a_local_run_writes(address, local_sweep, tmp_path):
    out = _run(_study("superposition_sweep"), tmp_path, "--dask", address)
    assert out.name == local_sweep.name  # where a run writes does not depend on where it trains
    _assert_same_outputs(local_sweep, out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["dask"] == {"address": address, "worker_threads": 2}


@pytest.mark.slow
@pytest.mark.fault
@needs_kernel
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_worker_killed_mid_run_changes_nothing(address, local_sweep, tmp_path):
    from distributed import Client

    marker = tmp_path / "killed"
    with Client(address) as client:
        client.register_plugin(KillOnce(str(marker)), name=KillOnce.name)
        try:
            out = _run(_study("superposition_sweep"), tmp_path / "data", "--dask", address)
        finally:
            client.unregister_worker_plugin(KillOnce.name)
        client.wait_for_workers(2, timeout=120)
    assert marker.exists()  # a worker died while it trained a stack
    _assert_same_outputs(local_sweep, out)


@pytest.mark.slow
@needs_kernel
@pytest.mark.parametrize("name", ["structured_sparsity", "wide_sparse"])
def test_job_studies_on_the_cluster_write_what_a_local_run_writes(address, name, tmp_path):
    """structured_sparsity's batches of jobs train on the workers; wide_sparse's FPE
    trials train there through run_fpe and its dense and sparse models here."""
    assert _study(name).cluster == ("workers" if name == "structured_sparsity" else "driver")
    _assert_same_outputs(_run(_study(name), tmp_path / "here"), _run(_study(name), tmp_path / "there", "--dask", address))


# ---------------------------------------------------------------------- a toy study of jobs

def _toy_jobs(ctx):
    return [{"x": x, "seed": ctx.args.seed + t} for x in range(5) for t in range(ctx.args.trials)]


def _toy_run(todo, ctx):
    """Rows that record the batch a job came in (its size and first job) and the process that ran it."""
    for j in todo:
        yield j, [{"y": j["x"] * j["seed"], "batch": len(todo), "first": todo[0]["x"] * 100 + todo[0]["seed"],
                   "pid": os.getpid()}], {"w": torch.full((2,), float(j["x"]))}


def _toy(cluster):
    return JobStudy(name="toy", description="A toy study.", jobs=_toy_jobs, run=_toy_run,
                    stats=lambda df, ctx: df.groupby("x", as_index=False).y.sum(),
                    figures=lambda df, stats, ctx: {"bars": go.Figure(go.Bar(x=stats.x, y=stats.y))}, cluster=cluster)


def test_the_batches_of_a_cluster_run_are_those_a_local_run_hands_the_study(tmp_path):
    """`local_batches` is how Store.share hands a lone local run its pending units."""
    store = Store(tmp_path)
    for n in (1, 3, 4, 7, 13):
        names = [[f"{n}-{i}-{m}" for m in "ab"] for i in range(n)]
        seen: list[list[int]] = []

        def work(idx, names=names, seen=seen):
            seen.append(list(idx))
            for i in idx:
                for k in names[i]:
                    store.save({"k": k}, {}, {})

        store.share([[config_key({"k": k}) for k in g] for g in names], work)
        assert seen == local_batches(list(range(n))), n
        assert len(seen) <= LOCAL_BATCHES and len(seen[0]) == math.ceil(n / LOCAL_BATCHES)


@pytest.mark.slow
def test_a_job_study_runs_its_local_batches_on_the_workers(address, tmp_path):
    here = _run(_toy("workers"), tmp_path / "here", "--trials", "3")
    there = _run(_toy("workers"), tmp_path / "there", "--trials", "3", "--dask", address)
    _assert_same_outputs(here, there, skip=("pid",))  # the same batches (size, first job) gave the same rows
    a, b = pd.read_csv(here / "results.csv"), pd.read_csv(there / "results.csv")
    assert sorted(a.batch.unique()) == [3, 4] and (a.pid == os.getpid()).all()
    assert not (b.pid == os.getpid()).any()  # computed on the workers


def test_a_study_that_cannot_run_on_a_cluster_is_refused_in_one_line(tmp_path, capsys):
    pytest.importorskip("distributed")
    with pytest.raises(SystemExit) as e:
        run(_toy(None), ["--tiny", "--data", str(tmp_path), "--dask", "local:2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "--dask: toy cannot run on a Dask cluster" in err
    assert not Store(tmp_path).keys()


def test_every_job_study_says_how_it_runs_on_a_cluster():
    from analyses import studies

    kinds = {name: s.cluster for name, s in studies().items() if isinstance(s, JobStudy)}
    assert kinds and all(k in ("workers", "driver") for k in kinds.values()), kinds


def test_a_malformed_address_is_refused_in_one_line_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        run(_study("superposition_sweep"), ["--tiny", "--data", str(tmp_path), "--dask", "local:zero"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--dask local:N needs a whole number" in err
    assert not Store(tmp_path).keys()
