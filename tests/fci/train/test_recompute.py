"""A stored FPE model's measurements recompute to what it records, and every
recomputable quantity that is altered is named."""

from __future__ import annotations

import copy
import json

import pytest

from fci.data import DatasetSpec
from fci.store import NotRecomputable, Store, StoreEntry, config_key
from fci.store.entries import FILES, seal_bytes
from fci.train import FPESpec, TrainConfig, entry_configs, run_fpe
from fci.train.recompute import recompute_fpe_entry
from tests.helpers import tiny_spec


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A Boolean trial, a deeper trial split in every layer, and a digits trial, stored."""
    root = tmp_path_factory.mktemp("recompute")
    store = Store(root)
    specs = [tiny_spec(), tiny_spec(seed=1, hidden=(4, 3), expansions=(("random", 2),)),
             FPESpec(data=DatasetSpec.digits(seed=0), hidden=6, seed=2, expansions=(("random", 2),),
                     train=TrainConfig(warmup=2, finetune=2, batch_size=64, lr=0.02))]
    specs[1] = FPESpec(**{**specs[1].__dict__, "layers": "all"})
    run_fpe(specs, device="cpu", store=store)
    return store, specs


def _entries(store, specs):
    return [store.load(config_key(cfg)) for s in specs for cfg in entry_configs(s).values()]


def test_every_stored_model_recomputes_to_what_it_records(stored):
    store, specs = stored
    entries = _entries(store, specs)
    assert len(entries) == 3 + 2 + 2
    for e in entries:
        assert recompute_fpe_entry(e) == [], e


def _edited(entry: StoreEntry, metrics=None, tensors=None) -> StoreEntry:
    m = copy.deepcopy(entry.metrics)
    t = dict(entry.tensors)
    if metrics:
        metrics(m)
    if tensors:
        tensors(t)
    return StoreEntry(key=entry.key, path=entry.path, config=entry.config, metrics=m, _tensors=t)


def _bump(d, name, by):
    d[name] = d[name] + by


def _flip_mask(t):
    m = t["M0"].clone()
    m[0, 0] = 1 - m[0, 0]
    t["M0"] = m


def _swap_parents(t):
    p = t["parent_index"].clone()
    p[[0, -1]] = p[[-1, 0]] if p[0] != p[-1] else p[[0, -1]] + 1
    t["parent_index"] = p


def _scale_parent(t):
    t["parent.W0"] = t["parent.W0"] * 4


EDITS = {  # (what to alter, a phrase the disagreement must hold)
    "test_accuracy": (lambda m: _bump(m, "test_accuracy", 1 / 256), None, "model's test_accuracy recorded"),
    "train_accuracy": (lambda m: _bump(m, "train_accuracy", -1 / 256), None, "model's train_accuracy recorded"),
    "test_exact_match": (lambda m: _bump(m, "test_exact_match", 1 / 64), None, "test_exact_match recorded"),
    "test_loss, 1e-4 relative": (lambda m: m.update(test_loss=m["test_loss"] * (1 + 1e-4)), None, "test_loss recorded"),
    "nnz": (lambda m: _bump(m, "nnz", 1), None, "model's nnz recorded"),
    "parent's accuracy": (lambda m: _bump(m["parent"], "test_accuracy", 1 / 256), None, "parent's test_accuracy"),
    "clauses": (lambda m: m["clauses"].reverse(), None, "clauses are not the trial's"),
    "data": (lambda m: m.update(data={**m["data"], "seed": 5}), None, "data recorded"),
    "a mask bit": (None, _flip_mask, "M0 differs from expanding the stored parent again"),
    "parent_index": (None, _swap_parents, "parent_index differs"),
    "the parent's weights": (None, _scale_parent, "parent's test_loss recorded"),
}


@pytest.mark.parametrize("what", EDITS)
def test_each_recomputable_quantity_that_is_altered_is_named(stored, what):
    store, specs = stored
    child = store.load(config_key(entry_configs(specs[0])[("clause", 2)]))
    metrics, tensors, phrase = EDITS[what]
    wrong = recompute_fpe_entry(_edited(child, metrics, tensors))
    assert any(phrase in w for w in wrong), wrong


def test_deep_verify_finds_metrics_edited_under_a_forged_seal(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec()
    run_fpe([spec], device="cpu", store=store)
    key = config_key(entry_configs(spec)[("dense", 1)])
    p = store.path(key)
    m = json.loads((p / "metrics.json").read_text())
    m["test_accuracy"] -= 1 / 128
    (p / "metrics.json").write_text(json.dumps(m))
    (p / "checksums.json").unlink()
    (p / "checksums.json").write_bytes(seal_bytes({n: (p / n).read_bytes() for n in FILES}))
    assert store.verify() == {}  # the checksums match: only recomputation can tell
    deep = store.verify(deep=True)
    assert list(deep) == [key] and "test_accuracy recorded" in deep[key]
    survey = Store(tmp_path).survey(deep=True)
    assert survey.recomputed == 3 and not survey.not_recomputable
    store.repair(deep=True)
    assert store.verify(deep=True) == {} and not store.has(key) and len(store.quarantined()) == 1


def test_an_entry_whose_data_is_gone_cannot_be_recomputed(tmp_path):
    import fci.data as data
    import fci.data.spec as data_spec
    import fci.train.recompute as recompute

    store = Store(tmp_path)
    spec = FPESpec(data=DatasetSpec.from_dataset(data.boolean(tiny_spec().task, seed=3)), hidden=4, seed=0,
                   expansions=(("random", 2),), train=TrainConfig(warmup=2, finetune=2, batch_size=64, lr=0.02))
    run_fpe([spec], device="cpu", store=store)
    key = config_key(entry_configs(spec)[("random", 2)])
    entry = store.load(key)
    assert recompute_fpe_entry(entry) == []
    caches = (data_spec._MEMORY, data_spec._BUILT, recompute._DATA)
    saved = [dict(c) for c in caches]
    try:
        for c in caches:  # as in another process: the in-memory dataset is not loaded there
            c.clear()
        with pytest.raises(NotRecomputable, match="not loaded in this process"):
            recompute_fpe_entry(entry)
        (store.path(key) / "checksums.json").unlink()
        assert store.heal([key]) == [key]  # unsealed and unverifiable: quarantined
    finally:
        for c, old in zip(caches, saved):
            c.clear()
            c.update(old)
    assert "cannot be re-verified" in (store.quarantined()[0] / "reason.txt").read_text()


def test_tensors_that_fit_no_model_are_a_disagreement_not_a_crash(stored):
    from fci.store.recompute import recompute

    store, specs = stored
    child = store.load(config_key(entry_configs(specs[0])[("clause", 2)]))
    wrong = recompute(_edited(child, tensors=lambda t: t.update(W0=t["W0"][:, :3])))
    assert len(wrong) == 1 and "could not be recomputed" in wrong[0]
