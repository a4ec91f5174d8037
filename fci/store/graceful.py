"""Every way a command can be stopped ends in one line.

`graceful(prog)` wraps a command's `main` (as a decorator or a `with` block).
Ctrl-C, SIGTERM and SIGHUP (turned into the same `KeyboardInterrupt` path), a
full disk or quota, and a store refusal (`StoreError`: a corrupt entry asked
for by name, a newer store format, a bad `$FCI_CLAIM_TTL`) end the command with
one line on stderr, saying what the store kept and that a rerun resumes, and
exit status 130 (Ctrl-C), 128 + the signal number, or 1. On the way out every
claim this process holds is released. Nothing half-written is ever visible:
entries are renamed into place whole, so there is nothing to undo.
Other exceptions (bugs) keep their traceback.

A stop must not wait for work that cannot be interrupted: the C training kernel
runs in worker threads the main thread joins, and a stack can train for hours.
So the signal also arms a watchdog: if the command has not unwound to its one
line within ``STOP_GRACE_S`` seconds, the watchdog releases the claims, writes
the same line and ends the process at once (``os._exit``). Entries are renamed
into place whole, so what was finished is kept; the temporary folder of an entry
being written when the process ended is removed by the next run here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from fci.store.claims import release_all
from fci.store.errors import StoreError

__all__ = ["graceful", "Terminated", "note_written", "STOP_GRACE_S"]

#: Seconds a stopped command has to unwind before the watchdog ends it.
STOP_GRACE_S = 3.0

_WRITTEN: Counter[str] = Counter()  # store folder -> entries this process wrote there
_FULL = {errno.ENOSPC, errno.EDQUOT}
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP) arrived; handled exactly like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum




def note_written(store_dir: Path) -> None:
    """Count one entry written into the store at `store_dir` by this process."""
    _WRITTEN[str(store_dir)] += 1


class graceful(contextlib.ContextDecorator):
    """`@graceful("python -m fci")` over a command's main: see the module docstring."""

    def __init__(self, prog: str):
        self.prog = prog
        self._old: dict[int, Any] = {}
        self._start: Counter[str] = Counter()

    def __enter__(self) -> "graceful":
        self._start = Counter(_WRITTEN)
        self._old = {}
        self._unwound = threading.Event()
        self._said = False
        self._threads_before = set(threading.enumerate())
        self._watchdog: threading.Thread | None = None
        if threading.current_thread() is threading.main_thread():
            for sig in _STOP_SIGNALS:
                if signal.getsignal(sig) is signal.SIG_DFL:  # an ignored signal (nohup) stays ignored
                    self._old[sig] = signal.signal(sig, self._on_signal)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._old[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Unwind to the one line (the exception), and arm the watchdog in case the
        unwinding waits on threads that cannot be interrupted."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._hard_stop, args=(signum,), name="fci-stop", daemon=True)
            self._watchdog.start()
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)

    def _hard_stop(self, signum: int) -> None:
        if self._unwound.wait(STOP_GRACE_S):
            return
        with contextlib.suppress(Exception):
            release_all()
            if not self._said:
                self._say(f"{_how(signum)}; {self._kept()}; rerun the same command to resume")
        os._exit(128 + signum)

    def _blocking_threads(self) -> list[threading.Thread]:
        """Threads this command started that the interpreter would wait for on its way out."""
        me = threading.current_thread()
        return [t for t in threading.enumerate()
                if t is not me and t.is_alive() and not t.daemon and t not in self._threads_before]

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        keep_armed = False
        try:
            if e is None or isinstance(e, SystemExit):
                return
            if isinstance(e, KeyboardInterrupt):
                signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
                with _quiet():
                    release_all()
                    self._say(f"{_how(signum)}; {self._kept()}; rerun the same command to resume")
                    self._said = True
                # the interpreter joins the threads this command started before it exits: if one is
                # still working (uninterruptible), the watchdog ends the process after its grace period
                keep_armed = self._watchdog is not None and bool(self._blocking_threads())
                raise SystemExit(128 + signum)
            if isinstance(e, OSError) and e.errno in _FULL:
                release_all()
                where = f" writing {e.filename}" if e.filename else ""
                self._say(f"stopped: {e.strerror or 'no space left on device'}{where}; {self._kept()}; "
                          "free some space, then rerun the same command to resume")
                raise SystemExit(1)
            if isinstance(e, StoreError):
                release_all()
                self._say(f"error: {e}")
                raise SystemExit(1)
        finally:
            if not keep_armed:
                self._unwound.set()
            for sig, old in self._old.items():
                signal.signal(sig, old)
            self._old = {}

    def _kept(self) -> str:
        new = {d: n - self._start.get(d, 0) for d, n in _WRITTEN.items() if n > self._start.get(d, 0)}
        if not new:
            return "no new store entry was finished (nothing half-written is left)"
        where = ", ".join(f"{n} in {d}" for d, n in new.items())
        total = sum(new.values())
        return f"the {total} store entr{'y' if total == 1 else 'ies'} it finished {'is' if total == 1 else 'are'} kept ({where}), nothing half-written"

    def _say(self, line: str) -> None:
        _close_bars()
        sys.stderr.write(f"{self.prog}: {line}\n")
        sys.stderr.flush()


def _how(signum: int) -> str:
    return "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


def _close_bars() -> None:
    """Close the open progress bars first, so that the one line is the last and starts a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ()) or ()):
        with contextlib.suppress(Exception):
            bar.close()


@contextlib.contextmanager
def _quiet():
    """Further Ctrl-C / SIGTERM are ignored while the one line is written and claims released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, *_STOP_SIGNALS)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
