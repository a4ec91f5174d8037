"""Claims: which process is making an entry right now, so that processes sharing a
store split the work instead of repeating it.

`.claims/<key>` holds its owner as JSON: `{"format", "host", "pid", "start",
"token", "ttl_s", "created", "fci"}`. It is written whole into a temporary file
`.claims/.<key>.claim-<random>-<owner>` and hard-linked into place, which is
atomic and fails when a claim exists, so no reader ever sees a claim without
its owner (where the filesystem has no hard links, an exclusive create and a
write stand in, and the grace below covers the moment between them). The owner
refreshes the file's mtime every `ttl / 10` seconds and removes it when done.

A claim is *stale*, and is taken over, when

- its owner is a process of this host that has died, or whose pid now belongs to
  a process started at another time: at once;
- it has not been refreshed for the expiry (`ttl`, default 300 s, settable by
  `$FCI_CLAIM_TTL` or `Store(claim_ttl=...)`; never shorter than two of the
  owner's heartbeats, `ttl_s / 5`, so a short expiry cannot break a healthy
  claim of a process running with a longer one);
- it cannot be read as a claim (empty, garbage) and is older than `GRACE` seconds;

and a symbolic link, folder or other non-file where a claim should be is
quarantined with its reason. A claim of a newer format is judged by its age alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from fci.store import files
from fci.store.errors import SettingError
from fci.store.formats import FORMAT_VERSION, release

__all__ = ["CLAIMS", "CLAIM_TTL", "GRACE", "ENV_TTL", "Claim", "ClaimBook", "resolve_claim_ttl", "release_all"]

log = logging.getLogger("fci.store")

CLAIMS = ".claims"
CLAIM_TTL = 300.0
"""Seconds after its last heartbeat at which a claim expires and may be taken over."""
GRACE = 5.0
"""Seconds an unreadable claim counts as live (a writer without hard links between create and write)."""
ENV_TTL = "FCI_CLAIM_TTL"
_MAX_CLAIM_BYTES = 1 << 16
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
_BOOKS: "weakref.WeakSet[ClaimBook]" = weakref.WeakSet()


def resolve_claim_ttl(value: float | str | None = None, what: str = "claim_ttl") -> float:
    """The claim expiry in seconds: `value` when given (named `what` in errors,
    e.g. "--claim-ttl"), else `$FCI_CLAIM_TTL`, else 300. A value that is not a
    positive finite number raises SettingError (a ValueError) naming its source."""
    if value is None:
        env = os.environ.get(ENV_TTL, "").strip()
        if not env:
            return CLAIM_TTL
        value, what = env, f"${ENV_TTL}"
    ttl = math.nan
    if not isinstance(value, bool):
        try:
            ttl = float(value)
        except (TypeError, ValueError):
            pass
    if not (math.isfinite(ttl) and ttl > 0):
        raise SettingError(f"{what} must be a positive number of seconds, got {value!r}")
    return ttl


@dataclass
class Claim:
    """This process's claim on some entries (all or nothing); release when done."""

    book: "ClaimBook"
    keys: tuple[str, ...]
    token: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.book.release(self)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim({len(self.keys)} entries, token={self.token[:8]}, {'released' if self.released else 'held'})"


def release_all() -> int:
    """Release every claim this process holds, on any store; returns how many."""
    n = 0
    for book in list(_BOOKS):
        n += book.release_everything()
    return n


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class ClaimBook:
    """The claims of one `Store` object under `folder` (`<store>/.claims`).
    `move_aside(path, label, reason)` quarantines what cannot be a claim."""

    def __init__(self, folder: Path, ttl: float, move_aside: Callable[[Path, str, str], Path | None]):
        self.folder = folder
        self.ttl = ttl
        self._move_aside = move_aside
        self.held: dict[str, str] = {}  # key -> token of a claim this object holds
        self._lock = threading.Lock()
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        _BOOKS.add(self)

    def path(self, key: str) -> Path:
        return self.folder / key

    # ------------------------------------------------------------------ reading

    def _look_at(self, p: Path) -> tuple[str, dict[str, Any] | None, float]:
        """(state, owner, age in seconds) of the claim file `p`; state is 'absent',
        'odd' (not a regular file: a link, a folder), 'garbled' or 'ok'."""
        if files.what_is(self.folder) != "dir":
            return "absent", None, 0.0  # no claims folder (or something else in its place: never followed)
        kind = files.what_is(p)
        if kind == "absent":
            return "absent", None, 0.0
        if kind != "file":
            return "odd", {"what": kind}, 0.0
        try:
            age = time.time() - os.lstat(p).st_mtime
            raw = files.read_regular(p, _MAX_CLAIM_BYTES)
        except FileNotFoundError:
            return "absent", None, 0.0
        except OSError:
            return "odd", {"what": "file"}, 0.0
        try:
            info = json.loads(raw.decode())
        except (ValueError, UnicodeDecodeError):
            return "garbled", None, age
        return ("ok", info, age) if isinstance(info, dict) else ("garbled", None, age)

    def _stale(self, state: str, info: dict[str, Any] | None, age: float) -> str | None:
        """None while a claim in this state is live; otherwise why it is stale."""
        if state == "garbled" or info is None:
            return None if age <= min(GRACE, self.ttl) else f"unreadable as a claim, {age:.0f}s old"
        owner_ttl = info.get("ttl_s")
        limit = max(self.ttl, float(owner_ttl) / 5 if isinstance(owner_ttl, (int, float)) and math.isfinite(owner_ttl) else 0.0)
        host, pid = info.get("host"), info.get("pid")
        if age > limit:
            return f"claimed by {host} pid {pid}, not refreshed for {age:.0f}s (expiry {limit:.0f}s)"
        fmt = info.get("format")
        if isinstance(fmt, int) and fmt > FORMAT_VERSION:
            return None  # a newer format: judged by its age alone
        if isinstance(host, str) and isinstance(pid, int) and not isinstance(pid, bool):
            start = info.get("start")
            if files.owner_gone(host, pid, start if _is_int(start) else None):
                return f"claimed by {host} pid {pid}, which has died"
        return None

    def owner(self, key: str) -> dict[str, Any] | None:
        """The live claim on `key` ({host, pid, token, ..., age_s}; `unreadable`
        for a fresh claim that cannot be read yet), or None when unclaimed or stale."""
        state, info, age = self._look_at(self.path(key))
        if state in ("absent", "odd") or self._stale(state, info, age) is not None:
            return None
        return {**(info if info is not None else {"unreadable": True}), "age_s": age}

    # ------------------------------------------------------------------ claiming

    def _ensure_folder(self) -> None:
        kind = files.what_is(self.folder)
        if kind == "dir":
            return
        if kind != "absent":
            self._quarantine(self.folder, "claims", f"a {_what(kind)} stood where the claims folder {self.folder} should be")
        self.folder.mkdir(parents=True, exist_ok=True)

    def _quarantine(self, p: Path, label: str, reason: str) -> None:
        if self._move_aside(p, label, reason) is not None:
            log.warning("quarantined %s: %s", p, reason)

    def _body(self, token: str) -> bytes:
        pid = os.getpid()
        return json.dumps({"format": FORMAT_VERSION, "host": files.HOST, "pid": pid, "start": files.process_start(pid) or 0,
                           "token": token, "ttl_s": self.ttl, "created": time.time(), "fci": release()}).encode()

    def _try_one(self, key: str, token: str) -> bool:
        self._ensure_folder()
        p = self.path(key)
        tmp = self.folder / f".{key}.claim-{token[:8]}-{files.owner_tag()}"
        body = self._body(token)
        files.write_new(tmp, body)
        try:
            for _ in range(3):
                try:
                    os.link(tmp, p)
                    return True
                except FileExistsError:
                    if self.owner(key) is not None:
                        return False
                    self._break(key)  # stale, or not a claim at all: take it over
                except OSError as e:
                    if e.errno not in _NO_LINKS:
                        raise
                    return self._try_exclusive(key, body)
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _try_exclusive(self, key: str, body: bytes) -> bool:
        """Claiming where hard links are not available: exclusive create, then write."""
        for _ in range(3):
            try:
                files.write_new(self.path(key), body)
                return True
            except FileExistsError:
                if self.owner(key) is not None:
                    return False
                self._break(key)
        return False

    def _break(self, key: str) -> None:
        """Take a stale claim (or whatever stands in its place) away: renamed aside,
        judged again there, then removed, quarantined, or linked back if it
        turned out live (taken over by another process between look and rename)."""
        p = self.path(key)
        aside = self.folder / f".{key}.reap-{uuid.uuid4().hex[:8]}-{files.owner_tag()}"
        try:
            os.rename(p, aside)
        except FileNotFoundError:
            return
        state, info, age = self._look_at(aside)
        if state == "odd":
            what = _what((info or {}).get("what", "other"))
            self._quarantine(aside, f"claim-{key}", f"a {what} stood where the claim on store entry {key} should be")
            return
        why = self._stale(state, info, age)
        if why is None:
            with contextlib.suppress(OSError):
                os.link(aside, p)
        else:
            log.info("taking over the claim on store entry %s (%s)", key, why)
        with contextlib.suppress(OSError):
            os.unlink(aside)

    def try_claim(self, keys: str | Sequence[str]) -> Claim | None:
        """Claim every entry of `keys` (all or nothing); None when a live claim of
        another holds any of them. Held claims are refreshed until released."""
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        token = uuid.uuid4().hex
        got: list[str] = []
        for key in keys:
            if key in self.held or not self._try_one(key, token):
                for k in got:
                    self._unlink(k, token)
                    with self._lock:
                        self.held.pop(k, None)
                return None
            with self._lock:  # held at once, so that an interrupt from here on releases it (`release_all`)
                self.held[key] = token
            got.append(key)
        self._start_heartbeat()
        return Claim(self, keys, token)

    @contextlib.contextmanager
    def claim(self, keys: str | Sequence[str]) -> Iterator[Claim | None]:
        c = self.try_claim(keys)
        try:
            yield c
        finally:
            if c is not None:
                c.release()

    def _unlink(self, key: str, token: str) -> None:
        p = self.path(key)
        state, info, _ = self._look_at(p)
        if state == "ok" and info is not None and info.get("token") == token:
            with contextlib.suppress(OSError):
                os.unlink(p)

    def release(self, claim: Claim) -> None:
        for k in claim.keys:  # each key leaves `held` only once its file is gone, so an interrupted
            if self.held.get(k) == claim.token:  # release is finished by `release_all`
                self._unlink(k, claim.token)
                with self._lock:
                    self.held.pop(k, None)

    def release_everything(self) -> int:
        with self._lock:
            held = dict(self.held)
        for k, token in held.items():
            self._unlink(k, token)
            with self._lock:
                self.held.pop(k, None)
        return len(held)

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._beat is not None and self._beat.is_alive():
                return
            self._beat_stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="fci-store-claims", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._beat_stop.wait(self.ttl / 10):
            with self._lock:
                held = dict(self.held)
                if not held:
                    self._beat = None
                    return
            for key, token in held.items():
                p = self.path(key)
                state, info, _ = self._look_at(p)
                try:
                    if state != "ok" or info is None or info.get("token") != token:
                        raise FileNotFoundError
                    os.utime(p, follow_symlinks=False)
                except OSError:
                    with self._lock:
                        if self.held.get(key) != token:
                            continue  # released meanwhile
                        self.held.pop(key, None)
                    log.warning("lost the claim on store entry %s (taken over after %.0fs without a heartbeat?); "
                                "another process may make it too", key, self.ttl)

    # ------------------------------------------------------------------ checking and repair

    def fix_folder(self) -> None:
        """Quarantine whatever stands where the claims folder should be, and make the folder."""
        self._ensure_folder()

    def heal(self, key: str) -> None:
        """Quarantine whatever stands where the claim on `key` should be, if it is not a file."""
        if files.what_is(self.folder) not in ("dir", "absent"):
            self._ensure_folder()
        if files.what_is(self.folder) == "dir" and files.what_is(self.path(key)) not in ("absent", "file"):
            self._break(key)

    def survey(self) -> dict[str, tuple[str, str]]:
        """What `repair` would clear: {name under the claims folder: (action, why)},
        action 'quarantine' (not a claim), 'break' (a stale claim) or 'remove'
        (a temporary file whose owner is gone). Live claims are left out."""
        out: dict[str, tuple[str, str]] = {}
        if files.what_is(self.folder) != "dir":
            return out
        for d in sorted(os.scandir(self.folder), key=lambda d: d.name):
            p = Path(d.path)
            if d.name.startswith("."):
                why = abandoned(p, self.ttl)
                if why is not None:
                    out[d.name] = ("remove", f"temporary claim file {why}")
                continue
            state, info, age = self._look_at(p)
            if state == "odd":
                out[d.name] = ("quarantine", f"a {_what((info or {}).get('what', 'other'))} stands where a claim should be")
            elif state != "absent":
                why = self._stale(state, info, age)
                if why is not None:
                    out[d.name] = ("break", f"stale claim: {why}")
        return out

    def clear(self, name: str, action: str) -> None:
        """Carry out one `survey` finding."""
        if action == "remove":
            with contextlib.suppress(OSError):
                files.remove(self.folder / name)
        else:
            self._break(name)


def abandoned(p: Path, ttl: float) -> str | None:
    """Why the temporary file or folder `p` (named with its owner, or from an older
    fci without) is abandoned, or None while its owner may still be writing it:
    its owner on this host has died (any age), or, for an owner elsewhere or
    unnamed, it has not changed for `ttl` seconds."""
    owner = files.parse_owner(p.name)
    if owner is not None:
        host, pid, start = owner
        gone = files.owner_gone(host, pid, start)
        if gone:
            return f"left by pid {pid} on this host, which has died"
        if gone is False:
            return None
    try:
        age = time.time() - os.lstat(p).st_mtime
    except OSError:
        return None
    return f"left by an interrupted writer, unchanged for {age:.0f}s" if age > ttl else None


def _what(kind: str) -> str:
    return {"link": "symbolic link", "file": "file", "dir": "folder"}.get(kind, "special file")
