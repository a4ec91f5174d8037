"""Command-line studies over `fci`: each module is one study with the same
contract (`python -m analyses.<name> [--quick] [--out DIR] [--device ...]
[--trials N] [--seed S] [--shard I/N] [--data DIR]`), writing results.csv,
summary.json and self-contained plotly figures. See analyses/README.md."""

STUDIES = ("capacity_vs_alpha", "superposition_sweep", "interference_regression", "code_gallery", "decoding")

__all__ = ["STUDIES"]
