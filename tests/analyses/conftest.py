"""Fixtures shared by the analyses tests."""

from __future__ import annotations

import importlib

import pytest

from analyses import study_names


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Every study run once at the tiny level into one shared store: returns the data
    root, whose results/<study>/tiny/ folders hold each run's outputs (results.csv,
    stats.csv, summary.json, figures)."""
    data = tmp_path_factory.mktemp("tiny-runs") / "data"
    for name in study_names():
        main = importlib.import_module(f"analyses.{name}").main
        assert main(["--tiny", "--device", "cpu", "--data", str(data)]) == 0
    return data
