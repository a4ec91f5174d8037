"""The explorer's figures show the data: a robust colour range per row, image
inputs as pictures, colour bars stated alike on every label; checked on hand-built
matrices and on a hand-built digits store with an outlier pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app import figures
from app.cache import Explorer
from app.figures import OUTLIER_FACTOR, ROBUST_PERCENTILE, array_of, picture_grid, row_scale
from fci.data import DatasetSpec
from fci.models.mlp import MaskedMLP
from fci.store import Store
from fci.train import TrainConfig

OUTLIER_PIXEL = 48  # r6c0 of the 8x8 digits


def digits_store(root, outlier: float = 0.0, hidden: int = 8) -> Explorer:
    """A digits FPE run written by hand as `run_fpe` writes it (kind "fpe": a dense
    baseline entry and a child entry holding its parent), every network's weights
    from pixel r6c0 scaled to `outlier` when it is non-zero."""
    store = Store(root)
    spec = DatasetSpec.digits(seed=0)
    base = {"kind": "fpe", "data": spec.key(), "hidden": hidden, "seed": 0, "train": TrainConfig(warmup=1, finetune=1).to_dict()}

    def net(seed: int, width: int) -> dict[str, torch.Tensor]:
        m = MaskedMLP(64, [width], 10, seed=seed)
        t = m.tensors()
        if outlier:
            t["W0"][:, OUTLIER_PIXEL] = outlier * torch.sign(t["W0"][:, OUTLIER_PIXEL] + 1e-9)
        return t

    metrics = {"test_accuracy": 0.5, "data": spec.to_dict(), "parent": {"test_accuracy": 0.4}}
    store.save({**base, "condition": "dense", "alpha": 1}, metrics, net(1, hidden))
    child = {**net(2, 2 * hidden), **{f"parent.{k}": v for k, v in net(3, hidden).items()}}
    child["parent_index"] = torch.arange(2 * hidden) // 2
    store.save({**base, "condition": "random", "alpha": 2}, metrics, child)
    return Explorer(root)


def test_row_scale_known_answers():
    ones = [np.ones(999), np.array([100.0])]
    s = row_scale(ones)
    assert s.zmax == pytest.approx(1.0) and s.beyond == 1 and s.hi == 100.0 and s.clipped
    s = row_scale([np.array([-2.0, 1.0, 0.5])])  # no outlier: the whole range, nothing clipped
    assert (s.zmax, s.lo, s.hi, s.beyond) == (2.0, -2.0, 1.0, 0)
    s = row_scale([np.array([0.0, 0.0, np.nan, 3.0])])  # masked (0) and missing values do not count
    assert s.zmax == 3.0 and s.beyond == 0
    assert row_scale([np.zeros((3, 3))]).zmax == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=200))
def test_row_scale_states_what_it_clips(values):
    v = np.asarray(values)
    s = row_scale([v])
    nz = np.abs(v[v != 0])
    assert s.zmax > 0
    if nz.size:
        assert s.zmax <= nz.max() * (1 + 1e-12)
        assert s.beyond == int((nz > s.zmax * (1 + 1e-6)).sum())
        if nz.max() <= OUTLIER_FACTOR * np.percentile(nz, ROBUST_PERCENTILE):
            assert s.beyond == 0 and s.zmax == pytest.approx(nz.max())
        assert (s.lo, s.hi) == (v.min(), v.max())


def test_picture_grid_places_every_pixel_once():
    imgs = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)  # 2 neurons, 2 channels of 2x3
    mosaic, index = picture_grid(imgs, per_row=1)
    assert mosaic.shape == (2 * 2 + 1, 2 * 4 - 1)  # one blank row between neurons, one blank column between channels
    np.testing.assert_array_equal(mosaic[0:2, 0:3], imgs[0, 0])
    np.testing.assert_array_equal(mosaic[0:2, 4:7], imgs[0, 1])
    np.testing.assert_array_equal(mosaic[3:5, 4:7], imgs[1, 1])
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 3]).all()
    assert sorted(index[index >= 0].tolist()) == list(range(imgs.size))
    np.testing.assert_array_equal(mosaic[index >= 0], imgs.ravel()[index[index >= 0]])


def test_digits_neurons_are_drawn_as_8x8_pictures(tmp_path):
    ex = digits_store(tmp_path)
    (info,) = ex.catalogue().runs
    run = ex.run(info.id)
    assert run.image_shape == (1, 8, 8) and run.input_names[OUTLIER_PIXEL] == "r6c0"
    child = run.models["child"]
    fig = figures.model_figures(ex.analysis(info.id, "auto"), None, "weights")["child"]["weights"]
    z = array_of(fig["data"][0]["z"])
    text = np.asarray(fig["data"][0]["text"], dtype=object)
    for r, i in enumerate(child.row_order[:3]):  # each neuron's tile is its 64 input weights as the 8x8 image
        cells = np.argwhere(np.char.startswith(text.astype(str), child.labels[r] + " · "))
        assert len(cells) == 64
        y0, x0 = cells.min(0)
        np.testing.assert_allclose(z[y0:y0 + 8, x0:x0 + 8], child.W1[i].reshape(8, 8), rtol=1e-6)


def test_a_digits_gram_with_an_outlier_still_shows_its_cells(tmp_path):
    """One pixel's weights 200x the rest: its Gram row and column would set a max-based
    range; the robust range keeps >= 5% of cells above a tenth of it and states the true range."""
    ex = digits_store(tmp_path, outlier=20.0)
    (info,) = ex.catalogue().runs
    run = ex.run(info.id)
    ranges = figures.shared_ranges([run])
    for name, figs in figures.model_figures(ex.analysis(info.id, "auto"), None, "weights", 0, ranges).items():
        g = figs["gram"]
        trace = g["data"][0]
        z, zmax = array_of(trace["z"]), trace["zmax"]
        assert zmax < np.abs(z).max() / 10, "the outlier does not set the range"
        assert (np.abs(z) > zmax / 10).mean() >= 0.05, f"{name}: the Gram shows its cells"
        assert "true range" in g["layout"]["title"]["text"] and f"{ranges['gram'].beyond} beyond" in g["layout"]["title"]["text"]
        assert trace["colorbar"]["ticktext"] == [figures.number_text(-zmax), "0", figures.number_text(zmax)]


def test_every_figure_fits_its_column(tmp_path):
    """No figure asks for a fixed width: each fits its column, so its colour bar is beside it."""
    ex = digits_store(tmp_path, hidden=64)
    (info,) = ex.catalogue().runs
    for view in ("weights", "masks"):
        for figs in figures.model_figures(ex.analysis(info.id, "auto"), None, view).values():
            for kind, fig in figs.items():
                assert "width" not in fig["layout"], f"{kind} has a fixed width"
