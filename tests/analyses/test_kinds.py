"""The study kinds (analyses.kinds): a study read from its module's functions."""

import dataclasses
import importlib
import sys
import types

import pytest

from analyses import study_names
from analyses.kinds import JOB_HOOKS, STUDY_HOOKS, JobStudy, Study


def _module(monkeypatch, name: str, doc: str, **attrs) -> str:
    mod = types.ModuleType(name, doc)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return name


def _jobs(ctx):
    return []


def _run_jobs(jobs, ctx):
    return iter(())


def _stats_hook(df, ctx):
    return df


def _figures(df, stats, ctx):
    return {}


def test_job_study_reads_its_hooks_from_the_module(monkeypatch):
    name = _module(monkeypatch, "toy_jobs", "Toy.\n\nWhat it shows.\n\nDropped.", jobs=_jobs, run_jobs=_run_jobs,
                   stats_hook=_stats_hook, figures=_figures, run="not a hook: the runner's run")
    study = JobStudy.from_module(name, "toy", cluster="workers")
    assert (study.jobs, study.run, study.stats, study.figures) == (_jobs, _run_jobs, _stats_hook, _figures)
    assert study.validate is None and study.boolean_task is None and study.print_summary is None
    assert study.description == "Toy.\n\nWhat it shows." and study.cluster == "workers" and study.name == "toy"


def test_options_override_the_module(monkeypatch):
    name = _module(monkeypatch, "toy_override", "Toy.", jobs=_jobs, run_jobs=_run_jobs, stats_hook=_stats_hook,
                   figures=_figures)
    assert JobStudy.from_module(name, "toy", jobs=_figures).jobs is _figures
    points = Study.from_module(_module(monkeypatch, "toy_trials", "Trials.", points=_jobs, figures=_figures), "t").points
    assert points is _jobs


def test_a_hook_name_that_is_not_a_function_is_refused(monkeypatch):
    name = _module(monkeypatch, "toy_bad", "Toy.", jobs=_jobs, run_jobs=_run_jobs, stats_hook=_stats_hook,
                   figures=_figures, validate=3)
    with pytest.raises(TypeError, match=r"toy_bad\.validate would be the study's validate hook but is a int"):
        JobStudy.from_module(name, "toy")


def test_a_missing_required_hook_is_refused(monkeypatch):
    name = _module(monkeypatch, "toy_short", "Toy.", jobs=_jobs, figures=_figures)
    with pytest.raises(TypeError, match="run"):
        JobStudy.from_module(name, "toy")


@pytest.mark.parametrize("name", study_names("JobStudy") + study_names("Study"))
def test_a_study_modules_hook_functions_are_its_hooks(name):
    """Every function of a hook's name in a study module is that study's hook."""
    mod = importlib.import_module(f"analyses.{name}")
    hooks = JOB_HOOKS if isinstance(mod.STUDY, JobStudy) else STUDY_HOOKS
    fields = {f.name for f in dataclasses.fields(mod.STUDY)}
    for hook, attr in hooks.items():
        assert hook in fields
        if callable(getattr(mod, attr, None)):
            assert getattr(mod.STUDY, hook) is getattr(mod, attr), f"{name}.{attr} is not its {hook} hook"
