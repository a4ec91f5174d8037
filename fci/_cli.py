"""What every command of the suite shares: one-line option errors (exit status 2,
no usage dump, no traceback), the writable-folder check, and `mean ± s.e.` text
that says `n=1` instead of printing `nan`."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import NoReturn

__all__ = ["OneLineParser", "check_writable", "mean_sem_text", "CONFIG_FLAGS", "flag_error"]


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
    "finetune": "--finetune", "weight_decay": "--weight-decay",
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
