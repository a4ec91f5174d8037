import json

import pytest
import torch

from fci.store import Store, StoreError, config_key
from fci.train import entry_configs, load_fpe_result, run_fpe
from tests.helpers import tiny_spec


def test_round_trip(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec()
    (res,) = run_fpe([spec], device="cpu", store=store)
    assert len(store.keys()) == 1 + len(spec.expansions)
    back = load_fpe_result(store, spec)
    for a, b in zip(res.dense.model.tensors().values(), back.dense.model.tensors().values()):
        assert torch.equal(a, b)
    for cond, child in res.children.items():
        assert torch.equal(child.model.parent_index, back.children[cond].model.parent_index)
        assert torch.equal(child.model.weights[0], back.children[cond].model.weights[0])
        assert back.children[cond].test_accuracy == child.test_accuracy
    assert torch.equal(res.parent.model.weights[0], back.parent.model.weights[0])
    assert back.task.clauses == res.task.clauses


def test_rerun_loads_instead_of_training(tmp_path, monkeypatch):
    store = Store(tmp_path)
    run_fpe([tiny_spec()], device="cpu", store=store)
    import fci.train.schedule as train

    def boom(*a, **k):
        raise AssertionError("should not train")

    monkeypatch.setattr(train, "_run_chunk", boom)
    (res,) = run_fpe([tiny_spec()], device="cpu", store=store)
    assert res.dense.nnz > 0


def test_resume_after_interruption(tmp_path, monkeypatch):
    """Trial 0 finishes and is stored; the run dies on trial 1; rerunning trains only trial 1."""
    store = Store(tmp_path)
    specs = [tiny_spec(seed=0), tiny_spec(seed=1, n_clauses=5)]  # different n_vars: separate stacks
    import fci.train.schedule as train

    real = train._run_chunk
    calls = []

    def dies_on_second(specs_, *rest):
        calls.append([s.seed for s in specs_])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(specs_, *rest)

    monkeypatch.setattr(train, "_run_chunk", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_fpe(specs, device="cpu", store=store)
    assert len(store.keys()) == 3  # trial 0's three models, nothing half-written
    assert not [p for p in store.dir.iterdir() if p.name.startswith(".") and p.name != ".claims"]
    assert not list((store.dir / ".claims").iterdir())  # the interrupted run released its claims
    calls.clear()
    monkeypatch.setattr(train, "_run_chunk", lambda *a: (calls.append([s.seed for s in a[0]]), real(*a))[1])
    run_fpe(specs, device="cpu", store=store)
    assert calls == [[1]]
    assert len(store.keys()) == 6


def test_truncated_file_raises_error_naming_it(tmp_path, caplog):
    store = Store(tmp_path)
    spec = tiny_spec()
    run_fpe([spec], device="cpu", store=store)
    key = config_key(entry_configs(spec)[("clause", 2)])
    wfile = store.path(key) / "weights.safetensors"
    wfile.write_bytes(wfile.read_bytes()[:50])
    with pytest.raises(StoreError, match="weights.safetensors"):
        load_fpe_result(store, spec)
    mfile = store.path(key) / "metrics.json"
    mfile.write_text('{"test_accuracy": 0.')
    with pytest.raises(StoreError, match="metrics.json"):
        store.load(key)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one message through logging, not a second one through warnings
        with caplog.at_level("WARNING", logger="fci.store"):
            listed = list(store.entries())
    assert len(listed) == 2 and key not in {e.key for e in listed}
    skipped = [r for r in caplog.records if "metrics.json" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].getMessage().startswith("skipping")


def test_missing_entry_and_file(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError, match="no store entry"):
        store.load("deadbeef")
    key = store.save({"a": 1}, {"m": 2}, {"w": torch.ones(2)})
    (store.path(key) / "config.json").unlink()
    assert not store.has(key)
    with pytest.raises(StoreError, match="config.json"):
        store.load(key)


def test_key_is_stable_and_order_free():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert len(config_key({})) == 20


def test_saved_files_are_plain_data(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec()
    run_fpe([spec], device="cpu", store=store)
    key = config_key(entry_configs(spec)[("random", 2)])
    cfg = json.loads((store.path(key) / "config.json").read_text())
    assert cfg["condition"] == "random" and cfg["alpha"] == 2 and cfg["key"] == key
    from safetensors.torch import load_file

    t = load_file(str(store.path(key) / "weights.safetensors"))
    assert {"W0", "M0", "b0", "m0", "W1", "parent_index", "parent.W0"} <= set(t)


def test_concurrent_writer_finishing_first_is_kept(tmp_path, monkeypatch):
    """A writer that finds a complete entry appear while it writes keeps that entry."""
    store = Store(tmp_path)
    config = {"a": 1}
    key = config_key(config)
    import fci.store.files as files

    real_write = files.write_new

    def racing_write(path, data):
        real_write(path, data)
        if path.name == "weights.safetensors" and not store.has(key):  # the other writer finishes right now
            other = Store(tmp_path)
            monkeypatch.setattr(files, "write_new", real_write)
            other.save(config, {"who": "first"}, {"w": torch.ones(1)})

    monkeypatch.setattr(files, "write_new", racing_write)
    assert store.save(config, {"who": "second"}, {"w": torch.ones(1)}) == key
    assert store.load(key).metrics == {"who": "first"}
    assert [p.name for p in store.dir.iterdir()] == [key]


def test_incomplete_leftover_is_quarantined_and_replaced(tmp_path):
    store = Store(tmp_path)
    key = config_key({"a": 1})
    (store.dir / key).mkdir(parents=True)
    (store.dir / key / "config.json").write_text("{}")
    store.save({"a": 1}, {"m": 1}, {"w": torch.ones(1)})
    assert store.load(key).metrics == {"m": 1}
    assert sorted(p.name for p in store.dir.iterdir()) == [".quarantine", key]
    (moved,) = store.quarantined()
    assert moved.name.startswith(key) and (moved / "config.json").read_text() == "{}"
    assert "metrics.json is missing" in (moved / "reason.txt").read_text()


def test_adding_an_expansion_trains_only_the_new_children(tmp_path, monkeypatch):
    """The stored dense entry carries the parent at expansion, so a sweep that adds
    an expansion reuses the stored parent, baseline and children and trains only
    what is new, and gets what a from-scratch run gets."""
    store = Store(tmp_path)
    run_fpe([tiny_spec(expansions=(("clause", 2),))], device="cpu", store=store)
    before = set(store.keys())
    import fci.train.schedule as train

    fits = []
    real_fit = train.fit

    def counting_fit(stack, *a, **k):
        fits.append(stack.n_models)
        return real_fit(stack, *a, **k)

    monkeypatch.setattr(train, "fit", counting_fit)
    spec = tiny_spec(expansions=(("clause", 2), ("random", 3)))
    (res,) = run_fpe([spec], device="cpu", store=store)
    assert fits == [1]  # one fine-tuning stack holding only the new child; no dense training
    assert len(set(store.keys()) - before) == 1
    monkeypatch.setattr(train, "fit", real_fit)
    (scratch,) = run_fpe([spec], device="cpu")
    for cond in spec.expansions:
        assert torch.allclose(res.children[cond].model.weights[0], scratch.children[cond].model.weights[0], atol=1e-6)
    assert torch.equal(res.dense.model.weights[0], scratch.dense.model.weights[0])


def test_spec_round_trips_through_entry_configs():
    from fci.train import FPESpec

    spec = tiny_spec(hidden=5, expansions=(("random", 3),))
    for (cond, alpha), cfg in entry_configs(spec).items():
        back = FPESpec.from_entry_config(json.loads(json.dumps(cfg)))
        assert (back.task, back.hidden, back.seed, back.train) == (spec.task, spec.hidden, spec.seed, spec.train)
        assert back.expansions == (() if cond == "dense" else ((cond, alpha),))
        assert entry_configs(back)[(cond, alpha)] == cfg
    with pytest.raises(ValueError, match="not an FPE trial config"):
        FPESpec.from_entry_config({"a": 1})
