"""What every command of the suite shares: one-line option errors (exit status 2,
no usage dump, no traceback), the writable-folder check, `mean ± s.e.` text
that says `n=1` instead of printing `nan`, and the regime options.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable, NoReturn

from fci.tasks import TaskConfig


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `prog: error: message (see --help)`,
    with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def check_writable(ap: argparse.ArgumentParser, flag: str, folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and prove it can be written, or exit via `ap.error` naming `flag`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        ap.error(f"{flag} {str(folder)!r} must be a writable folder ({e.strerror or e})")
    return folder


#: config field -> the command-line flag that sets it (python -m fci and the studies).
CONFIG_FLAGS = {
    "n_clauses": "--clauses", "clause_size": "--clause-size", "n_vars": "--vars", "layout": "--layout",
    "negation_prob": "--negation-prob", "outputs": "--outputs", "p": "--p", "n_train": "--train-samples",
    "n_test": "--test-samples", "lr": "--lr", "batch_size": "--batch-size", "warmup": "--warmup",
    "finetune": "--finetune", "weight_decay": "--weight-decay", "optimizer": "--optimizer", "momentum": "--momentum",
}


def flag_error(ap: argparse.ArgumentParser, e: ValueError) -> NoReturn:
    """Exit via `ap.error` with a config's ValueError, prefixed by the flag of the field it names."""
    text = str(e)
    field = text.split(" ", 1)[0].split("=", 1)[0]
    flag = CONFIG_FLAGS.get(field)
    ap.error(f"{flag}: {text}" if flag else text)


def mean_sem_text(mean: float, sem: float, n: int, digits: int = 4, scale: float = 1.0, unit: str = "",
                  sign: bool = False) -> str:
    """`mean ± s.e.`; with one value `mean (n=1)` (no standard error exists), with
    none, or an undefined mean, `n/a (n=N)`."""
    if n < 1 or mean is None or not math.isfinite(mean):
        return f"n/a (n={n})"
    m = f"{scale * mean:{'+' if sign else ''}.{digits}f}{unit}"
    if n < 2 or sem is None or not math.isfinite(sem):
        return f"{m} (n={n})"
    return f"{m} ± {scale * sem:.{digits}f}{unit}"


#: flag -> TaskConfig field, for the task options every Boolean command takes.
TASK_OPTIONS = {"--vars": "n_vars", "--layout": "layout", "--outputs": "outputs", "--p": "p",
                "--negation-prob": "negation_prob", "--train-samples": "n_train"}


#: flag -> TrainConfig field, for the training options.
TRAIN_OPTIONS = {"--optimizer": "optimizer", "--lr": "lr", "--momentum": "momentum", "--weight-decay": "weight_decay",
                 "--batch-size": "batch_size", "--warmup": "warmup", "--finetune": "finetune"}


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def parse_p(value: str) -> float | str:
    """`--p`: a number in [0, 1] (checked by TaskConfig), 'balanced' or 'uniform'."""
    if value in ("balanced", "uniform"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], 'balanced' or 'uniform', got {value!r}") from None


def add_regime_arguments(ap: argparse.ArgumentParser, task_defaults: dict[str, Any] | None = None,
                         train_defaults: Any = None, default_note: str = "", applies_to: str = "") -> None:
    """Add the task and training options. With no defaults given, every option
    defaults to None, meaning "the command's own value" (`default_note` says what
    that is in --help); `regime_overrides` then returns only what was set.
    `applies_to` (e.g. "the Boolean jobs only") goes into both groups' --help."""
    td = task_defaults or {}
    tr = train_defaults
    note = f" (default: {default_note})" if default_note and tr is None else ""

    def d(field: str, source: Any) -> Any:
        if source is None:
            return None
        return source.get(field) if isinstance(source, dict) else getattr(source, field)

    def h(text: str, default: str | None = None) -> str:
        """Help text; with no defaults given, say what None means (else argparse shows the default)."""
        if task_defaults or train_defaults is not None:
            return text
        return f"{text} (default: {default})" if default else f"{text}{note}"

    scope = f"They apply to {applies_to}." if applies_to else None
    t = ap.add_argument_group("task options (SPEC §1)", scope)
    t.add_argument("--vars", type=int, default=d("n_vars", td), help=h("input variables n (None: C*k)", "C*k"))
    t.add_argument("--layout", choices=["disjoint", "shared"], default=d("layout", td) if td else None,
                   help=h("variable layout", "disjoint"))
    t.add_argument("--outputs", choices=["dnf", "clauses"], default=d("outputs", td) if td else None,
                   help=h("one OR output, or one output per clause", "dnf"))
    t.add_argument("--p", type=parse_p, default=d("p", td) if td else None,
                   help=h("planting probability in [0, 1], 'balanced' (OR true half the time) or 'uniform' "
                          "(fair coins, no planting)", "balanced"))
    t.add_argument("--negation-prob", type=float, default=d("negation_prob", td) if td else None,
                   help=h("probability that a literal is negated", "0.5"))
    t.add_argument("--train-samples", type=int, default=d("n_train", td) if td else None,
                   help=h("training samples per task"))
    g = ap.add_argument_group("training options", scope)
    g.add_argument("--optimizer", choices=["adam", "sgd"], default=d("optimizer", tr), help=h("optimiser"))
    g.add_argument("--lr", type=float, default=d("lr", tr), help=h("learning rate"))
    g.add_argument("--momentum", type=float, default=d("momentum", tr), help=h("SGD momentum in [0, 1)", "0"))
    g.add_argument("--weight-decay", type=float, default=d("weight_decay", tr), help=h("L2 penalty", "0"))
    g.add_argument("--batch-size", type=int, default=d("batch_size", tr), help=h("minibatch size"))
    g.add_argument("--warmup", type=int, default=d("warmup", tr), help=h("dense epochs before expansion"))
    g.add_argument("--finetune", type=int, default=d("finetune", tr), help=h("epochs after expansion"))


def regime_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(task fields, train fields) set on the command line (None = not set)."""
    task = {f: getattr(args, _dest(fl)) for fl, f in TASK_OPTIONS.items()}
    train = {f: getattr(args, _dest(fl)) for fl, f in TRAIN_OPTIONS.items()}
    return {k: v for k, v in task.items() if v is not None}, {k: v for k, v in train.items() if v is not None}


def build_train(ap: argparse.ArgumentParser, base: Any, overrides: dict[str, Any]) -> Any:
    """`base` (a TrainConfig) with the overrides, validated; a bad value exits naming its flag."""

    try:
        return dataclasses.replace(base, **overrides)
    except ValueError as e:
        flag_error(ap, e)


def build_task(ap: argparse.ArgumentParser, **fields: Any) -> Any:
    """A TaskConfig from fields, validated; a bad value exits naming its flag."""

    try:
        return TaskConfig(**fields)
    except ValueError as e:
        flag_error(ap, e)


def regime_record(task: Any, train: Any) -> dict[str, Any]:
    """Every regime option's value, keyed by its flag without dashes (summary.json)."""
    t = task if isinstance(task, dict) else task.to_dict()
    r = train if isinstance(train, dict) else {**train.to_dict(), "momentum": train.momentum}
    out = {_dest(fl): t.get(f) for fl, f in TASK_OPTIONS.items()}
    out.update({_dest(fl): r.get(f, 0.0 if f == "momentum" else None) for fl, f in TRAIN_OPTIONS.items()})
    return out


def regime_text(task: Any, train: Any) -> str:
    """One line for figure captions and printed tables: the task and training regime."""
    rec = regime_record(task, train)
    p = rec["p"]
    p_s = f"p={p:.3g}" if isinstance(p, float) else f"p={p}"
    n = "n=C·k" if rec["vars"] is None else f"n={rec['vars']}"
    opt = rec["optimizer"]
    opt_s = f"{opt} lr={rec['lr']:g}" + (f" momentum={rec['momentum']:g}" if rec["momentum"] else "")
    wd = f" wd={rec['weight_decay']:g}" if rec["weight_decay"] else ""
    return (f"{rec['layout']} {rec['outputs']} outputs, {p_s}, negation {rec['negation_prob']:g}, {n}, "
            f"{rec['train_samples']} train samples · {opt_s}{wd}, batch {rec['batch_size']}, "
            f"{rec['warmup']}+{rec['finetune']} epochs")


def parse_splits(ap: argparse.ArgumentParser, text: str, flag: str = "--splits") -> list[str]:
    """Comma-separated distinct registered split names (fci.fpe.SPLITS), or exit naming the flag."""
    from fci.fpe.splits import SPLITS

    splits = [s.strip() for s in str(text).split(",") if s.strip()]
    if not splits or any(s not in SPLITS for s in splits) or len(set(splits)) != len(splits):
        ap.error(f"{flag} takes distinct names from {','.join(SPLITS)}, got {text!r}")
    return splits


_KIND_WORDS = {int: "integers", float: "numbers", str: "names"}


def comma_list(ap: argparse.ArgumentParser, flag: str, text, kind=int, low=None, strict=False, choices=None,
               *, ordered: bool = False) -> tuple:
    """Parse a list-valued option, "a,b,c", into a tuple of distinct values; any
    bad value exits via `ap.error` (status 2) with a message naming `flag` and
    the text given.

    Items may carry whitespace around them; blank items are skipped ("2,3," is
    (2, 3)); an already-parsed list or tuple is checked and normalised the same
    way. `kind` is int, float (finite numbers) or str. Errors: an item that does
    not parse as `kind`, an empty list, a value given twice, a value below `low`
    (at or below it with `strict`), a value not in `choices`.

    Order: numbers come back sorted; names in the order of `choices` when given,
    else in the order given. `ordered=True` is for vectors rather than sets
    (e.g. per-layer widths): the given order is kept and repeats are allowed.
    """
    what = _KIND_WORDS.get(kind)
    if what is None:
        raise TypeError(f"comma_list: kind must be int, float or str, got {kind!r}")
    if isinstance(text, (list, tuple)):
        items, shown = [str(v) for v in text], ",".join(map(str, text))
    else:
        items, shown = str(text).split(","), str(text)
    items = [v.strip() for v in items if v.strip()]
    try:
        vals = [kind(v) for v in items]
    except ValueError:
        vals = None
    if vals is None or (kind is float and not all(math.isfinite(v) for v in vals)):
        ap.error(f"{flag} must be comma-separated {what}, got {shown!r}")
    if not vals:
        ap.error(f"{flag} is empty, got {shown!r}")
    if not ordered:
        twice = sorted({v for v in vals if vals.count(v) > 1}, key=vals.index)
        if twice:
            ap.error(f"{flag} lists {', '.join(map(str, twice))} more than once, got {shown!r}")
    if low is not None:
        if any(v <= low if strict else v < low for v in vals):
            ap.error(f"{flag} values must be {'>' if strict else '>='} {low:g}, got {shown!r}")
    if choices is not None:
        choices = tuple(choices)
        unknown = [v for v in vals if v not in choices]
        if unknown:
            ap.error(f"{flag} takes values from {', '.join(map(str, choices))}; unknown {', '.join(map(str, unknown))}, "
                     f"got {shown!r}")
    if ordered:
        return tuple(vals)
    if kind is not str:
        return tuple(sorted(vals))
    if choices is not None:
        return tuple(c for c in choices if c in vals)
    return tuple(vals)


def check_alphas(ap: argparse.ArgumentParser, flag: str, alphas: Iterable[int], n_in: int, what: str) -> None:
    """Refuse an expansion factor above the inputs a first-layer neuron has (`n_in`):
    its children would be inert and the metrics undefined (NaN)."""
    big = [a for a in alphas if a > n_in]
    if big:
        ap.error(f"{flag} values must be <= {n_in}, the inputs a first-layer neuron of {what} deals to its alpha "
                 f"children (more children than inputs are always empty), got {', '.join(map(str, big))}")
