"""Moving things aside: `.quarantine/<label>.<UTC time>-<random>/` with a `reason.txt`.

An entry folder is moved as that folder; anything else (a symbolic link, a file,
a folder where a claim should be) is moved, unfollowed, into a new folder under
its own name. Nothing is ever deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

from fci.store import files

__all__ = ["QUARANTINE", "move_aside", "quarantine_dir"]

log = logging.getLogger("fci.store")

QUARANTINE = ".quarantine"


def _stamp() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def quarantine_dir(store_dir: Path) -> Path:
    """`<store>/.quarantine/`, created when absent; something else under that name
    (a link, a file) is first moved aside into a fresh one, with its reason."""
    q = store_dir / QUARANTINE
    kind = files.what_is(q)
    if kind == "dir":
        return q
    if kind == "absent":
        q.mkdir(parents=True, exist_ok=True)
        return q
    odd = store_dir / f"{QUARANTINE}.odd-{_stamp()}"
    os.rename(q, odd)
    q.mkdir()
    move_aside(store_dir, odd, QUARANTINE, f"a {_what(kind)} stood where the quarantine folder {q} should be")
    return q


def _what(kind: str) -> str:
    return {"link": "symbolic link", "file": "file", "dir": "folder"}.get(kind, "special file")


def move_aside(store_dir: Path, src: Path, label: str, reason: str,
               unless: Callable[[Path], bool] | None = None) -> Path | None:
    """Move what is at `src` into quarantine with `reason`; returns its folder
    there, or None when nothing is at `src` any more (another process moved it),
    it could not be moved (then one warning says why), or `unless(moved folder)`
    holds once it is moved (then it is put back: a good entry written meanwhile)."""
    kind = files.what_is(src)
    if kind == "absent":
        return None
    dest = quarantine_dir(store_dir) / f"{label}.{_stamp()}"
    try:
        if kind == "dir":
            os.rename(src, dest)
        else:
            dest.mkdir()
            os.rename(src, dest / src.name)
    except FileNotFoundError:
        _rmdir_quietly(dest)
        return None
    except OSError as e:
        _rmdir_quietly(dest)
        log.warning("could not move %s into quarantine (%s): %s", src, e.strerror or e, reason)
        return None
    if kind == "dir" and unless is not None and unless(dest):
        try:
            os.rename(dest, src)
        except OSError:
            shutil.rmtree(dest, ignore_errors=True)  # an equal good copy stands under the name again
        return None
    try:
        files.write_new(dest / "reason.txt", (reason + "\n").encode())
    except OSError:
        pass  # the move is what matters; a full disk may refuse the note
    return dest


def _rmdir_quietly(p: Path) -> None:
    try:
        if files.what_is(p) == "dir":
            os.rmdir(p)
    except OSError:
        pass
