"""Every study's figures are honest: nothing hidden by a log axis, readable log
ticks, and captions that promise only what is drawn."""

from __future__ import annotations

import importlib

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from plotly.subplots import make_subplots

from analyses import studies
from analyses.style import FLOOR_NAME, add_caption, honest, log_ticks, star_trace

CAPTION = "study · level=tiny · error bars ±1 s.e.m.; * p<0.05 (paired t-test vs dense)"


def _log_values(fig: go.Figure) -> list[tuple[str, float]]:
    """(trace name, value) of every value <= 0 a trace places on a log axis."""
    lay = fig.layout.to_plotly_json()
    bad = []
    for t in fig.data:
        for letter in "xy":
            ref = (t.xaxis if letter == "x" else t.yaxis) or letter
            if lay.get(f"{letter}axis{ref[1:]}", {}).get("type") != "log":
                continue
            raw = t.x if letter == "x" else t.y
            if raw is None:
                continue
            try:
                v = np.asarray([np.nan if u is None else u for u in raw], dtype=float)
            except (TypeError, ValueError):
                continue
            bad += [(t.name, float(u)) for u in v[np.isfinite(v) & (v <= 0)]]
    return bad


def test_zeros_on_a_log_axis_are_drawn_at_its_floor_and_said():
    fig = make_subplots(rows=1, cols=2)
    fig.add_trace(go.Scatter(x=[2, 4, 8], y=[0.1, 0.0, 0.01], name="measured", line={"color": "#123456"}), row=1, col=2)
    fig.add_trace(go.Scatter(x=[2, 4, 8], y=[0.3, 0.2, 0.1], name="other"), row=1, col=1)
    fig.update_yaxes(type="log")
    honest(fig)
    assert _log_values(fig) == []
    floor = [t for t in fig.data if t.name == FLOOR_NAME]
    assert len(floor) == 1 and list(floor[0].x) == [4] and floor[0].yaxis == "y2"
    assert 0 < floor[0].y[0] < 0.01, "below every positive value"
    assert floor[0].marker.color == "#123456"
    assert list(fig.data[0].y) == [0.1, None, 0.01], "the measured trace keeps its other points"
    assert any("1 value ≤ 0" in a.text for a in fig.layout.annotations)
    assert "≤0 ▽" in fig.layout.yaxis2.ticktext


def test_log_ticks_are_written_in_full():
    vals, text = log_ticks(1e-4, 1.0)
    assert vals == [1e-4, 1e-3, 1e-2, 0.1, 1.0] and text == ["0.0001", "0.001", "0.01", "0.1", "1"]
    vals, text = log_ticks(0.02, 0.9)
    assert vals == [0.02, 0.05, 0.1, 0.2, 0.5] and all(t[0] in "0" for t in text)
    assert len(log_ticks(0.55, 0.69)[0]) >= 2


@pytest.mark.parametrize("errors, stars", [(False, False), (True, False), (True, True)])
def test_the_caption_promises_only_what_is_drawn(errors, stars):
    fig = go.Figure(go.Scatter(x=[1, 2], y=[0.5, 0.6], error_y={"type": "data", "array": [0.1, 0.1]} if errors else None))
    if stars:
        fig.add_trace(star_trace([1, 2], [0.5, 0.6], [0.1, 0.1], [0.01, 0.5], "#000"))
    add_caption(fig, CAPTION)
    text = honest(fig).layout.annotations[-1].text
    assert ("s.e.m." in text) == errors and ("p<0.05" in text) == stars
    assert text.startswith("study · level=tiny")


def test_stars_sit_above_their_error_bars():
    t = star_trace([1, 2, 3], [0.5, 0.6, 0.7], [0.1, 0.2, np.nan], [0.01, 0.5, 0.001], "#000")
    assert list(t.x) == [1, 3] and list(t.y) == pytest.approx([0.6, 0.7]) and list(t.text) == ["*", "*"]


def test_a_constant_axis_gets_one_tick():
    fig = make_subplots(rows=2, cols=1)
    fig.add_trace(go.Scatter(x=[1, 2, 4], y=[104, 104, 104], error_y={"type": "data", "array": [0, 0, 0]}), row=1, col=1)
    fig.add_trace(go.Scatter(x=[1, 2, 4], y=[1, 2, 3]), row=2, col=1)
    honest(fig)
    assert list(fig.layout.yaxis.tickvals) == [104] and fig.layout.yaxis2.tickvals is None


@pytest.mark.slow
def test_no_study_draws_a_value_a_log_axis_cannot_place(tmp_path):
    """Every registered study's --tiny run: every written figure places no value <= 0
    on a log axis (a zero is drawn at the floor instead)."""
    for name in studies().names():
        importlib.import_module(f"analyses.{name}").main(
            ["--tiny", "--device", "cpu", "--out", str(tmp_path / name), "--data", str(tmp_path / "data")])
        written = sorted((tmp_path / name).glob("*.plotly.json"))
        assert written, f"{name} wrote no figure"
        for path in written:
            fig = pio.from_json(path.read_text())
            assert _log_values(fig) == [], f"{name}/{path.name} places values <= 0 on a log axis"
    # capacity_vs_alpha's measured and expected collision fractions: each 0 is drawn at the floor
    import pandas as pd

    from analyses.capacity_vs_alpha import collision_table

    tab = collision_table(pd.read_csv(tmp_path / "capacity_vs_alpha" / "results.csv"))
    zeros = int(sum((tab[f"{m}_mean"] == 0).sum() for m in ("whole_frac", "pair_frac", "expected_whole", "expected_pair")))
    fig = pio.from_json((tmp_path / "capacity_vs_alpha" / "collisions.plotly.json").read_text())
    assert sum(len(t.x) for t in fig.data if t.name == FLOOR_NAME) == zeros
