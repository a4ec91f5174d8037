"""Command-line studies over `fci`: each module is one study with the same
contract (`python -m analyses.<name> [--quick] [--out DIR] [--device ...]
[--trials N] [--seed S] [--shard I/N] [--data DIR]`), writing results.csv,
summary.json and self-contained plotly figures. See analyses/README.md.

Every study runs through one runner, `analyses._runner.run`; a study is a
`Study` (a sweep of Boolean FPE trials, `analyses._common`), a `JobStudy`
(other units of work, `analyses._jobs`) or, for the regime map, its own kind.
"""

#: Studies of Boolean FPE trials (`analyses._common.Study`).
STUDIES = ("capacity_vs_alpha", "superposition_sweep", "interference_regression", "code_gallery", "decoding")

#: Studies whose unit of work is another kind of job (`analyses._jobs.JobStudy`).
JOB_STUDIES = ("effective_density", "wide_sparse", "real_data", "deep_fpe", "structured_sparsity", "cnn_fpe")

#: The regime map: a grid of Boolean FPE trials with a training schedule per cell.
MAP_STUDIES = ("regimes",)

ALL_STUDIES = STUDIES + JOB_STUDIES + MAP_STUDIES

__all__ = ["STUDIES", "JOB_STUDIES", "MAP_STUDIES", "ALL_STUDIES"]
