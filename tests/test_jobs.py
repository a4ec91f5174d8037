"""The job-based study runner (analyses._jobs): store-backed resume, sharding, outputs."""

import json

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from analyses._jobs import JobStudy, chunked, run_job_study
from fci.store import Store, config_key


def _study(calls: list):
    """A toy study: job (x, seed) -> rows y = x * seed and x + seed, run in batches of 3."""

    def jobs(ctx):
        return [{"x": x, "seed": ctx.args.seed + t} for x in range(4) for t in range(ctx.args.trials)]

    def run(todo, ctx):
        for batch in chunked(todo, 3):
            calls.append(len(batch))
            for j in batch:
                yield j, [{"what": "prod", "y": j["x"] * j["seed"]}, {"what": "sum", "y": j["x"] + j["seed"]}], \
                    {"w": torch.full((2,), float(j["x"]))}

    def stats(df, ctx):
        return df.groupby("what", as_index=False).y.sum()

    def figures(df, stats, ctx):
        return {"bars": go.Figure(go.Bar(x=stats.what, y=stats.y))}

    def summarise(df, stats, ctx):
        return {"paper": [{"claim": "y grows with x", "measured": float(df.y.sum()), "agrees": True, "note": ""}]}

    return JobStudy(name="toy", description="A toy study.\n\nIt multiplies.\n\nDropped paragraph.", jobs=jobs, run=run,
                    stats=stats, figures=figures, summarise=summarise, caption=lambda ctx: f"toy · level={ctx.level.name}")


def _args(tmp_path, *extra):
    return ["--tiny", "--device", "cpu", "--trials", "3", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "data"), *extra]


def test_writes_outputs_and_a_rerun_runs_nothing(tmp_path):
    calls = []
    study = _study(calls)
    assert run_job_study(study, _args(tmp_path)) == 0
    assert sum(calls) == 12 and calls == [3, 3, 3, 3]
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(df) == 24 and set(df.columns) >= {"x", "seed", "what", "y"}
    assert (df[df.what == "prod"].y == df[df.what == "prod"].x * df[df.what == "prod"].seed).all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["run"] == {**summary["run"], "jobs": 12, "trained_jobs": 12, "loaded_jobs": 0}
    assert summary["paper"][0]["agrees"] is True and summary["figures"] == ["bars.html"]
    assert summary["config"]["description"] == "A toy study.\n\nIt multiplies."
    assert (tmp_path / "out" / "bars.html").read_text().count("plotly") > 0
    # one store entry per job, with its tensors
    store = Store(tmp_path / "data")
    entry = store.load(config_key(study.job_config({"x": 2, "seed": 1})))
    assert torch.equal(entry.tensors["w"], torch.full((2,), 2.0))

    calls.clear()
    assert run_job_study(study, _args(tmp_path)) == 0
    assert calls == []
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert again["run"]["trained_jobs"] == 0 and again["run"]["loaded_jobs"] == 12
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "results.csv"), df)


def test_shards_partition_the_jobs_and_a_plain_run_collects_them(tmp_path):
    calls = []
    study = _study(calls)
    for i in range(3):
        assert run_job_study(study, _args(tmp_path, "--shard", f"{i}/3")) == 0
    assert sum(calls) == 12  # disjoint and covering
    parts = [pd.read_csv(tmp_path / "out" / f"results.shard-{i}-of-3.csv") for i in range(3) if
             (tmp_path / "out" / f"results.shard-{i}-of-3.csv").stat().st_size > 1]
    assert sum(len(p) for p in parts) == 24
    assert not (tmp_path / "out" / "summary.json").exists()
    calls.clear()
    assert run_job_study(study, _args(tmp_path)) == 0
    assert calls == []


def test_an_interrupted_run_keeps_finished_jobs(tmp_path):
    calls = []
    study = _study(calls)
    boom = dict(study.__dict__)

    def run(todo, ctx):
        for k, out in enumerate(study.run(todo, ctx)):
            if k == 5:
                raise KeyboardInterrupt
            yield out

    with pytest.raises(KeyboardInterrupt):
        run_job_study(JobStudy(**{**boom, "run": run}), _args(tmp_path))
    assert len(Store(tmp_path / "data").keys()) == 5
    calls.clear()
    assert run_job_study(study, _args(tmp_path)) == 0
    assert sum(calls) == 7  # only the jobs that had not finished


def test_a_corrupt_entry_is_named(tmp_path):
    study = _study([])
    assert run_job_study(study, _args(tmp_path)) == 0
    key = config_key(study.job_config({"x": 1, "seed": 0}))
    (tmp_path / "data" / "store" / key / "metrics.json").write_text("{not json")
    with pytest.raises(Exception, match=rf"{key}.*metrics.json"):
        run_job_study(study, _args(tmp_path))
