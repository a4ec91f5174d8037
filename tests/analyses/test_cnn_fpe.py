"""The cnn_fpe study (analyses/cnn_fpe.py) and the image files it reads (fci.data.images)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from analyses import cnn_fpe
from fci.data.images import digit_images, load_images
from fci.stats import check_verdict
from tests.helpers import refusal


def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(40, 2, 6, 6)), "y_train": np.arange(40) % 3,
              "X_test": rng.normal(size=(12, 2, 6, 6)), "y_test": np.arange(12) % 3}
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_digit_images_are_the_digits_split():
    from fci.data.datasets import digits

    d, flat = digit_images(seed=0), digits(seed=0)
    assert d.shape == (1, 8, 8) and d.n_train == 1347 and d.n_test == 450 and d.n_out == 10
    assert torch.equal(d.x_train.flatten(1), flat.x_train) and torch.equal(d.y_test, flat.y_test)


def test_load_images_standardises_per_channel(tmp_path):
    d = load_images(_npz(tmp_path / "ok.npz", y_train=np.array(["a", "b", "c", "d"] * 10), y_test=np.array(["d", "a"] * 6)))
    assert d.shape == (2, 6, 6) and d.n_out == 4
    assert torch.allclose(d.x_train.mean((0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(d.x_train.std((0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    assert d.y_test[:2].tolist() == [3, 0]


@pytest.mark.parametrize("over, message", [
    ({"X_test": None}, "missing key(s) ['X_test']"),
    ({"X_train": np.zeros((40, 36))}, "X_train must be a 4-d real array (N, C, H, W)"),
    ({"X_test": np.full((12, 2, 6, 6), np.nan)}, "X_test holds NaN or infinite values"),
    ({"y_train": np.zeros((40, 2))}, "y_train must be 1-d"),
    ({"y_test": np.arange(11) % 3}, "X_test has 12 images but y_test has 11 labels"),
    ({"X_test": np.zeros((12, 2, 5, 6))}, "X_train images are (C, H, W) = (2, 6, 6) but X_test's are (2, 5, 6)"),
    ({"y_train": np.arange(40) % 3 + 0.5}, "y_train must hold class labels"),
    ({"y_test": np.arange(12) % 3 + 7}, "y_test holds labels that y_train never shows: [7, 8, 9]"),
    ({"y_train": np.zeros(40, dtype=int)}, "y_train holds a single class"),
])
def test_bad_image_files_are_refused_with_the_key_named(tmp_path, over, message):
    path = _npz(tmp_path / "bad.npz", **over)
    with pytest.raises(ValueError) as e:
        load_images(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_unreadable_or_missing_file_is_refused(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_images(junk)
    with pytest.raises(ValueError, match="no such file"):
        load_images(tmp_path / "nope.npz")


def test_the_command_refuses_a_bad_images_file_before_any_work(tmp_path, capsys):
    path = _npz(tmp_path / "bad.npz", y_train=None)
    with pytest.raises(SystemExit) as e:
        cnn_fpe.main(["--tiny", "--images", str(path), "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "missing key(s) ['y_train']" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("argv, message", [
    (["--alphas", "2,10"], "--alphas values must be <= 9"),
    (["--splits", "clause"], "--splits takes values from random, channel, spatial, gram"),
    (["--conv-layers", "3"], "--conv-layers takes depths 1 and 2"),
    (["--images", "x.npz", "--split-seed", "1"], "--split-seed splits digits"),
    (["--warmup", "-1"], "warmup must be an integer >= 0"),
    (["--head", "avg"], "--head: invalid choice: 'avg'"),
])
def test_bad_options_fail_before_any_work(tmp_path, capsys, argv, message):
    code, err = refusal(cnn_fpe.main, ["--tiny", *argv, "--data", str(tmp_path / "data")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "data").exists()


def test_quick_end_to_end_and_resume(tmp_path, capsys):
    out, data = tmp_path / "out", tmp_path / "data"
    assert cnn_fpe.main(["--quick", "--trials", "2", "--out", str(out), "--data", str(data)]) == 0
    df = pd.read_csv(out / "results.csv")
    n_models = 1 + 1 + 4 * 2  # dense, restart, 4 splits x alpha 2 and 4
    assert len(df) == 2 * 2 * n_models  # 2 widths x 2 trials
    assert (df.nnz == df.parent_nnz).all()
    assert set(df.condition) == {"dense", "restart", "random", "channel", "spatial", "gram"}
    kids = df[~df.condition.isin(["dense", "restart"])]
    assert (kids.channels_after.astype(str) == (kids.filters * kids.alpha).astype(str)).all()
    assert df.cosine_interference.notna().all() and (df.feature_capacity > 0).all()
    # every head column a child replicates costs nnz: random alpha=4 children must have pruned some
    assert (df[(df.condition == "random") & (df.alpha == 4)].pruned > 0).all() and (df[df.condition == "dense"].pruned == 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget_kept"] is True and summary["run"]["trained_jobs"] == 4
    paper = summary["paper"]
    assert paper[0]["claim"].startswith("FPE paper (latest version), CNNs: widening at a constant non-zero parameter count")
    assert all(check_verdict(c) is None and "measured" in c for c in paper)
    assert len(paper) == 4 * 2 * 4  # per split and alpha: gains at every width; beats restart; acc/nnz; cosine
    assert "Regime: " in paper[0]["note"]
    st = pd.read_csv(out / "stats.csv")
    dense = st[st.condition == "dense"]
    assert np.allclose(dense.rel_improvement_mean, 0)
    html = (out / "cnn_fpe.html").read_text()
    assert "Plotly.newPlot" in html and (out / "cnn_fpe.plotly.json").is_file()
    first = (out / "results.csv").read_text()
    capsys.readouterr()
    assert cnn_fpe.main(["--quick", "--trials", "2", "--out", str(out), "--data", str(data)]) == 0
    assert "(0 run, 4 from the store)" in capsys.readouterr().out
    assert (out / "results.csv").read_text() == first


def test_tiny_run_on_a_user_images_file_with_two_channels(tmp_path):
    path = _npz(tmp_path / "imgs.npz")
    out = tmp_path / "out"
    assert cnn_fpe.main(["--tiny", "--images", str(path), "--conv-layers", "1,2", "--filters", "2", "--out", str(out),
                         "--data", str(tmp_path / "data")]) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df.conv_layers) == {1, 2} and (df.nnz == df.parent_nnz).all()
    assert df.dataset.iloc[0].startswith("images-imgs-")
    # two input channels: the channel split really splits the first layer
    ch = df[(df.condition == "channel") & (df.conv_layers == 1)]
    assert (ch.active_filters > ch.filters).any()


def test_gap_head_replicates_one_column_per_child(tmp_path):
    out = tmp_path / "out"
    assert cnn_fpe.main(["--tiny", "--head", "gap", "--out", str(out), "--data", str(tmp_path / "data")]) == 0
    df = pd.read_csv(out / "results.csv")
    assert (df.nnz == df.parent_nnz).all()
    # a 4-filter parent with a GAP head: 4*9 + 4 conv, 10*4 + 10 head = 90 non-zeros
    assert (df.parent_nnz == 90).all()
