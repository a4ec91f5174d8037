"""The results store: one immutable directory per trained model.

    <root>/store/<key>/config.json          what was trained (full config, format version)
    <root>/store/<key>/metrics.json         what was measured
    <root>/store/<key>/weights.safetensors  tensors as data (no pickles)
    <root>/store/<key>/checksums.json       sha256 and size of the three files above, and the writer
    <root>/store/.quarantine/<key>.<time>/  entries found corrupt or incomplete, moved aside (never deleted)
    <root>/store/.claims/<key>              claims: who is training the entry right now

`key` is a stable hash of the config JSON. An entry is written into a temporary
directory and renamed into place, so an interrupted run never leaves a
half-written result, and merging shards from several machines is copying
directories. Entries are created with the process's umask (readable by group
and others under the usual 022), so a shared store works.

**Healing.** `load` and `has` verify an entry's checksums. An entry written
before checksums existed (no `checksums.json`) is *unverified*: it loads if its
files parse. A corrupt or incomplete entry makes `load` raise `StoreError` naming
the file; `load_or_none`, `heal` and `save` move it to `.quarantine/` with one
warning naming it, so the schedule retrains it. `verify()` lists every bad entry,
`repair()` quarantines them; from a shell: `python -m fci.store verify|repair DIR`.

**Sharing.** Processes (or shards) on one store split the work through claims
(`claim`, `share`): a claim is a file created atomically with
`O_CREAT | O_EXCL`, holding its owner's host, pid and a random token, and
refreshed by a heartbeat thread every `claim_ttl / 10` seconds. A claim whose
file has not been refreshed for `claim_ttl` seconds (default 300), or whose
owner is a dead process on this host, is expired and is taken over. This relies
on atomic exclusive create, which local filesystems and NFSv3+ provide, and on
clocks that agree to well within `claim_ttl` across hosts. Claims only prevent
duplicate work: entries are immutable and renamed into place, so a claim lost
in a race costs at most a model trained twice, never a wrong or lost entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = ["CLAIM_TTL", "FORMAT_VERSION", "Claim", "Store", "StoreEntry", "StoreError", "config_key"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FILES = ("config.json", "metrics.json", "weights.safetensors")
_CHECKSUMS = "checksums.json"
_QUARANTINE = ".quarantine"
_CLAIMS = ".claims"
CLAIM_TTL = 300.0
"""Seconds after its last heartbeat at which a claim expires and may be taken over."""


class StoreError(RuntimeError):
    """A store entry is missing, corrupt or incomplete; the message names the file."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def config_key(config: dict[str, Any]) -> str:
    """Stable 20-hex-digit hash of a config (with the format version folded in)."""
    payload = _canonical({"format": FORMAT_VERSION, **config})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class StoreEntry:
    """One loaded entry: its config and metrics, and its tensors on first use."""

    key: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    verified: bool = True  # False for an entry written before checksums existed
    _tensors: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """Weights, loaded on first use."""
        if self._tensors is None:
            self._tensors = _load_tensors(self.path / "weights.safetensors")
        return self._tensors

    def __repr__(self) -> str:
        what = ", ".join(f"{k}={self.config[k]!r}" for k in ("kind", "condition", "alpha", "hidden", "seed") if k in self.config)
        return f"StoreEntry({self.key!r}, {what}{'' if self.verified else ', unverified'})"


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"store entry is corrupt: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise StoreError(f"store entry is corrupt: {path} does not hold a JSON object")
    return data


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise StoreError(f"store entry is incomplete: {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise StoreError(f"store entry is corrupt: {path} could not be read as safetensors ({e})") from None


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _honour_umask(folder: Path) -> None:
    """Give a finished temporary entry the modes a plain mkdir/open would have:
    `tempfile.mkdtemp` makes 0700 and safetensors writes 0600."""
    mask = _umask()
    for p in folder.iterdir():
        os.chmod(p, 0o666 & ~mask)
    os.chmod(folder, 0o777 & ~mask)


def _read_entry(p: Path, key: str) -> StoreEntry:
    """Read and verify the entry in folder `p`; raises StoreError naming the bad file."""
    raw: dict[str, bytes] = {}
    for name in _FILES:
        try:
            raw[name] = (p / name).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"store entry is incomplete: {p / name} is missing") from None
        except OSError as e:
            raise StoreError(f"store entry is unreadable: {p / name} ({e.strerror or e})") from None
    verified = (p / _CHECKSUMS).is_file()
    if verified:
        sums = _parse_json(p / _CHECKSUMS, (p / _CHECKSUMS).read_bytes()).get("files")
        if not isinstance(sums, dict):
            raise StoreError(f"store entry is corrupt: {p / _CHECKSUMS} lacks a 'files' object")
        for name in _FILES:
            want = sums.get(name)
            if not isinstance(want, dict) or "sha256" not in want:
                raise StoreError(f"store entry is corrupt: {p / _CHECKSUMS} has no checksum for {name}")
            got = _sha256(raw[name])
            if got != want["sha256"]:
                raise StoreError(f"store entry is corrupt: {p / name} fails its checksum "
                                 f"({len(raw[name])} bytes, sha256 {got[:12]}…; recorded {want.get('bytes')} bytes, "
                                 f"sha256 {str(want['sha256'])[:12]}…)")
    config = _parse_json(p / "config.json", raw["config.json"])
    metrics = _parse_json(p / "metrics.json", raw["metrics.json"])
    if not verified:  # an entry from before checksums: at least the weights must parse
        _load_tensors(p / "weights.safetensors")
    return StoreEntry(key=key, path=p, config=config, metrics=metrics, verified=verified)


def _signature(p: Path) -> tuple | None:
    """(name, size, mtime_ns) of an entry's files, or None when one is missing."""
    try:
        return tuple((n, (st := (p / n).stat()).st_size, st.st_mtime_ns) for n in (*_FILES, _CHECKSUMS))
    except OSError:
        return None


_HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


@dataclass
class Claim:
    """This process's claim on some entries (all or nothing); release when done."""

    store: "Store"
    keys: tuple[str, ...]
    token: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.store._release(self)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim({len(self.keys)} entries, token={self.token[:8]}, {'released' if self.released else 'held'})"


class Store:
    """A directory of immutable per-model entries under `<root>/store/`.

    `claim_ttl`: seconds without a heartbeat after which another process may
    take over this store's claims (see the module docstring)."""

    def __init__(self, root: str | os.PathLike = "data", claim_ttl: float = CLAIM_TTL):
        if not (isinstance(claim_ttl, (int, float)) and claim_ttl > 0 and math.isfinite(claim_ttl)):
            raise ValueError(f"claim_ttl must be a positive number of seconds, got {claim_ttl!r}")
        self.root = Path(root)
        self.dir = self.root / "store"
        self.claim_ttl = float(claim_ttl)
        self._held: dict[str, str] = {}  # key -> token of a claim this object holds
        self._intact: dict[str, tuple] = {}  # key -> file signature when last verified intact
        self._lock = threading.Lock()
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()

    def __repr__(self) -> str:
        n = len(self.keys())
        return f"Store({str(self.root)!r}, {n} entr{'y' if n == 1 else 'ies'})"

    def path(self, key: str) -> Path:
        return self.dir / key

    # ------------------------------------------------------------------ checking

    def check(self, key: str) -> str | None:
        """None when the entry is absent or intact; otherwise what is wrong with
        it, naming the file (incomplete, unreadable, or a checksum mismatch)."""
        p = self.path(key)
        if not p.is_dir():
            return None
        sig = _signature(p)
        if sig is not None and self._intact.get(key) == sig:
            return None  # verified by this Store and unchanged since (same sizes and mtimes)
        try:
            self._read(key)
        except StoreError as e:
            self._intact.pop(key, None)
            return str(e)
        if sig is not None:
            self._intact[key] = sig
        return None

    def _read(self, key: str) -> StoreEntry:
        """Read and verify an entry; raises StoreError naming the bad file."""
        p = self.path(key)
        if not p.is_dir():
            raise StoreError(f"no store entry {key!r} under {self.dir}")
        return _read_entry(p, key)

    def has(self, key: str) -> bool:
        """True when an intact entry exists (all files present, checksums match)."""
        return self.path(key).is_dir() and self.check(key) is None

    def load(self, key: str) -> StoreEntry:
        """Load one entry (tensors lazily) after verifying its checksums; raises
        StoreError naming the missing or corrupt file."""
        return self._read(key)

    def load_or_none(self, key: str) -> StoreEntry | None:
        """The entry, or None when it is absent or was corrupt (then it has been
        quarantined with one warning, and the caller retrains it)."""
        if not self.path(key).is_dir():
            return None
        try:
            return self._read(key)
        except StoreError as e:
            self.quarantine(key, str(e))
            return None

    def heal(self, keys: Iterable[str]) -> list[str]:
        """Quarantine every corrupt or incomplete entry among `keys` (one warning
        each); returns the keys moved aside. Intact and absent entries are left alone."""
        moved = []
        for key in keys:
            problem = self.check(key)
            if problem is not None and self.quarantine(key, problem) is not None:
                moved.append(key)
        return moved

    def quarantine(self, key: str, reason: str) -> Path | None:
        """Move entry `key` into `.quarantine/` with a `reason.txt`, warning once;
        returns where it went (None when another process moved it first, or it
        turned out intact: an entry rewritten under the same key meanwhile is kept)."""
        src = self.path(key)
        qdir = self.dir / _QUARANTINE
        qdir.mkdir(parents=True, exist_ok=True)
        dest = qdir / f"{key}.{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        try:
            os.rename(src, dest)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("could not quarantine corrupt store entry %s (%s): %s", src, e.strerror or e, reason)
            return None
        if (dest / _CHECKSUMS).is_file() and self._intact_at(dest):
            # Another writer replaced the corrupt entry between our check and the move: put it back.
            try:
                os.rename(dest, src)
            except OSError:
                shutil.rmtree(dest, ignore_errors=True)  # an intact copy exists under the key
            return None
        try:
            (dest / "reason.txt").write_text(reason + "\n")
        except OSError:
            pass
        log.warning("quarantined store entry %s: %s; moved to %s (it will be retrained)", key, reason, dest)
        return dest

    @staticmethod
    def _intact_at(folder: Path) -> bool:
        try:
            _read_entry(folder, folder.name)
        except StoreError:
            return False
        return True

    def verify(self) -> dict[str, str]:
        """Every corrupt or incomplete entry: {key: what is wrong, naming the file}.
        Also lists temporary folders left by killed writers (key '.name')."""
        bad = {key: problem for key in self.keys() if (problem := self.check(key)) is not None}
        for tmp in self._leftovers():
            bad[tmp.name] = f"temporary folder {tmp} left by an interrupted writer"
        return bad

    def repair(self) -> dict[str, str]:
        """Quarantine every entry `verify` reports and remove temporary folders
        of interrupted writers older than `claim_ttl`; returns what was found."""
        bad = self.verify()
        for key, problem in bad.items():
            if key.startswith("."):
                tmp = self.dir / key
                try:
                    if time.time() - tmp.stat().st_mtime > self.claim_ttl:
                        shutil.rmtree(tmp, ignore_errors=True)
                except OSError:
                    pass
            else:
                self.quarantine(key, problem)
        return bad

    def _leftovers(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(d for d in self.dir.iterdir() if d.is_dir() and (".tmp-" in d.name or ".stale-" in d.name))

    def quarantined(self) -> list[Path]:
        """The folders in `.quarantine/`, oldest first."""
        q = self.dir / _QUARANTINE
        return sorted(q.iterdir()) if q.is_dir() else []

    # ------------------------------------------------------------------ writing

    def save(self, config: dict[str, Any], metrics: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
        """Write one entry atomically; returns its key. An intact existing entry
        is kept as is; a corrupt one under the same key is quarantined first."""
        key = config_key(config)
        final = self.path(key)
        if self.has(key):
            return key
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=self.dir))
        try:
            raw = {
                "config.json": json.dumps({"format": FORMAT_VERSION, "key": key, **config}, indent=1, sort_keys=True,
                                          default=_json_default).encode(),
                "metrics.json": json.dumps(metrics, indent=1, sort_keys=True, default=_json_default).encode(),
            }
            for name, data in raw.items():
                (tmp / name).write_bytes(data)
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "weights.safetensors"))
            raw["weights.safetensors"] = (tmp / "weights.safetensors").read_bytes()
            sums = {"format": 1, "files": {n: {"sha256": _sha256(b), "bytes": len(b)} for n, b in raw.items()},
                    "writer": {"host": _HOST, "pid": os.getpid()}}
            (tmp / _CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True))
            _honour_umask(tmp)
            if self.has(key):  # another writer (a parallel shard) finished first
                return key
            if final.exists():  # a corrupt or incomplete entry under the final name: move it aside, never delete it
                self.quarantine(key, self.check(key) or f"store entry {final} is incomplete")
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(key):  # losing the rename is fine only if the winner's entry is intact
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return key

    def keys(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(d.name for d in self.dir.iterdir() if d.is_dir() and not d.name.startswith("."))

    def entries(self, check_tensors: bool = False) -> Iterator[StoreEntry]:
        """Every readable entry; corrupt ones are skipped with one logged warning naming the file."""
        for key in self.keys():
            try:
                entry = self.load(key)
                if check_tensors:
                    entry.tensors  # noqa: B018 (load them now)
            except StoreError as e:
                log.warning("skipping %s", e)
                continue
            yield entry

    def delete(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    # ------------------------------------------------------------------ claims

    def _claim_path(self, key: str) -> Path:
        return self.dir / _CLAIMS / key

    def claim_owner(self, key: str) -> dict[str, Any] | None:
        """The live claim on `key` ({host, pid, token, age_s}), or None when the
        entry is unclaimed or its claim has expired."""
        p = self._claim_path(key)
        try:
            raw = p.read_bytes()
            age = time.time() - p.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            info = json.loads(raw.decode())
            if not isinstance(info, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            info = {}  # being written right now, or garbage: judged by its age alone
        info["age_s"] = age
        if age > self.claim_ttl:
            return None
        if info.get("host") == _HOST and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"]):
            return None  # its owner on this machine has died
        return info

    def _try_one(self, key: str, token: str) -> bool:
        p = self._claim_path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"host": _HOST, "pid": os.getpid(), "token": token, "ttl_s": self.claim_ttl,
                           "created": time.time()}).encode()
        for _ in range(2):
            try:
                fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                if self.claim_owner(key) is not None:
                    return False
                self._break(key)  # expired, or its owner died: take it over
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            return True
        return False

    def _break(self, key: str) -> None:
        """Remove an expired claim, restoring it if a live one was moved by mistake."""
        p = self._claim_path(key)
        aside = p.with_name(f"{key}.reap-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(p, aside)
        except FileNotFoundError:
            return
        try:
            age = time.time() - aside.stat().st_mtime
            info = json.loads(aside.read_bytes().decode() or "{}")
        except (OSError, ValueError, UnicodeDecodeError):
            age, info = math.inf, {}
        alive_here = info.get("host") == _HOST and isinstance(info.get("pid"), int) and _pid_alive(info["pid"])
        if age <= self.claim_ttl and (info.get("host") != _HOST or alive_here):
            # Someone took it over between our look and the rename: give it back.
            with contextlib.suppress(OSError):
                os.link(aside, p)
        else:
            log.info("taking over the expired claim on store entry %s (owner %s pid %s, %.0fs old)",
                     key, info.get("host"), info.get("pid"), age)
        with contextlib.suppress(OSError):
            aside.unlink()

    def try_claim(self, keys: str | Sequence[str]) -> Claim | None:
        """Claim every entry of `keys` (all or nothing); None when another live
        process holds any of them. Held claims are refreshed by a heartbeat
        thread until released."""
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        token = uuid.uuid4().hex
        got: list[str] = []
        for key in keys:
            if key in self._held or not self._try_one(key, token):
                for k in got:
                    self._unlink_claim(k, token)
                return None
            got.append(key)
        with self._lock:
            for k in got:
                self._held[k] = token
        self._start_heartbeat()
        return Claim(self, keys, token)

    @contextlib.contextmanager
    def claim(self, keys: str | Sequence[str]) -> Iterator[Claim | None]:
        """`with store.claim(key) as c:` c is the claim (released on exit), or
        None when another live process is working on the entry."""
        c = self.try_claim(keys)
        try:
            yield c
        finally:
            if c is not None:
                c.release()

    def _unlink_claim(self, key: str, token: str) -> None:
        p = self._claim_path(key)
        try:
            info = json.loads(p.read_bytes().decode())
        except (OSError, ValueError, UnicodeDecodeError):
            return
        if info.get("token") == token:
            with contextlib.suppress(OSError):
                p.unlink()

    def _release(self, claim: Claim) -> None:
        with self._lock:
            for k in claim.keys:
                if self._held.get(k) == claim.token:
                    del self._held[k]
        for k in claim.keys:
            self._unlink_claim(k, claim.token)

    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._beat is not None and self._beat.is_alive():
                return
            self._beat_stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="fci-store-claims", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._beat_stop.wait(self.claim_ttl / 10):
            with self._lock:
                held = dict(self._held)
                if not held:
                    self._beat = None
                    return
            for key, token in held.items():
                p = self._claim_path(key)
                try:
                    info = json.loads(p.read_bytes().decode())
                    if info.get("token") != token:
                        raise ValueError
                    os.utime(p)
                except (OSError, ValueError, UnicodeDecodeError):
                    log.warning("lost the claim on store entry %s (taken over after %.0fs without a heartbeat?); "
                                "another process may train it too", key, self.claim_ttl)
                    with self._lock:
                        self._held.pop(key, None)

    def wait_for(self, keys: Sequence[str], poll: float | None = None, timeout: float | None = None,
                 any_: bool = False) -> bool:
        """Block until every entry of `keys` (with `any_`, at least one) is stored
        or no longer claimed by a live process (its owner finished, died, or let
        the claim expire). Returns False on `timeout` seconds, True otherwise."""
        poll = min(1.0, self.claim_ttl / 20) if poll is None else poll
        t0 = time.monotonic()
        while True:
            ready = [self.has(k) or self.claim_owner(k) is None for k in keys]
            if (any(ready) if any_ else all(ready)) or not keys:
                return True
            if timeout is not None and time.monotonic() - t0 > timeout:
                return False
            time.sleep(poll)

    def share(self, groups: Sequence[Sequence[str]], run: Callable[[list[int]], object], batch: int | None = None,
              poll: float | None = None) -> list[int]:
        """Do the work of `groups` together with any other process on this store.

        Each group is the store keys one unit of work writes (e.g. a trial's
        models). Repeatedly: claim up to `batch` units that are not stored and
        not claimed by a live process (default: a quarter of the units, so two
        processes started together split the work), call `run(indices)` to
        produce and save them, release; when every remaining unit is claimed by
        others, wait until one is stored or its claim expires. Returns the
        indices this process ran."""
        def missing(i: int) -> list[str]:
            return [k for k in groups[i] if not self.has(k)]

        pending = [i for i in range(len(groups)) if missing(i)]
        batch = max(1, math.ceil(len(pending) / 4)) if batch is None else max(1, int(batch))
        mine: list[int] = []
        while pending:
            took: list[int] = []
            claims: list[Claim] = []
            for i in pending:
                if len(took) >= batch:
                    break
                need = missing(i)
                if not need:
                    continue
                if all(k in self._held for k in need):  # claimed by this process already (a share inside a share)
                    took.append(i)
                    continue
                c = self.try_claim(need)
                if c is None:
                    continue
                if not missing(i):  # finished by its owner between our look and the claim
                    c.release()
                    continue
                took.append(i)
                claims.append(c)
            if took:
                try:
                    run(took)
                finally:
                    for c in claims:
                        c.release()
                unmade = [i for i in took if missing(i)]
                if unmade:
                    raise RuntimeError(f"Store.share: the run did not store unit {unmade[0]} (missing keys {missing(unmade[0])})")
                mine += took
            pending = [i for i in pending if missing(i)]
            if pending and not took:
                owners = {(o.get("host"), o.get("pid")) for i in pending for k in missing(i)
                          if (o := self.claim_owner(k)) is not None}
                log.info("waiting for %d unit(s) claimed by %s", len(pending),
                         ", ".join(f"{h} pid {p}" for h, p in sorted(owners, key=str)) or "another process")
                wait = min(1.0, self.claim_ttl / 20) if poll is None else poll
                while not any(all(self.claim_owner(k) is None for k in missing(i)) for i in pending):
                    time.sleep(wait)
                pending = [i for i in pending if missing(i)]
        return mine


# ---------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m fci.store verify|repair DIR`: list (verify) or quarantine
    (repair) the corrupt and incomplete entries of the store under DIR."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m fci.store", description=main.__doc__)
    ap.add_argument("action", choices=["verify", "repair"], help="verify: list bad entries (exit 1 if any); "
                    "repair: move them to DIR/store/.quarantine/ and remove stale temporary folders")
    ap.add_argument("dir", metavar="DIR", help="the store root (the --data folder: entries live under DIR/store/)")
    args = ap.parse_args(argv)
    store = Store(args.dir)
    if not store.dir.is_dir():
        print(f"python -m fci.store: error: DIR: no store under {args.dir!r} (expected the folder {store.dir})",  # noqa: T201
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    bad = store.verify() if args.action == "verify" else store.repair()
    n = len(store.keys())
    for key, problem in bad.items():
        print(f"{key}: {problem}")  # noqa: T201
    q = store.quarantined()
    verb = "found" if args.action == "verify" else "quarantined or cleaned"
    print(f"{store.dir}: {n} entries, {len(bad)} bad ({verb}); {len(q)} in {store.dir / _QUARANTINE}")  # noqa: T201
    return 1 if bad and args.action == "verify" else 0


if __name__ == "__main__":
    raise SystemExit(main())
