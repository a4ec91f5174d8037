"""What every command of the suite shares: one-line option errors (exit status 2,
no usage dump, no traceback), the writable-folder check, `mean ± s.e.` text
that says `n=1` instead of printing `nan`, and the argparse groups built from the
config dataclasses' options (`fci.options`): `add_config_arguments`, and the task
and training options every Boolean command takes (`add_regime_arguments`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn, Sequence

from fci.options import ConfigOption, config_options, flag_of
from fci.tasks import TaskConfig
from fci.train.config import TrainConfig

log = logging.getLogger(__name__)


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


#: Options that do not change what a run computes (not in its folder name): where it
#: writes, which slice of it this process trains, where it trains (a Dask cluster) and
#: the device (a run computes the same on any device, to float rounding; summary.json
#: records which one ran it).
_NOT_IN_NAME = frozenset({"quick", "tiny", "out", "data", "shard", "yes", "device", "dask"})


def run_name(ap: argparse.ArgumentParser, args: argparse.Namespace, level: str) -> str:
    """The name of a run's output folder: `default` for the default run, else the level
    (`quick`) and every option set off its default (`quick-seed=3-lr=0.1`); a name
    longer than 80 characters ends in a digest of the options instead. Two runs with
    different options never share a folder; rerunning a command replaces only its own."""
    parts = ["default" if level == "full" else level]
    changed = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_IN_NAME and v != ap.get_default(k)}
    parts += [f"{k.replace('_', '-')}={v}" for k, v in changed.items()]
    name = "-".join(parts)
    name = "".join(c if c.isalnum() or c in "-=.,_+" else "_" for c in name)
    if len(name) > 80:
        digest = hashlib.sha256(json.dumps({k: str(v) for k, v in changed.items()}, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{parts[0]}-{digest}"
    return name


def check_data(ap: argparse.ArgumentParser, data: str) -> Path:
    """--data names a folder (created when missing); empty or a file is refused naming --data."""
    if not str(data).strip():
        ap.error("--data must name a folder (the results store root), got ''")
    path = Path(data)
    if path.exists() and not path.is_dir():
        ap.error(f"--data {str(data)!r} is a file; it must be a folder (the results store root)")
    return path



#: The training throughput the plan check assumes, in FLOP/s per device type: low on
#: purpose (fci's CPU kernel reaches several times this on two cores), so a plan the
#: check calls long is long.
ASSUMED_FLOPS = {"cpu": 1e10, "cuda": 1e12}
#: A plan longer than this (seconds, at the assumed throughput) needs --yes.
LONG_PLAN_S = 24 * 3600
#: A plan longer than this (seconds) is announced before it starts.
LONG_NOTE_S = 600
#: More trials per configuration than this need --yes (checked before any plan is built).
MANY_TRIALS = 10_000


def available_memory() -> int:
    """Bytes of host memory available now (MemAvailable), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f if ":" in ln}
        return info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        return 0


def _free_disk(path: Path) -> int:
    p = path.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0


def check_plan(ap: argparse.ArgumentParser, cost: Any, device_type: str, data: Path, yes: bool) -> None:
    """Refuse, in one line naming --yes, a plan (`fci.train.PlanCost`) that would take days
    at the assumed throughput, need more memory than the machine has for one trial,
    or more disk than is free under `data`."""
    if yes:
        return
    rate = ASSUMED_FLOPS.get(device_type, ASSUMED_FLOPS["cpu"])
    problems = []
    seconds = cost.seconds(rate)
    if seconds > LONG_PLAN_S:
        problems.append(f"about {seconds / 86400:,.0f} days of training at an assumed {rate / 1e9:g} GFLOP/s")
    mem = available_memory() if device_type == "cpu" else 0
    if mem and cost.peak_bytes > mem:
        problems.append(f"{cost.peak_bytes / 2**30:,.1f} GiB for one trial, more than the {mem / 2**30:.1f} GiB available")
    disk = _free_disk(data)
    if disk and cost.store_bytes > disk:
        problems.append(f"{cost.store_bytes / 2**30:,.1f} GiB of models, more than the {disk / 2**30:.1f} GiB free under {data}")
    if problems:
        ap.error(f"this run plans {cost.trials:,} trials ({cost.models:,} models): {'; '.join(problems)}; "
                 "rerun with --yes to start it anyway")
    if seconds > LONG_NOTE_S:
        log.warning("this run plans %s trials (%s models): about %.1f hours of training at an assumed %g GFLOP/s",
                    f"{cost.trials:,}", f"{cost.models:,}", seconds / 3600, rate / 1e9)


DASK_HELP = ("train on a Dask cluster: local:N starts N worker processes here; otherwise the address of a running "
             "scheduler (tcp://host:8786, e.g. one started by dask-jobqueue or dask-kubernetes) or its scheduler file (.json). "
             "This process plans the work and writes every result; the workers need no shared filesystem. "
             "Needs the cluster extra (pip install \"fci[cluster]\")")


def check_dask(ap: argparse.ArgumentParser, text: str | None) -> Any:
    """The parsed `--dask` value (`fci.train.executors.DaskAddress`), or None when not
    given; a malformed address, or `distributed` not installed, exits naming --dask."""
    if text is None:
        return None
    from fci.train.executors import ClusterError, parse_dask_address, require_distributed

    try:
        address = parse_dask_address(text)
        require_distributed()
    except (ValueError, ClusterError) as e:
        msg = str(e)
        ap.error(msg if msg.startswith("--dask") else f"--dask: {msg}")
    return address


def start_dask(ap: argparse.ArgumentParser, address: Any, packages: Sequence[str] = ("fci",)) -> Any:
    """Start or connect to the cluster of a checked `--dask` address (`check_dask`) and
    return its `fci.train.executors.DaskExecutor`; an unreachable scheduler, or workers
    that run other code than this process, exit naming --dask."""
    from fci.train.executors import ClusterError, dask_executor

    try:
        executor = dask_executor(address, packages=packages)
    except ClusterError as e:
        ap.error(f"--dask: {e}")
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the cluster's own chatter: warnings only
    return executor


def flag_error(ap: argparse.ArgumentParser, e: ValueError) -> NoReturn:
    """Exit via `ap.error` with a config's ValueError, prefixed by the flag of the field it names."""
    text = str(e)
    field = text.split(" ", 1)[0].split("=", 1)[0]
    flag = flag_of(field, TaskConfig, TrainConfig)
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


def _number(kind: type) -> Callable[[str], Any]:
    """An argparse type for ints or finite floats, with a one-line message."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        return value
    return parse


def _argparse_type(o: ConfigOption) -> Callable[[str], Any] | None:
    if o.parse is not None:
        def parse(text: str) -> Any:
            try:
                return o.parse(text)  # type: ignore[misc]
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        return parse
    if o.choices is not None or isinstance(o.default, str):
        return None
    if isinstance(o.default, bool):
        raise TypeError(f"{o.flag}: boolean config options need a parse function")
    if isinstance(o.default, int):
        return _number(int)
    if isinstance(o.default, float):
        return _number(float)
    return None


def _shown(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def add_config_arguments(ap: argparse.ArgumentParser, cls: type, title: str, *, regime: bool | None = None,
                         fields: Sequence[str] | None = None, defaults: Any = None, note: str | Mapping[str, str] = "",
                         scope: str | None = None) -> argparse._ArgumentGroup:
    """An argument group with the options of config dataclass `cls` (`fci.options`):
    all of them, only the regime options (`regime=True`) or the others (`False`), or
    the named `fields`. With `defaults` (an instance or a dict) each option defaults to
    its value there; without, every option defaults to None, meaning "the command's own
    value", which `note` describes in --help (one text, or one per field). Each help
    text shows one default."""
    opts = [o for o in config_options(cls) if (fields is None or o.field in fields) and (regime is None or o.regime == regime)]
    if fields is not None and {o.field for o in opts} != set(fields):
        raise ValueError(f"{cls.__name__} has no options {sorted(set(fields) - {o.field for o in opts})}")
    group = ap.add_argument_group(title, scope)
    for o in opts:
        if defaults is None:
            default, shown = None, (note.get(o.field, "") if isinstance(note, Mapping) else note)
        else:
            default = defaults.get(o.field) if isinstance(defaults, dict) else getattr(defaults, o.field)
            shown = o.shown if default is None and o.shown else _shown(default)
        kw: dict[str, Any] = {"default": default, "help": f"{o.help} (default: {shown})" if shown else o.help}
        if o.choices is not None:
            kw["choices"] = list(o.choices)
        t = _argparse_type(o)
        if t is not None:
            kw["type"] = t
        if o.metavar:
            kw["metavar"] = o.metavar
        group.add_argument(o.flag, **kw)
    return group


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """{field: value} of the options of config dataclass `cls` that `args` holds and set (not None)."""
    return {o.field: getattr(args, o.dest) for o in config_options(cls) if getattr(args, o.dest, None) is not None}


def _regime_options() -> tuple[list[ConfigOption], list[ConfigOption]]:
    from fci.options import config_options

    return ([o for o in config_options(TaskConfig) if o.regime], [o for o in config_options(TrainConfig) if o.regime])


def regime_dests() -> list[str]:
    """The argparse destinations of the regime options (task, then training)."""
    task, train = _regime_options()
    return [o.dest for o in (*task, *train)]


def regime_flags(which: str) -> dict[str, str]:
    """flag -> config field of the regime options of "task" or "train"."""
    task, train = _regime_options()
    return {o.flag: o.field for o in (task if which == "task" else train)}


def add_regime_arguments(ap: argparse.ArgumentParser, task_defaults: Any = None, train_defaults: Any = None,
                         default_note: str = "", applies_to: str = "") -> None:
    """Add the task and training options every Boolean command takes (the fields of
    `TaskConfig` and `TrainConfig` marked `regime`). Without defaults every option
    defaults to None ("the command's own value", which `default_note` describes);
    `regime_overrides` then returns only what was set. `applies_to` (e.g. "the
    Boolean jobs only") goes into both groups' --help."""

    scope = f"They apply to {applies_to}." if applies_to else None
    add_config_arguments(ap, TaskConfig, "task options (SPEC §1)", regime=True, defaults=task_defaults, note=default_note,
                         scope=scope)
    add_config_arguments(ap, TrainConfig, "training options (SPEC §7)", regime=True, defaults=train_defaults,
                         note=default_note, scope=scope)


def regime_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(task fields, train fields) set on the command line (None = not set)."""
    task, train = _regime_options()
    pick = lambda opts: {o.field: getattr(args, o.dest) for o in opts if getattr(args, o.dest, None) is not None}  # noqa: E731
    return pick(task), pick(train)


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
    task_opts, train_opts = _regime_options()
    out = {o.dest: t.get(o.field, o.default) for o in task_opts}  # to_dict leaves form out at its default
    out.update({o.dest: r.get(o.field, o.default) for o in train_opts})
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
    cnf = rec["form"] == "cnf"
    outputs = "cnf" if cnf and rec["outputs"] == "dnf" else rec["outputs"]  # the one-output mode of a CNF
    return (f"{'CNF, ' if cnf else ''}{rec['layout']} {outputs} outputs, {p_s}, negation {rec['negation_prob']:g}, {n}, "
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
