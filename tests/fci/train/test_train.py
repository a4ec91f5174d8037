import pytest
import torch

from fci.models.mlp import MaskedMLP, MaskedMLPStack
from fci.tasks import DNFTask
from fci.train import FPESpec, TrainConfig, fit, run_fpe, train_models
from tests.helpers import tiny_spec


def _data(task: DNFTask):
    xtr, ytr = task.sample(256, seed=1)
    xte, yte = task.sample(128, seed=2)
    return xtr, ytr, xte, yte


def test_stack_trains_to_the_same_weights_as_each_model_alone():
    tasks = [DNFTask.generate(n_clauses=3, clause_size=2, n_vars=8, seed=s) for s in range(3)]
    models = [MaskedMLP(8, h, 1, seed=s) for s, h in enumerate((3, 6, 4))]
    cfg = TrainConfig(lr=0.02, batch_size=32)
    stacked = train_models([m.copy() for m in models], [_data(t) for t in tasks], cfg, epochs=5, device="cpu")
    for m, t, res in zip(models, tasks, stacked):
        (alone,) = train_models([m.copy()], [_data(t)], cfg, epochs=5, device="cpu")
        for a, b in zip(alone.model.parameters(), res.model.parameters()):
            assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
        assert alone.test_accuracy == pytest.approx(res.test_accuracy, abs=1 / 128 + 1e-9)


def test_training_is_deterministic_and_learns():
    spec = tiny_spec(warmup=15, finetune=15, hidden=8)
    a, b = run_fpe([spec], device="cpu"), run_fpe([spec], device="cpu")
    for x, y in zip(a[0].dense.model.parameters(), b[0].dense.model.parameters()):
        assert torch.equal(x, y)
    for cond in a[0].children:
        assert torch.equal(a[0].children[cond].model.weights[0], b[0].children[cond].model.weights[0])
    dense = a[0].dense
    assert dense.train_loss[-1] < dense.train_loss[0]
    assert dense.test_accuracy > 0.6  # chance is 0.5 with the balanced sampler


def test_fpe_schedule_pairs_baseline_and_children():
    spec = tiny_spec(expansions=(("clause", 2), ("random", 3), ("gram", 2)))
    (res,) = run_fpe([spec], device="cpu")
    parent_nnz = res.parent.nnz
    assert res.dense.nnz == parent_nnz
    for (split, alpha), child in res.children.items():
        assert child.nnz == parent_nnz
        assert child.model.hidden == [spec.hidden * alpha]
        assert len(child.train_loss) == spec.train.finetune
    assert len(res.dense.train_loss) == spec.train.warmup + spec.train.finetune
    assert len(res.parent.train_loss) == spec.train.warmup
    # the baseline's first `warmup` epochs are the parent's
    assert res.dense.train_loss[: spec.train.warmup] == res.parent.train_loss
    # parent = baseline's state at expansion: retrain warmup only and compare
    (short,) = run_fpe([FPESpec(task=spec.task, hidden=spec.hidden, seed=spec.seed, expansions=(),
                                train=TrainConfig(**{**spec.train.to_dict(), "finetune": 0}))], device="cpu")
    assert torch.equal(short.dense.model.weights[0], res.parent.model.weights[0])


def test_a_trial_does_not_depend_on_its_stack_mates():
    alone = run_fpe([tiny_spec(seed=7)], device="cpu")[0]
    together = run_fpe([tiny_spec(seed=3, hidden=6), tiny_spec(seed=7)], device="cpu")[1]
    assert torch.allclose(alone.dense.model.weights[0], together.dense.model.weights[0], atol=1e-5)
    assert torch.allclose(alone.children[("random", 2)].model.weights[0], together.children[("random", 2)].model.weights[0], atol=1e-5)


def test_multiclass_loss_and_multi_output_exact_match():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 200, 5, generator=g)
    y = (x[..., :3].argmax(-1))  # a 3-class problem
    stack = MaskedMLPStack.from_models([MaskedMLP(5, 16, 3, seed=0)])
    _, losses = fit(stack, x, y, TrainConfig(lr=0.05, batch_size=50), range(60), loss="ce")
    assert losses[0, -1] < losses[0, 0]
    from fci.train import evaluate
    ev = evaluate(stack, x, y, loss="ce")
    assert ev["accuracy"][0] > 0.7
    spec = tiny_spec(outputs="clauses", warmup=10, finetune=0, expansions=())
    (res,) = run_fpe([spec], device="cpu")
    assert res.dense.test_exact_match <= res.dense.test_accuracy


@pytest.mark.parametrize(
    "kw, match",
    [(dict(lr=0), "lr"), (dict(batch_size=0), "batch_size"), (dict(warmup=-1), "warmup"),
     (dict(optimizer="rmsprop"), "optimizer"), (dict(weight_decay=-1.0), "weight_decay")],
)
def test_bad_train_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_bad_spec_raises():
    with pytest.raises(ValueError, match="split"):
        FPESpec(expansions=(("banana", 2),))
    with pytest.raises(ValueError, match="alpha"):
        FPESpec(expansions=(("random", 0),))


@pytest.mark.parametrize("loss,n_out", [("bce", 3), ("ce", 5)])
def test_a_models_evaluation_does_not_depend_on_its_stack_mates(loss, n_out):
    """Accuracy, exact match and loss of a model come out bit for bit the same
    alone and in a stack with wider mates (a padded stack's float32 sums would
    otherwise change with the padding: a resumed study evaluates differently)."""
    from fci.train import evaluate

    models = [MaskedMLP(24, h, n_out, seed=i) for i, h in enumerate((5, 40, 5, 17, 64))]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(len(models), 300, 24, generator=g) < 0.5).float()
    y = ((torch.rand(len(models), 300, n_out, generator=g) < 0.5).float() if loss == "bce"
         else torch.randint(0, n_out, (len(models), 300), generator=g))
    together = evaluate(MaskedMLPStack.from_models(models), x, y, loss)
    for i, m in enumerate(models):
        alone = evaluate(MaskedMLPStack.from_models([m]), x[i:i + 1], y[i:i + 1], loss)
        for k in ("accuracy", "exact_match", "loss"):
            assert torch.equal(alone[k][0], together[k][i]), (k, i)


def test_the_former_result_name_still_works_but_warns():
    import fci.train
    from fci.train import FPEResult

    with pytest.warns(DeprecationWarning, match="DataFPEResult is deprecated and will be removed in fci 0.3"):
        assert fci.train.DataFPEResult is FPEResult
