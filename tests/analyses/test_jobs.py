"""The job-based study runner (analyses.kinds): store-backed resume, sharding, outputs."""

import argparse
import json

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from analyses.kinds import JobStudy, chunked
from analyses.runner import run as run_job_study
from fci.cli import comma_list
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

    done = []

    def run(todo, ctx):  # dies after 5 jobs (the runner may call it once per claimed batch)
        for out in study.run(todo, ctx):
            if len(done) == 5:
                raise KeyboardInterrupt
            done.append(out)
            yield out

    with pytest.raises(SystemExit) as stopped:  # Ctrl-C ends the command in one line (fci.store.graceful)
        run_job_study(JobStudy(**{**boom, "run": run}), _args(tmp_path))
    assert stopped.value.code == 130
    assert len(Store(tmp_path / "data").keys()) == 5
    calls.clear()
    assert run_job_study(study, _args(tmp_path)) == 0
    assert sum(calls) == 7  # only the jobs that had not finished


def test_a_corrupt_entry_is_named_quarantined_and_rerun(tmp_path, caplog):
    calls = []
    study = _study(calls)
    assert run_job_study(study, _args(tmp_path)) == 0
    before = pd.read_csv(tmp_path / "out" / "results.csv")
    key = config_key(study.job_config({"x": 1, "seed": 0}))
    (tmp_path / "data" / "store" / key / "metrics.json").write_text("{not json")
    calls.clear()
    with caplog.at_level("WARNING", logger="fci.store"):
        assert run_job_study(study, _args(tmp_path)) == 0
    named = [r for r in caplog.records if key in r.getMessage()]
    assert len(named) == 1 and "metrics.json" in named[0].getMessage() and "quarantine" in named[0].getMessage()
    assert calls == [1]  # only that job ran again
    (moved,) = Store(tmp_path / "data").quarantined()
    assert (moved / "metrics.json").read_text() == "{not json"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "results.csv"), before)


# --------------------------------------------------------------------------- comma_list


@pytest.mark.parametrize("text, kw, expected", [
    ("2,4,3", {}, (2, 3, 4)),                                        # numbers come back sorted
    (" 8 , 4,16 ", {"low": 1}, (4, 8, 16)),                          # whitespace around items
    ("2,3,", {}, (2, 3)),                                            # a blank item is skipped
    ("4", {"low": 2}, (4,)),
    ("2", {"low": 2}, (2,)),                                         # low is inclusive ...
    ("2.5, 1.5,4", {"kind": float, "low": 1, "strict": True}, (1.5, 2.5, 4.0)),  # ... unless strict
    ("0.1,1,5", {"kind": float}, (0.1, 1.0, 5.0)),
    ("-1,0", {"kind": float}, (-1.0, 0.0)),
    ((3, 1, 2), {}, (1, 2, 3)),                                      # an already-parsed tuple ...
    ([2.0, 0.5], {"kind": float}, (0.5, 2.0)),                       # ... or list
    ("gram, random", {"kind": str}, ("gram", "random")),             # names: the given order ...
    ("digits,boolean", {"kind": str, "choices": ("boolean", "digits")}, ("boolean", "digits")),  # ... or choices'
    (["digits"], {"kind": str, "choices": ("boolean", "digits")}, ("digits",)),
    ("3,3,1", {"ordered": True}, (3, 3, 1)),                         # a vector: order and repeats kept
])
def test_comma_list_parses(text, kw, expected):
    got = comma_list(argparse.ArgumentParser(), "--xs", text, **kw)
    assert got == expected and type(got) is tuple
    assert all(type(v) is type(e) for v, e in zip(got, expected))


@pytest.mark.parametrize("text, kw, message", [
    ("2,x", {}, "--xs must be comma-separated integers, got '2,x'"),
    ("2.5", {}, "--xs must be comma-separated integers, got '2.5'"),
    ("1,two", {"kind": float}, "--xs must be comma-separated numbers, got '1,two'"),
    ("1,nan", {"kind": float}, "--xs must be comma-separated numbers, got '1,nan'"),
    ("inf", {"kind": float}, "--xs must be comma-separated numbers, got 'inf'"),
    ("", {}, "--xs is empty, got ''"),
    (" , ", {"kind": str}, "--xs is empty, got ' , '"),
    ([], {}, "--xs is empty"),
    ("2,4,2", {}, "--xs lists 2 more than once, got '2,4,2'"),
    ("1,1.0", {"kind": float}, "--xs lists 1.0 more than once"),
    ("a, a", {"kind": str}, "--xs lists a more than once"),
    ("1,2", {"low": 2}, "--xs values must be >= 2, got '1,2'"),
    ("1,2", {"kind": float, "low": 1, "strict": True}, "--xs values must be > 1, got '1,2'"),
    ((0, 3), {"low": 1}, "--xs values must be >= 1, got '0,3'"),
    ("boolean,mnist", {"kind": str, "choices": ("boolean", "digits")}, "--xs takes values from boolean, digits; unknown mnist"),
])
def test_comma_list_errors_name_the_flag_and_exit_2(capsys, text, kw, message):
    ap = argparse.ArgumentParser(prog="study")
    with pytest.raises(SystemExit) as e:
        comma_list(ap, "--xs", text, **kw)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "--xs" in err


def test_comma_list_kind_is_checked():
    with pytest.raises(TypeError, match="kind"):
        comma_list(argparse.ArgumentParser(), "--xs", "1", kind=complex)
