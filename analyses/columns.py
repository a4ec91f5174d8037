"""The results.csv vocabulary: every column any study may write, with its meaning and unit.

One quantity has one name in every study (`test_accuracy`, never `accuracy`;
`train_loss_final`, never `final_train_loss`; `feature_capacity`, never
`capacity`). `COLUMNS` is the registry; `PATTERNS` covers the per-layer families
(`connectivity_l0`, `overlap_fc1`, ...). analyses/README.md's "results.csv
columns" table is generated from both (`readme_table`) and a test checks the two
agree, and that every study's results.csv uses registered names only.

`canonical_row` renames the columns of store entries written before this
vocabulary (e.g. a job study's stored rows with `accuracy`), so an old store
still reads under the new names.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

__all__ = ["COLUMNS", "PATTERNS", "CORE", "MODEL_CORE", "LEGACY", "describe", "unknown", "canonical_row", "readme_table"]

# name -> "meaning (unit)". Grouped as in the README table: identity, measurements, then per study.
COLUMNS: dict[str, str] = {
    # --- what the row is
    "condition": "dense, restart (the α=1 restart control), a split name (clause, random, gram, ...) or a study's own condition (sparse, fpe, clause_nm, random_dynamic, ...)",
    "alpha": "expansion factor α: children per parent neuron (1 for dense and restart; empty for a wide_sparse dense model)",
    "split": "the FPE split of a child ('none' for dense)",
    "trial": "trial index t; the trial uses seed S+t (S = --seed)",
    "seed": "the trial's seed (task, data, init and split seeds are derived from it)",
    "schedule": "the FPE schedule's version that trained the job's trials (fci.train.SCHEDULE_VERSION)",
    "record": "what the row describes where a study writes several kinds: model, step (a pruning step) or curve (a point of a test-accuracy curve)",
    "store_key": "the model's results-store key (reopen it with `fci.store.Store.load`)",
    "dataset": "the data: boolean, digits, embeddings-<file>-<sha>, images-..., or a study's dataset label",
    "dataset_name": "the data set's own name (`fci.data.Dataset.name`)",
    "hidden": "hidden width H of the dense parent (neurons of the first hidden layer)",
    "hidden_label": "hidden widths of a deep model, 'x'-joined (e.g. 64x64)",
    "width": "hidden units of this model's first hidden layer (H·α for an FPE child)",
    "neurons": "hidden units of the model after expansion, summed over layers (real_data: H·α)",
    "n_clauses": "C, clauses of the Boolean DNF task",
    "clause_size": "k, literals per clause",
    "n_vars": "n, input variables of the Boolean task",
    "depth": "hidden layers of the model",
    "layers": "which hidden layers FPE expanded: none (dense), all, first",
    "first_layer": "whether the trial also trained first-layer-only children (deep_fpe)",
    # --- what every trained model measures (analyses.rows.model_columns)
    "test_accuracy": "accuracy on the held-out test set (fraction, 0..1; multi-output: per-output mean)",
    "train_accuracy": "accuracy on the training set (fraction, 0..1)",
    "test_loss": "mean loss on the test set (BCE for Boolean tasks, cross-entropy for classes; nats)",
    "train_loss_final": "mean train loss over the last epoch (nats)",
    "train_loss_late_drop": "absolute fall of the mean train loss over the last 10% of the model's epochs (fci.metrics.late_drop; nats)",
    "train_loss_late_drop_rel": "the same fall relative to the earlier window's mean loss (fraction)",
    "converged": "the loss curve is flat: late drop < 0.005 absolute or < 5% relative (fci.metrics.is_flat; bool)",
    "nnz": "non-zero parameters, weights + biases (count)",
    "nnz_weights": "non-zero weights (count)",
    "nnz_biases": "non-zero biases (count)",
    "acc_per_param": "test_accuracy / nnz (per parameter)",
    "dead_units": "first-hidden-layer units (CNN: filters) whose pre-activation is <= 0 on every test input (count)",
    "backend": "training backend that produced the model (kernel, torch, reference; from the model's provenance)",
    "base_rate": "accuracy of always predicting the test set's majority (per output, averaged over outputs; fraction): a model at it learned nothing",
    "accuracy_resolution": "the smallest step a test accuracy can take on this test set, 1 / (samples x outputs) (fraction)",
    # --- interference and codes (SPEC §4, §5), on effective first-layer weights
    "feature_capacity": "mean feature capacity over clause variables (CNN, structured: over first-layer inputs) (0..1)",
    "feature_capacity_sum": "sum of the feature capacities over first-layer inputs (<= filters)",
    "cosine_interference": "mean |cos| between non-zero first-layer neuron (filter) rows (0..1; empty below 2 rows)",
    "cosine_signed": "mean signed cos between non-zero first-layer rows (-1..1)",
    "active_neurons": "first-layer units with at least one non-zero incoming weight (count)",
    "active_filters": "first-layer filters with at least one non-zero weight (count)",
    "clauses_with_channel": "clauses whose feature channel (SPEC §5, relative threshold 0.1) is non-empty (count)",
    # --- FPE bookkeeping
    "parent_nnz": "non-zero parameters of the dense parent at expansion (count; every child has exactly this)",
    "parent_test_accuracy": "test accuracy of the dense parent at expansion (fraction)",
    "dense_test_accuracy": "test accuracy of the trial's paired dense baseline (fraction)",
    "rel_improvement": "(test_accuracy - dense baseline's) / dense baseline's, same trial (fraction)",
    "pruned": "weights the budget pruning removed from a CNN child (count)",
    "channels_after": "conv channels per layer after expansion, 'x'-joined",
    # --- capacity_vs_alpha: clause collisions
    "whole_frac": "clauses whose k variables the split sends to one child (fraction)",
    "pair_frac": "clause pairs whose 2k variables go to one child (fraction)",
    "expected_whole": "exact expectation of whole_frac under the split (fraction)",
    "expected_pair": "exact expectation of pair_frac under the split (fraction)",
    "theory_whole": "SPEC's independent-assignment formula α^-(k-1) (fraction)",
    "theory_pair": "SPEC's independent-assignment formula α^-(2k-1) (fraction)",
    "whole_after_prune_frac": "clauses some child's pruned mask still holds whole (fraction)",
    "pruned_clause_frac": "clause weights the budget pruning removed (fraction)",
    "n_clause_checks": "(neuron, clause) pairs checked for whole_frac (count)",
    "n_pair_checks": "(neuron, clause pair) pairs checked for pair_frac (count)",
    "mask_mismatch": "split entries the child's mask contradicts (count; 0 expected)",
    # --- decoding
    "decode_f1": "static channel reading (decode): clause-recovery F1 against the true clauses (0..1)",
    "decode_precision": "static channel reading: clause-recovery precision (0..1)",
    "decode_recall": "static channel reading: clause-recovery recall (0..1)",
    "decode_exact": "static channel reading: true clauses recovered exactly (count)",
    "decode_exact_f1": "static channel reading: clause-recovery F1 counting exact matches only (0..1)",
    "n_decoded": "static channel reading: clauses decoded (count)",
    "circuit_agreement": "static channel reading's circuit agrees with the network's predictions on the test inputs (fraction)",
    "constant_agreement": "the best constant output (always 1 or always 0, per output) agrees with the network on the test inputs (fraction)",
    "circuit_accuracy": "static channel reading's circuit's accuracy on the test labels (fraction)",
    "static_seconds": "time of the static channel reading (s)",
    "certified_agreement": "certified static reading (decode(method='certified')) agrees with the network on the test inputs (fraction)",
    "certified_coverage": "certified static reading: mean over outputs of the share of each output's region its certified terms cover (exact, or a sound lower bound; fraction)",
    "certified_coverage_exact": "certified static reading: outputs whose coverage is exact rather than a lower bound (fraction of outputs)",
    "certified_proved": "certified static reading: outputs proved on every input (coverage 1, exact; fraction of outputs)",
    "certified_terms": "certified static reading: certified terms (count)",
    "certified_gap": "certified_agreement - true_formula_agreement (fraction; may be > 0)",
    "certified_seconds": "time of the certified static reading (s)",
    "true_formula_agreement": "the reference: agreement of the task's true formula with the network on the test inputs (fraction; for one output, the test accuracy; a reading may exceed it)",
    "function_f1": "decode_function on uniform inputs: clause-recovery F1 (0..1)",
    "function_exact_f1": "decode_function on uniform inputs: clause-recovery F1 counting exact matches only (0..1)",
    "function_agreement": "decode_function on uniform inputs: agrees with the network on the test inputs (fraction)",
    "function_own_agreement": "decode_function on uniform inputs: agrees with the network on its own inputs (the distribution it read; fraction)",
    "function_max_literals": "decode_function on uniform inputs: the longest term it kept (count)",
    "function_uncovered": "decode_function on uniform inputs: mean share of the network's 1s (DNF) or 0s (CNF) its terms leave unexplained (fraction)",
    "function_terms": "decode_function on uniform inputs: terms found (count)",
    "function_warnings": "decode_function on uniform inputs: warnings it gave (count)",
    "function_gap": "decode_function on uniform inputs: function_agreement - true_formula_agreement (fraction; may be > 0)",
    "function_seconds": "decode_function on uniform inputs: its time (s)",
    "function_distribution": "decode_function on uniform inputs: the input distribution it read (text)",
    "function_form": "decode_function on uniform inputs: the normal form it chose, dnf or cnf (text)",
    "inputs_function_f1": "decode_function on the task's unlabeled training inputs: clause-recovery F1 (0..1)",
    "inputs_function_exact_f1": "decode_function on the task's unlabeled training inputs: clause-recovery F1 counting exact matches only (0..1)",
    "inputs_function_agreement": "decode_function on the task's unlabeled training inputs: agrees with the network on the test inputs (fraction)",
    "inputs_function_own_agreement": "decode_function on the task's unlabeled training inputs: agrees with the network on its own inputs (the distribution it read; fraction)",
    "inputs_function_max_literals": "decode_function on the task's unlabeled training inputs: the longest term it kept (count)",
    "inputs_function_uncovered": "decode_function on the task's unlabeled training inputs: mean share of the network's 1s (DNF) or 0s (CNF) its terms leave unexplained (fraction)",
    "inputs_function_terms": "decode_function on the task's unlabeled training inputs: terms found (count)",
    "inputs_function_warnings": "decode_function on the task's unlabeled training inputs: warnings it gave (count)",
    "inputs_function_gap": "decode_function on the task's unlabeled training inputs: inputs_function_agreement - true_formula_agreement (fraction; may be > 0)",
    "inputs_function_seconds": "decode_function on the task's unlabeled training inputs: its time (s)",
    "inputs_function_distribution": "decode_function on the task's unlabeled training inputs: the input distribution it read (text)",
    "inputs_function_form": "decode_function on the task's unlabeled training inputs: the normal form it chose, dnf or cnf (text)",
    # --- computational_capacity
    "form": "Boolean task form: dnf (an OR of ANDs; per-clause outputs: each an AND) or cnf (an AND of ORs; each output an OR)",
    "capacity_count": "features (per-clause outputs) the model computes with test error <= eps (fci.metrics.computational_capacity; count)",
    "capacity_share": "capacity_count / features asked (fraction)",
    "capacity_trivial": "features whose labels are so unbalanced that a constant output passes eps (count; 0 expected)",
    "channels_distinct": "clauses whose channel (SPEC §5, relative threshold 0.1, in the task's form) is non-empty and inside no other clause's (count)",
    "channels_private": "clauses whose channel is non-empty and shares no unit with another clause's: a code with overlap 0 (count)",
    "channel_size_median": "median channel size over the clauses with a channel (units; empty when none has one)",
    "channel_overlap_max": "the most units two clauses' channels share (units)",
    "computed_distinct": "features computed (capacity_count) whose channel is distinct (count)",
    "computed_private": "features computed (capacity_count) whose channel is private (count)",
    # --- regimes
    "outputs": "task output mode: dnf (one OR output) or clauses (one output per clause)",
    "optimizer": "adam or sgd",
    "lr": "learning rate",
    "momentum": "SGD momentum (0: plain SGD, which keeps no optimiser state; 0 for Adam)",
    "warmup": "dense warm-up epochs before expansion",
    "finetune": "fine-tuning epochs after expansion",
    "load": "clauses per hidden neuron of the dense parent, C / H",
    # --- effective_density
    "multiplier": "width multiplier of the deep dense model (x the base widths)",
    "epochs": "training epochs",
    "prune_fraction": "fraction of each layer's remaining weights pruned per step",
    "overlap_fraction": "fraction of smallest weights compared between init and trained model",
    "n_weights": "weights of the model, zero or not (count)",
    "n_steps": "pruning steps until no weight is left (count)",
    "step": "pruning step (0 = the trained model)",
    "density": "kept weights / prunable weights at this pruning step (fraction)",
    "kept_weights": "weights kept at this pruning step (count)",
    "test_exact_match": "test inputs with every output right (fraction)",
    # --- wide_sparse
    "base_width": "the budget's base width H0 (the dense model whose nnz is the budget)",
    "budget": "the non-zero parameter budget (count)",
    "rescale_init": "static sparse init rescaled by 1/sqrt(connectivity) (bool)",
    "possible_weights": "weights of a dense model of this width (count)",
    "connectivity": "non-zero weights / possible weights (fraction)",
    "mean_fan_in": "mean non-zero inputs per first-layer unit (count)",
    "no_input_units": "first-layer units without any non-zero input weight (count)",
    "clauses_covered": "clauses some first-layer unit sees whole (fraction)",
    "units_per_clause": "mean first-layer units that see a clause whole (count)",
    # --- deep_fpe
    "units_without_inputs": "hidden units with no non-zero incoming weight: constant relu(b) (count)",
    "inert_units": "units_without_inputs whose bias is 0 too (count)",
    "units_without_outputs": "hidden units no later layer reads (count)",
    "dead_end_nnz": "non-zero incoming weights and biases of units_without_outputs (count)",
    "loss_start_epoch": "absolute epoch at which the model's loss curve starts (children: warmup)",
    "loss_epochs": "epochs in the model's loss curve",
    "loss_curve": "train loss as window means, ';'-joined (nats)",
    # --- structured_sparsity
    "nm": "the N:M pattern, e.g. 2:4",
    "target_nnz": "the common non-zero target of every condition of the job (count)",
    "natural_nnz": "nnz of the condition before pruning to the target (count)",
    "pruned_to_target": "weights pruned to reach target_nnz (count)",
    "nm_removed": "weights the N:M projection removed (count)",
    "nm_violations": "first-layer groups that break the N:M pattern (count; 0 expected for _nm conditions)",
    "sibling_overlap": "mean over parents of inputs shared by two or more children / inputs used by any (fraction)",
    "rounds": "prune-and-regrow rounds (count)",
    "swapped": "first-layer weights moved by prune-and-regrow (count)",
    "mask_changed": "first-layer mask entries that are new since fine-tuning began (fraction)",
    "epoch": "absolute epoch of a curve point",
    # --- cnn_fpe
    "conv_layers": "convolutional layers",
    "filters": "filters per conv layer of the dense parent",
    "kernel": "conv kernel size",
    "pool": "2x2 max pooling after each conv layer (bool)",
    "head": "readout: flatten or gap (global average pooling)",
}

#: Column families with one member per layer: regex -> meaning.
PATTERNS: dict[str, str] = {
    r"connectivity_l\d+": "connectivity_l<l>: non-zero / possible weights of layer l (fraction)",
    r"overlap_(fc\d+|proj|all)": "overlap_<layer>: smallest-weight overlap of init and trained model in that layer (fraction)",
    r"chance_(fc\d+|proj|all)": "chance_<layer>: the overlap expected by chance (fraction)",
    r"n_(fc\d+|proj)": "n_<layer>: weights compared in that layer (count)",
}

#: Columns every study's results.csv has (every trained model's row).
MODEL_CORE = ("trial", "seed", "test_accuracy", "train_accuracy", "test_loss", "train_loss_final", "train_loss_late_drop",
              "converged", "nnz", "nnz_weights", "nnz_biases", "acc_per_param", "dead_units", "backend")
#: ... and every study that compares conditions (all but effective_density, which trains dense models only).
CORE = ("condition", "alpha") + MODEL_CORE

#: Old name -> registered name, for store entries written before this vocabulary.
LEGACY: dict[str, str] = {
    "accuracy": "test_accuracy",
    "final_train_loss": "train_loss_final",
    "train_loss_end": "train_loss_final",
    "capacity": "feature_capacity",
    "capacity_mean": "feature_capacity",
    "capacity_sum": "feature_capacity_sum",
    "cos_interference": "cosine_interference",
    "parent_accuracy": "parent_test_accuracy",
    "fpe_parent_accuracy": "parent_test_accuracy",
    "fpe_baseline_accuracy": "dense_test_accuracy",
    "late_drop_abs": "train_loss_late_drop",
    "late_drop": "train_loss_late_drop_rel",
    "ceiling": "true_formula_agreement",
    "n_terms": "function_terms",
    "row": "record",
    "n_params": "nnz",
    "loss": "test_loss",
    "exact_match": "test_exact_match",
}

_PATTERNS = [re.compile(f"^(?:{p})$") for p in PATTERNS]


def describe(name: str) -> str | None:
    """The registered meaning of a column, or None if it is not registered."""
    if name in COLUMNS:
        return COLUMNS[name]
    for rx, text in zip(_PATTERNS, PATTERNS.values()):
        if rx.match(name):
            return text
    return None


def unknown(columns: Iterable[str]) -> list[str]:
    """The columns that are not in the registry."""
    return [c for c in columns if describe(c) is None]


def canonical_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored result row under the registered names: legacy names renamed
    (where the new name is not there already). A legacy real_data row's
    `train_loss_late_drop` (marked by `train_loss_end`) used another definition
    (one-epoch relative fall) and is dropped rather than shown under the new one. A
    decoding row's `ceiling_gap` (reference - reading) becomes `function_gap` with its
    sign turned (reading - reference)."""
    out = dict(row)
    if "train_loss_end" in out:
        out.pop("train_loss_late_drop", None)
    for old, new in LEGACY.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    if "ceiling_gap" in out and "function_gap" not in out:  # reference - reading, now reading - reference
        gap = out.pop("ceiling_gap")
        out["function_gap"] = -gap if isinstance(gap, (int, float)) else gap
    return out


def _cell(text: str) -> str:
    """Text for a markdown table cell: `|` escaped, and `<` before a letter written as an
    entity, so that `<file>` shows instead of being read as an HTML tag."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text.replace("|", "\\|"))


def readme_table() -> str:
    """The markdown table of analyses/README.md's "results.csv columns" section."""
    lines = ["| column | meaning (unit) |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in COLUMNS.items()]
    lines += [f"| `{text.split(':')[0]}` | {_cell(text.split(':', 1)[1].strip())} |" for text in PATTERNS.values()]
    return "\n".join(lines)


README_START, README_END = "<!-- columns:start -->", "<!-- columns:end -->"


def write_readme(path: str = "analyses/README.md") -> bool:
    """Regenerate the README's column table between its markers; True if it changed."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text()
    a, b = text.index(README_START) + len(README_START), text.index(README_END)
    new = text[:a] + "\n" + readme_table() + "\n" + text[b:]
    if new != text:
        p.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m analyses.columns: rewrite analyses/README.md's table from COLUMNS
    write_readme()
