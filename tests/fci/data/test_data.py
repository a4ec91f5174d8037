"""fci.data (digits, user embeddings, Boolean tasks), FPE of every hidden layer,
and the FPE schedule on any dataset."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fci.data import EMBEDDING_KEYS, DatasetSpec, boolean, digits, load_embeddings
from fci.fpe.mlp import expand_layers
from fci.models.mlp import MaskedMLP
from fci.store import Store
from fci.tasks import DNFTask, TaskConfig
from fci.train import FPESpec, TrainConfig, run_fpe, run_fpe_data, trial_keys


def test_digits_is_a_stratified_deterministic_split():
    a, b, c = digits(seed=0), digits(seed=0), digits(seed=1)
    assert (a.n_in, a.n_out, a.loss) == (64, 10, "ce")
    assert a.n_train + a.n_test == 1797 and a.n_test == pytest.approx(0.25 * 1797, abs=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    assert 0 <= float(a.x_train.min()) and float(a.x_train.max()) <= 1
    # stratified: every class's share of the test split is within one sample of its share overall
    for k in range(10):
        share = float((a.y_test == k).sum()) / a.n_test
        overall = float((a.y_train == k).sum() + (a.y_test == k).sum()) / 1797
        assert abs(share - overall) <= 1.5 / a.n_test
    assert a.name != c.name  # the split is part of the identity (store keys)


def test_boolean_dataset_labels_come_from_the_formula():
    cfg = TaskConfig(n_clauses=3, clause_size=2, n_train=64, n_test=32)
    d = boolean(cfg, seed=4)
    task = DNFTask.from_config(cfg, 4)
    assert d.loss == "bce" and d.n_out == 1 and d.info["clauses"] == task.clauses
    assert torch.equal(d.y_train.float(), task.evaluate(d.x_train).float().view_as(d.y_train))


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_embeddings_map_labels_and_standardise(tmp_path):
    rng = np.random.default_rng(0)
    xtr, xte = rng.normal(3, 2, (40, 5)), rng.normal(3, 2, (10, 5))
    ytr = np.array(["cat", "dog", "eel", "dog"] * 10)
    yte = np.array(["dog", "cat", "eel", "cat", "dog", "cat", "dog", "cat", "dog", "cat"])
    d = load_embeddings(_npz(tmp_path / "emb.npz", X_train=xtr, y_train=ytr, X_test=xte, y_test=yte))
    assert d.info["classes"] == ["cat", "dog", "eel"] and d.n_out == 3
    assert d.y_train[:3].tolist() == [0, 1, 2] and d.y_test[:3].tolist() == [1, 0, 2]
    assert torch.allclose(d.x_train.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(d.x_train.std(0, unbiased=False), torch.ones(5), atol=1e-4)
    # the test split uses the training statistics
    mu, sd = xtr.mean(0), xtr.std(0)
    assert np.allclose(d.x_test.numpy(), (xte - mu) / sd, atol=1e-5)


@pytest.mark.parametrize("drop", EMBEDDING_KEYS)
def test_embeddings_missing_key_is_named(tmp_path, drop):
    arrays = dict(X_train=np.zeros((4, 3)), y_train=np.array([0, 1, 0, 1]), X_test=np.zeros((2, 3)), y_test=np.array([0, 1]))
    del arrays[drop]
    with pytest.raises(ValueError, match=rf"missing key\(s\) \['{drop}'\]"):
        load_embeddings(_npz(tmp_path / "bad.npz", **arrays))


@pytest.mark.parametrize("arrays,match", [
    (dict(X_train=np.zeros(4), y_train=np.zeros(4), X_test=np.zeros((2, 3)), y_test=np.zeros(2)), "X_train must be a 2-d"),
    (dict(X_train=np.zeros((4, 3)), y_train=np.zeros(3), X_test=np.zeros((2, 3)), y_test=np.zeros(2)), "X_train has 4 rows but y_train has 3"),
    (dict(X_train=np.zeros((4, 3)), y_train=np.arange(4), X_test=np.zeros((2, 2)), y_test=np.arange(2)), "3 features but X_test has 2"),
    (dict(X_train=np.full((4, 3), np.nan), y_train=np.arange(4), X_test=np.zeros((2, 3)), y_test=np.arange(2)), "NaN"),
    (dict(X_train=np.zeros((4, 3)), y_train=np.zeros(4), X_test=np.zeros((2, 3)), y_test=np.zeros(2)), "single class"),
])
def test_embeddings_malformed_arrays(tmp_path, arrays, match):
    with pytest.raises(ValueError, match=match):
        load_embeddings(_npz(tmp_path / "bad.npz", **arrays))


def _labelled(tmp_path, ytr, yte):
    return _npz(tmp_path / "emb.npz", X_train=np.zeros((len(ytr), 3)), y_train=np.asarray(ytr),
                X_test=np.zeros((len(yte), 3)), y_test=np.asarray(yte))


def test_embeddings_test_labels_must_be_training_labels(tmp_path):
    """Train labels 0-2 and test labels 5-7 once ran and reported '6 classes'."""
    with pytest.raises(ValueError, match=r"y_test holds labels that y_train never shows: \[5, 6, 7\].*\[0, 1, 2\]"):
        load_embeddings(_labelled(tmp_path, [0, 1, 2] * 4, [5, 6, 7]))
    with pytest.raises(ValueError, match=r"never shows: \['emu'\]"):
        load_embeddings(_labelled(tmp_path, ["cat", "dog"] * 2, ["dog", "emu"]))


def test_embeddings_labels_must_be_integral_or_strings(tmp_path):
    with pytest.raises(ValueError, match=r"y_train must hold class labels, integers or strings; got non-integral numbers such as \[0.5"):
        load_embeddings(_labelled(tmp_path, [0.5, 1.0, 0.5, 1.0], [1.0]))
    with pytest.raises(ValueError, match="y_test must hold class labels.*nan"):
        load_embeddings(_labelled(tmp_path, [0.0, 1.0], [np.nan]))
    with pytest.raises(ValueError, match="y_train holds numbers but y_test holds strings"):
        load_embeddings(_labelled(tmp_path, [0, 1], ["0"]))
    d = load_embeddings(_labelled(tmp_path, [2.0, 7.0, 2.0], [7.0]))  # integral floats are integers
    assert d.info["classes"] == ["2", "7"] and d.y_test.tolist() == [1] and d.n_out == 2


def test_embeddings_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_embeddings(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_embeddings(tmp_path / "junk.npz")


@pytest.mark.parametrize("hidden", [(6, 5), (4, 7, 3), (5, 5, 5, 5, 5)])
@pytest.mark.parametrize("alpha,split", [(2, "random"), (3, "random"), (2, "gram")])
def test_expanding_every_layer_keeps_the_budget(hidden, alpha, split):
    model = MaskedMLP(10, hidden, 3, seed=1)
    child = expand_layers(model, alpha, split, layers="all", seed=7)
    assert child.hidden == [h * alpha for h in hidden]
    assert child.nnz() == model.nnz()
    assert [i["layer"] for i in child.expansion_info["layers"]] == list(range(len(hidden)))
    again = expand_layers(model, alpha, split, layers="all", seed=7)
    assert all(torch.equal(a, b) for a, b in zip(child.parameters(), again.parameters()))
    # the first layer's children partition each parent's (kept) inputs
    W, Wc = model.effective_weights()[0][0], child.effective_weights()[0][0]
    for i in range(hidden[0]):
        kids = Wc[i * alpha : (i + 1) * alpha]
        assert int(((kids != 0).sum(0) > 1).sum()) == 0  # no input goes to two children
        assert torch.all((kids.sum(0) == W[i]) | (kids.sum(0) == 0))  # kept weights are the parent's


def test_expand_layers_rejects_bad_layers():
    model = MaskedMLP(6, (4, 4), 1)
    with pytest.raises(ValueError, match="hidden layers 0..1"):
        expand_layers(model, 2, layers=[2])
    with pytest.raises(ValueError, match="at least one"):
        expand_layers(model, 2, layers=[])


CFG = TrainConfig(lr=0.02, batch_size=64, warmup=3, finetune=3)


def _small_digits():
    d = digits(seed=0)
    return type(d)(name="digits-small", x_train=d.x_train[:256], y_train=d.y_train[:256], x_test=d.x_test[:128],
                   y_test=d.y_test[:128], loss="ce")


def _trials(data, trials, expansions, layers=(0,)):
    spec = DatasetSpec.from_dataset(data)
    return [FPESpec(data=spec, hidden=h, seed=s, expansions=tuple(expansions), train=CFG, layers=layers) for h, s in trials]


def test_fpe_on_data_pairs_baseline_and_children_at_equal_budget():
    d = _small_digits()
    res = run_fpe(_trials(d, [(8, 0), (5, 1), ((6, 6), 2)], [("random", 2), ("gram", 2)], layers="all"), device="cpu")
    for r in res:
        assert len(r.parent.train_loss) == CFG.warmup and len(r.dense.train_loss) == CFG.epochs
        assert r.dense.train_loss[: CFG.warmup] == r.parent.train_loss  # the baseline continues the parent's run
        for (split, alpha), c in r.children.items():
            assert c.nnz == r.parent.nnz == r.dense.nnz
            assert c.model.hidden == [h * alpha for h in r.parent.model.hidden]
            assert len(c.train_loss) == CFG.finetune
        assert 0.0 <= r.dense.test_accuracy <= 1.0
    assert res[2].hidden == (6, 6) and res[0].dataset == "digits-small"


def test_fpe_on_data_stacks_an_int_width_with_a_one_layer_tuple():
    res = run_fpe(_trials(_small_digits(), [(8, 0), ((5,), 1)], [("random", 2)]), device="cpu")
    assert [r.hidden for r in res] == [8, (5,)]
    assert res[1].children[("random", 2)].model.hidden == [10]


def test_fpe_on_data_does_not_depend_on_the_stack():
    d = _small_digits()
    together = run_fpe(_trials(d, [(8, 0), (4, 1)], [("random", 2)]), device="cpu")
    (alone,) = run_fpe(_trials(d, [(4, 1)], [("random", 2)]), device="cpu")
    a, b = together[1].children[("random", 2)].model, alone.children[("random", 2)].model
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.allclose(x, y, atol=1e-5)


def test_fpe_on_data_clause_split_needs_clauses():
    with pytest.raises(ValueError, match="needs a Boolean task's clauses"):
        _trials(_small_digits(), [(4, 0)], [("clause", 2)])
    with pytest.raises(ValueError, match="needs a Boolean task's clauses"):
        FPESpec(data=DatasetSpec.digits(), expansions=(("clause", 2),))
    b = boolean(TaskConfig(n_clauses=3, clause_size=2, n_train=128, n_test=64), seed=0)
    (r,) = run_fpe(_trials(b, [(4, 0)], [("clause", 2)]), device="cpu")
    assert r.children[("clause", 2)].nnz == r.dense.nnz


def test_run_fpe_data_is_run_fpe_on_the_dataset_and_says_it_is_deprecated():
    d = _small_digits()
    with pytest.warns(DeprecationWarning, match="run_fpe"):
        (old,) = run_fpe_data(d, [(4, 1)], [("random", 2)], CFG, device="cpu", progress=False)
    (new,) = run_fpe(_trials(d, [(4, 1)], [("random", 2)]), device="cpu")
    for x, y in zip(old.children[("random", 2)].model.parameters(), new.children[("random", 2)].model.parameters()):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------- dataset specs

SMALL_TASK = TaskConfig(n_clauses=3, clause_size=2, n_train=96, n_test=64)


@pytest.mark.parametrize("spec", [DatasetSpec.digits(seed=3, test_fraction=0.5), DatasetSpec.boolean(SMALL_TASK, seed=4),
                                  DatasetSpec.boolean(SMALL_TASK)])
def test_a_dataset_spec_round_trips_and_names_its_data(spec):
    back = DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and hash(back) == hash(spec) and back.key() == spec.key()
    a, b = back.build(trial_seed=7), spec.build(trial_seed=7)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_dataset_specs_differ_when_their_data_does():
    assert DatasetSpec.digits(seed=0) != DatasetSpec.digits(seed=1)
    assert DatasetSpec.digits(test_fraction=0.25) != DatasetSpec.digits(test_fraction=0.5)
    assert DatasetSpec.boolean(SMALL_TASK, seed=0) != DatasetSpec.boolean(SMALL_TASK, seed=None)
    per_trial = DatasetSpec.boolean(SMALL_TASK)
    assert not torch.equal(per_trial.build(trial_seed=0).x_train, per_trial.build(trial_seed=1).x_train)
    with pytest.raises(ValueError, match="trial_seed"):
        per_trial.build()


@pytest.mark.parametrize("kind, options, seed, match", [
    ("mnist", {}, 0, "unknown dataset kind .mnist.*known: boolean, digits, embeddings, memory"),
    ("digits", {"test_fraction": 1.5}, 0, "test_fraction"),
    ("digits", {"shuffle": True}, 0, "unknown option"),
    ("digits", {}, None, "seed=None"),
    ("boolean", {"n_clauses": 0}, 0, "n_clauses"),
    ("embeddings", {"path": "/no/such.npz"}, 0, "no such file"),
])
def test_a_bad_dataset_spec_is_refused_naming_the_field(kind, options, seed, match):
    with pytest.raises(ValueError, match=match):
        DatasetSpec(kind, options, seed)


def test_an_embeddings_spec_is_named_by_the_files_content(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(20, 3)), "y_train": np.arange(20) % 2, "X_test": rng.normal(size=(6, 3)),
              "y_test": np.arange(6) % 2}
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez(tmp_path / "b.npz", **arrays)  # the same content elsewhere
    a, b = DatasetSpec.embeddings(tmp_path / "a.npz"), DatasetSpec.embeddings(tmp_path / "b.npz")
    assert a == b and a.to_dict()["options"]["path"] != b.to_dict()["options"]["path"]
    assert a.build().n_in == 3
    written = a.to_dict()
    np.savez(tmp_path / "a.npz", **{**arrays, "y_train": 1 - arrays["y_train"]})  # the file changes under the spec
    with pytest.raises(ValueError, match="has changed since"):
        DatasetSpec.from_dict(written)


def test_an_in_memory_dataset_is_named_by_its_content():
    d = _small_digits()
    copy = type(d)(name="another name", x_train=d.x_train.clone(), y_train=d.y_train.clone(), x_test=d.x_test.clone(),
                   y_test=d.y_test.clone(), loss="ce")
    assert DatasetSpec.from_dataset(d) == DatasetSpec.from_dataset(copy)
    changed = type(d)(name=d.name, x_train=d.x_train.flip(0), y_train=d.y_train, x_test=d.x_test, y_test=d.y_test, loss="ce")
    assert DatasetSpec.from_dataset(changed) != DatasetSpec.from_dataset(d)


def test_the_same_dataset_spec_gives_the_same_store_keys_and_trains_once(tmp_path):
    """Two callers that build the same spec independently (as two studies do) name
    the same models: the second trains nothing."""
    store = Store(tmp_path)
    first = [FPESpec(data=DatasetSpec.digits(seed=0), hidden=4, seed=s, expansions=(("random", 2),), train=CFG) for s in (0, 1)]
    again = [FPESpec(data=DatasetSpec.from_dict({"kind": "digits", "options": {}, "seed": 0}), hidden=4, seed=s,
                     expansions=(("random", 2),), train=CFG) for s in (0, 1)]
    assert trial_keys(first) == trial_keys(again)
    assert len(run_fpe(first, device="cpu", store=store).trained) == 2
    rerun = run_fpe(again, device="cpu", store=store)
    assert rerun.trained == [] and len(store.keys()) == 4
    assert rerun[1].dense.test_accuracy == run_fpe(first, device="cpu", store=store)[1].dense.test_accuracy


def test_a_per_trial_boolean_spec_is_the_task_spelling():
    a = FPESpec(task=SMALL_TASK, hidden=4, seed=2)
    b = FPESpec(data=DatasetSpec.boolean(SMALL_TASK), hidden=4, seed=2)
    assert a == b and trial_keys([a]) == trial_keys([b])
    fixed = FPESpec(data=DatasetSpec.boolean(SMALL_TASK, seed=5), hidden=4, seed=2)
    assert trial_keys([fixed]) != trial_keys([a])
    assert fixed.make_task().seed == 5 and a.make_task().seed != 5


def test_the_dense_baseline_key_does_not_depend_on_the_expanded_layers():
    one = FPESpec(data=DatasetSpec.digits(), hidden=(4, 4), expansions=(("random", 2),))
    every = FPESpec(data=DatasetSpec.digits(), hidden=(4, 4), expansions=(("random", 2),), layers="all")
    assert trial_keys([one])[0][0] == trial_keys([every])[0][0]
    assert trial_keys([one])[0][1] != trial_keys([every])[0][1]


def test_load_once_reads_a_file_once_until_it_changes(tmp_path):
    from fci.data import load_once

    path = tmp_path / "f.txt"
    path.write_text("one")
    calls = []

    def read(p):
        calls.append(p)
        return Path(p).read_text()

    assert load_once(read, path) == "one" and load_once(read, str(path)) == "one"
    assert calls == [os.path.realpath(path)]  # one read, of the real path
    path.write_text("three")  # a changed size: read again
    assert load_once(read, path) == "three" and len(calls) == 2
