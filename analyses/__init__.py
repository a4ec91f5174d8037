"""Command-line studies over `fci`: each module is one study with the same
contract (`python -m analyses.<name> [--quick] [--out DIR] [--device ...]
[--trials N] [--seed S] [--shard I/N] [--data DIR]`), writing results.csv,
summary.json and self-contained plotly figures. See analyses/README.md."""

#: Studies of Boolean FPE trials (`analyses._common.run_study`).
STUDIES = ("capacity_vs_alpha", "superposition_sweep", "interference_regression", "code_gallery", "decoding")

#: Studies whose unit of work is another kind of job (`analyses._jobs.run_job_study`).
JOB_STUDIES = ("effective_density", "wide_sparse", "real_data", "deep_fpe", "structured_sparsity", "cnn_fpe")

ALL_STUDIES = STUDIES + JOB_STUDIES

__all__ = ["STUDIES", "JOB_STUDIES", "ALL_STUDIES"]
