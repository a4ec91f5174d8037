"""`Store`: a directory of immutable per-model entries that heals, shares and refuses.

    <root>/store/<key>/                      one entry (see `fci.store.entries`)
    <root>/store/.<key>.tmp-<random>-<owner> an entry being written
    <root>/store/.claims/<key>               who is making the entry now (see `fci.store.claims`)
    <root>/store/.quarantine/<key>.<time>/   what was found corrupt, unsealed and unverifiable, or odd

**Trust.** Only sealed entries are used: their three files match
`checksums.json`. An entry without it is *unsealed*; `heal` (which every run
calls on the keys it needs) and `repair` recompute what it records from what it
stores (`fci.store.recompute`) and seal it when they agree, or quarantine it
when they do not or cannot be recomputed; `load` refuses it meanwhile.

**Links and odd files.** Nothing inside the store is followed: a symbolic link,
file or loop where an entry, an entry's file, a claim or the claims or
quarantine folder should be is quarantined with a reason by the next run that
needs it and by `repair`. (The store folder itself may be a link.)

**Formats.** A file of a newer format than this fci reads is refused with
`FormatError` (one line naming the format and the writing release), never read,
never quarantined (see `fci.store.formats`).

**Writing.** An entry is written into a temporary folder named with its owner
and renamed into place whole, so no reader sees half of one, and merging shards
from several machines is copying directories. Files get the modes of the
process's umask, so a shared store works.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from fci.store import files
from fci.store.claims import CLAIMS, Claim, ClaimBook, abandoned, resolve_claim_ttl
from fci.store.entries import CHECKSUMS, FILES, StoreEntry, config_key, entry_files, read_entry, seal_bytes
from fci.store.errors import FormatError, NotRecomputable, StoreError, UnsealedError
from fci.store.formats import release
from fci.store.graceful import note_written
from fci.store.quarantine import QUARANTINE, move_aside, quarantine_dir
from fci.store.recompute import recomputable, recompute

__all__ = ["Store", "Survey"]

log = logging.getLogger("fci.store")

_SETTLED = 10.0  # seconds a dead writer's temporary file must be unchanged before a run removes it


def _signature(p: Path) -> tuple:
    """(name, size, mtime_ns, inode) of an entry's files, by lstat (None for an absent one)."""
    out: list[tuple] = []
    for n in (*FILES, CHECKSUMS):
        try:
            st = os.lstat(p / n)
            out.append((n, st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode))
        except OSError:
            out.append((n, None))
    return tuple(out)


def _what(kind: str) -> str:
    return {"link": "symbolic link", "file": "file", "dir": "folder"}.get(kind, "special file")


def _is_leftover(name: str) -> bool:
    """A temporary entry folder's name (this fci's, or an older one's)."""
    return name.startswith(".") and (".tmp-" in name or ".stale-" in name)


@dataclass
class Survey:
    """What `Store.survey` found.

    Attributes:
        problems: {name: (kind, what is wrong)}: entries ('corrupt', 'unsealed',
            'odd', 'disagrees' under deep), leftovers ('leftover'), claims
            ('claim-quarantine', 'claim-break', 'claim-remove' under `.claims/`)
            and odd store folders ('odd-folder'). `repair` clears each.
        newer: {key: message} entries of a newer format (refused, left alone).
        entries: how many entry folders there are.
        recomputed: entries whose measurements were recomputed (deep).
        not_recomputable: entries whose kind cannot be recomputed, per kind (deep).
    """

    problems: dict[str, tuple[str, str]] = field(default_factory=dict)
    newer: dict[str, str] = field(default_factory=dict)
    entries: int = 0
    recomputed: int = 0
    not_recomputable: dict[str, int] = field(default_factory=dict)


class Store:
    """A directory of immutable per-model entries under `<root>/store/`.

    `claim_ttl`: seconds without a heartbeat after which other processes take
    over this store's claims; None reads `$FCI_CLAIM_TTL` (default 300; see
    `fci.store.claims.resolve_claim_ttl`)."""

    def __init__(self, root: str | os.PathLike = "data", claim_ttl: float | None = None):
        self.root = Path(root)
        self.dir = self.root / "store"
        self.claim_ttl = resolve_claim_ttl(claim_ttl)
        self._claims = ClaimBook(self.dir / CLAIMS, self.claim_ttl, self._move_aside)
        self._intact: dict[str, tuple] = {}  # key -> file signature when last verified sealed and intact
        self._vouched: dict[str, tuple] = {}  # unsealed keys verified by recomputation but not sealable here (read-only)

    def __repr__(self) -> str:
        n = len(self.keys())
        return f"Store({str(self.root)!r}, {n} entr{'y' if n == 1 else 'ies'})"

    def path(self, key: str) -> Path:
        if not isinstance(key, str) or not key or key.startswith(".") or "/" in key or os.sep in key:
            raise ValueError(f"not a store key: {key!r}")
        return self.dir / key

    def _move_aside(self, src: Path, label: str, reason: str) -> Path | None:
        return move_aside(self.dir, src, label, reason)

    # ------------------------------------------------------------------ checking

    def _inspect(self, key: str) -> tuple[str, str] | None:
        """None when the entry is absent or sealed and intact; otherwise (kind,
        what is wrong naming the file), kind 'odd', 'unsealed' or 'corrupt'.
        A newer format raises FormatError."""
        p = self.path(key)
        kind = files.what_is(p)
        if kind == "absent":
            return None
        if kind != "dir":
            return "odd", f"store entry {key}: a {_what(kind)} stands where its folder {p} should be (the store never follows links)"
        sig = _signature(p)
        if self._intact.get(key) == sig or self._vouched.get(key) == sig:
            return None  # verified by this Store and unchanged since
        try:
            read_entry(p, key)
        except UnsealedError as e:
            return "unsealed", str(e)
        except FormatError:
            raise
        except StoreError as e:
            self._intact.pop(key, None)
            return "corrupt", str(e)
        self._intact[key] = sig
        return None

    def check(self, key: str) -> str | None:
        """None when the entry is absent or sealed and intact; otherwise what is
        wrong with it, naming the file (incomplete, unreadable, altered, unsealed,
        or something other than a folder). A newer format raises FormatError."""
        found = self._inspect(key)
        return None if found is None else found[1]

    def has(self, key: str) -> bool:
        """True when a sealed, intact entry exists. A newer format raises FormatError."""
        return files.what_is(self.path(key)) == "dir" and self._inspect(key) is None

    def load(self, key: str) -> StoreEntry:
        """Load one sealed entry (tensors lazily) after verifying it; StoreError
        naming what is missing, corrupt, unsealed or of a newer format."""
        p = self.path(key)
        kind = files.what_is(p)
        if kind == "absent":
            raise StoreError(f"no store entry {key!r} under {self.dir}")
        if kind != "dir":
            raise StoreError(f"store entry {key}: a {_what(kind)} stands where its folder {p} should be (the store never follows links)")
        try:
            return read_entry(p, key)
        except UnsealedError as e:
            if self._vouched.get(key) == _signature(p):
                parts = e.parts
                return StoreEntry(key=key, path=p, config=parts["config"], metrics=parts["metrics"], format=parts["format"],
                                  _tensors=parts["tensors"])
            raise UnsealedError(f"{e}; it is not used as is: `python -m fci.store repair {self.root}` re-verifies it by "
                                "recomputation and seals it, or moves it aside", e.parts) from None

    def load_or_none(self, key: str) -> StoreEntry | None:
        """The entry, or None when it is absent or was unusable (then it has been
        quarantined with one warning, and the caller makes it again); an unsealed
        entry is re-verified and sealed first (`heal`)."""
        self.heal([key])
        return self.load(key) if self.has(key) else None

    def heal(self, keys: Iterable[str]) -> list[str]:
        """Make `keys` safe to use before a run: seal each unsealed entry whose
        measurements recompute to what it records, and quarantine (one warning
        each) every corrupt, odd or unverifiable one; quarantine odd things where
        their claims should be, and remove temporary files of writers that have
        died on this host. Returns the keys moved aside. A newer-format entry
        raises FormatError (the run cannot use it and must not replace it)."""
        self._clear_abandoned()
        moved = []
        for key in keys:
            self._claims.heal(key)
            found = self._inspect(key)
            if found is None:
                continue
            kind, problem = found
            if kind == "unsealed":
                if not self._settle(key):
                    moved.append(key)
            elif self.quarantine(key, problem) is not None:
                moved.append(key)
        return moved

    def _settle(self, key: str) -> bool:
        """Re-verify the unsealed entry `key` by recomputation: seal it when what it
        records agrees with what it stores (True), else quarantine it (False)."""
        p = self.path(key)
        sig = _signature(p)
        try:
            read_entry(p, key)
            return True  # sealed meanwhile by another process
        except UnsealedError as e:
            parts = e.parts
        except FormatError:
            raise
        except StoreError as e:
            self.quarantine(key, str(e))
            return False
        entry = StoreEntry(key=key, path=p, config=parts["config"], metrics=parts["metrics"], format=parts["format"],
                           _tensors=parts["tensors"])
        try:
            wrong = recompute(entry)
        except NotRecomputable as e:
            self.quarantine(key, f"store entry {key} is not sealed (no checksums.json) and cannot be re-verified: {e}")
            return False
        if wrong:
            self.quarantine(key, f"store entry {key} is not sealed (no checksums.json), and what it records disagrees with "
                                 f"what it stores: {'; '.join(wrong)}")
            return False
        self._seal(key, parts["raw"], sig, entry.config.get("kind"))
        return True

    def _seal(self, key: str, raw: dict[str, bytes], sig: tuple, kind: Any) -> None:
        """Write checksums.json for the files `raw` (re-verified) into entry `key`,
        atomically (a full file linked into place); where the store cannot be
        written, the entry is vouched for in this process only."""
        p = self.path(key)
        body = seal_bytes(raw, sealed={"by": "recomputation", "kind": kind, "fci": release()})
        tmp = p / f".{CHECKSUMS}.tmp-{uuid.uuid4().hex[:8]}-{files.owner_tag()}"
        try:
            files.write_new(tmp, body)
            os.link(tmp, p / CHECKSUMS)
        except FileExistsError:
            pass  # sealed by another process at the same moment; the next read verifies it
        except PermissionError as e:
            self._vouched[key] = sig
            log.warning("store entry %s was re-verified by recomputation but cannot be sealed (%s); it is used in this "
                        "process only: run `python -m fci.store repair %s` as a user who can write the store",
                        key, e.strerror or e, self.root)
            return
        except OSError as e:
            if e.errno != errno.EROFS:
                raise
            self._vouched[key] = sig
            log.warning("store entry %s was re-verified by recomputation; the store is read-only, so it is not sealed", key)
            return
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        log.info("sealed store entry %s: it had no checksums, and what it records was recomputed from what it stores", key)

    def quarantine(self, key: str, reason: str, even_if_sealed: bool = False) -> Path | None:
        """Move what is at entry `key` into `.quarantine/` with a `reason.txt`,
        warning once; returns where it went (None when another process moved it
        first, or it turned out sealed and intact: an entry rewritten under the
        same key meanwhile is kept, unless `even_if_sealed`)."""
        unless = None if even_if_sealed else (lambda dest: self._sealed_at(dest, key))
        moved = move_aside(self.dir, self.path(key), key, reason, unless=unless)
        self._intact.pop(key, None)
        self._vouched.pop(key, None)
        if moved is not None:
            log.warning("quarantined store entry %s: %s; moved to %s (it will be made again)", key, reason, moved)
        return moved

    @staticmethod
    def _sealed_at(folder: Path, key: str) -> bool:
        try:
            read_entry(folder, key)
        except StoreError:
            return False
        return True

    # ------------------------------------------------------------------ the whole store

    def survey(self, deep: bool = False) -> Survey:
        """Look at everything in the store (see `Survey`); with `deep`, recompute
        the measurements of every sealed entry whose kind allows it and compare."""
        s = Survey()
        if not self.dir.is_dir():  # (the store folder itself may be a link)
            return s
        for d in sorted(os.scandir(self.dir), key=lambda d: d.name):
            name = d.name
            if not name.startswith("."):
                s.entries += d.is_dir(follow_symlinks=False)
                try:
                    found = self._inspect(name)
                except FormatError as e:
                    s.newer[name] = str(e)
                    continue
                if found is not None:
                    s.problems[name] = found
                elif deep:
                    self._deep(name, s)
            elif name in (CLAIMS, QUARANTINE):
                kind = files.what_is(Path(d.path))
                if kind != "dir":
                    s.problems[name] = ("odd-folder", f"a {_what(kind)} stands where the folder {d.path} should be")
            elif _is_leftover(name):
                why = abandoned(Path(d.path), self.claim_ttl)
                if why is not None:
                    s.problems[name] = ("leftover", f"temporary folder {d.path} {why}")
        for name, (action, why) in self._claims.survey().items():
            s.problems[f"{CLAIMS}/{name}"] = (f"claim-{action}", why)
        return s

    def _deep(self, key: str, s: Survey) -> None:
        entry = self.load(key)
        if not recomputable(entry):
            kind = str(entry.config.get("kind"))
            s.not_recomputable[kind] = s.not_recomputable.get(kind, 0) + 1
            return
        try:
            wrong = recompute(entry)
        except NotRecomputable as e:
            kind = str(entry.config.get("kind"))
            s.not_recomputable[kind] = s.not_recomputable.get(kind, 0) + 1
            log.info("store entry %s cannot be recomputed here: %s", key, e)
            return
        s.recomputed += 1
        if wrong:
            s.problems[key] = ("disagrees", f"store entry {key}: what it records disagrees with what it stores: {'; '.join(wrong)}")

    def verify(self, deep: bool = False) -> dict[str, str]:
        """Everything `repair` would clear: {name: what is wrong}. Entries (corrupt,
        unsealed, odd; with `deep`, sealed ones whose recomputed measurements
        disagree), temporary folders and claim files left by writers that are
        gone, stale or odd claims. Live work and newer-format entries are not
        listed (`survey().newer` has the latter)."""
        return {name: why for name, (_, why) in self.survey(deep).problems.items()}

    def repair(self, deep: bool = False, survey: Survey | None = None) -> dict[str, str]:
        """Clear everything `verify` reports: seal unsealed entries that recompute
        to what they record and quarantine the rest, quarantine corrupt and odd
        entries and odd claims, remove stale claims and abandoned temporary files
        (any age, once their owner is gone). Returns {name: what was wrong and what
        was done}. `survey`: what `survey(deep)` found just before (else it is looked at now)."""
        done: dict[str, str] = {}
        for name, (kind, why) in (survey or self.survey(deep)).problems.items():
            if kind == "unsealed":
                outcome = "sealed after recomputation" if self._settle(name) else "quarantined"
            elif kind in ("corrupt", "odd", "disagrees"):
                moved = self.quarantine(name, why, even_if_sealed=kind == "disagrees")
                outcome = "quarantined" if moved is not None else "left (moved or fixed meanwhile)"
            elif kind == "leftover":
                with contextlib.suppress(OSError):
                    files.remove(self.dir / name)
                outcome = "removed"
            elif kind == "odd-folder":
                if name == CLAIMS:
                    self._claims.fix_folder()
                else:
                    quarantine_dir(self.dir)
                outcome = "quarantined"
            else:  # claim-quarantine, claim-break, claim-remove
                action = kind.split("-", 1)[1]
                self._claims.clear(name.split("/", 1)[1], "remove" if action == "remove" else "break")
                outcome = {"remove": "removed", "break": "removed", "quarantine": "quarantined"}[action]
            done[name] = f"{why} ({outcome})"
        return done

    def _clear_abandoned(self) -> None:
        """Remove temporary entry folders and claim files whose owner on this host has
        died, once unchanged for `_SETTLED` seconds (a safety margin `repair` does
        without: a host name shared by two process namespaces would make a live
        writer look dead)."""
        if not self.dir.is_dir():
            return
        found = []
        with contextlib.suppress(OSError):
            found += [Path(d.path) for d in os.scandir(self.dir) if _is_leftover(d.name)]
        claims = self._claims.survey()
        found += [self._claims.folder / name for name, (action, _) in claims.items() if action == "remove"]
        now, n = time.time(), 0
        for p in found:
            owner = files.parse_owner(p.name)
            try:
                settled = now - os.lstat(p).st_mtime > _SETTLED
            except OSError:
                continue
            if owner and settled and files.owner_gone(*owner):
                with contextlib.suppress(OSError):
                    files.remove(p)
                    n += 1
        if n:
            log.info("removed %d temporary file(s) left in %s by writers that are gone", n, self.dir)

    def quarantined(self) -> list[Path]:
        """The folders in `.quarantine/`, oldest first."""
        q = self.dir / QUARANTINE
        return sorted(q.iterdir()) if files.what_is(q) == "dir" else []

    # ------------------------------------------------------------------ writing

    def save(self, config: dict[str, Any], metrics: dict[str, Any], tensors: dict[str, Any]) -> str:
        """Write one entry atomically; returns its key. A sealed existing entry is
        kept as is; anything else under the same key is quarantined first."""
        key = config_key(config)
        final = self.path(key)
        if self.has(key):
            return key
        raw = entry_files(key, config, metrics, tensors)
        self._make_dir()
        tmp = self.dir / f".{key}.tmp-{uuid.uuid4().hex[:8]}-{files.owner_tag()}"
        os.mkdir(tmp)
        try:
            for name in (*FILES, CHECKSUMS):
                files.write_new(tmp / name, raw[name])
            if self.has(key):  # another writer (a parallel shard) finished first
                return key
            if files.what_is(final) != "absent":  # anything else under the final name: moved aside, never deleted
                self.quarantine(key, self.check(key) or f"store entry {final} is incomplete")
            try:
                os.rename(tmp, final)
            except OSError:
                if not self.has(key):  # losing the rename is fine only if the winner's entry is intact
                    raise
            else:
                note_written(self.dir)
        finally:
            if files.what_is(tmp) != "absent":
                shutil.rmtree(tmp, ignore_errors=True)
        return key

    def _make_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"the store folder {self.dir} (or a folder above it) is a file, not a folder") from None

    def keys(self) -> list[str]:
        """The names of the entry folders (links and files are not entries)."""
        if not self.dir.is_dir():
            return []
        return sorted(d.name for d in os.scandir(self.dir) if not d.name.startswith(".") and d.is_dir(follow_symlinks=False))

    def entries(self, check_tensors: bool = False) -> Iterator[StoreEntry]:
        """Every usable entry; others (corrupt, unsealed, newer) are skipped with
        one logged warning naming the file."""
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
        """Remove entry `key` (a link there is removed, never followed)."""
        with contextlib.suppress(OSError):
            files.remove(self.path(key))
        self._intact.pop(key, None)

    # ------------------------------------------------------------------ claims

    @property
    def _held(self) -> dict[str, str]:
        return self._claims.held

    def claim_owner(self, key: str) -> dict[str, Any] | None:
        """The live claim on `key` ({host, pid, token, age_s, ...}), or None when
        the entry is unclaimed or its claim is stale."""
        return self._claims.owner(key)

    def try_claim(self, keys: str | Sequence[str]) -> Claim | None:
        """Claim every entry of `keys` (all or nothing); None when another live
        process holds any of them. Held claims are refreshed by a heartbeat
        thread until released."""
        return self._claims.try_claim(keys)

    @contextlib.contextmanager
    def claim(self, keys: str | Sequence[str]) -> Iterator[Claim | None]:
        """`with store.claim(key) as c:` c is the claim (released on exit), or
        None when another live process is working on the entry."""
        with self._claims.claim(keys) as c:
            yield c

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
        others, wait until one is stored or its claim goes stale. Returns the
        indices this process ran."""
        def missing(i: int) -> list[str]:
            return [k for k in groups[i] if not self.has(k)]

        pending = [i for i in range(len(groups)) if missing(i)]
        batch = max(1, -(-len(pending) // 4)) if batch is None else max(1, int(batch))
        mine: list[int] = []
        while pending:
            took: list[int] = []
            claims: list[Claim] = []
            try:
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
                    claims.append(c)
                    if not missing(i):  # finished by its owner between our look and the claim
                        continue
                    took.append(i)
                if took:
                    run(took)
            finally:
                for c in claims:
                    c.release()
            if took:
                unmade = [i for i in took if missing(i)]
                if unmade:
                    raise RuntimeError(f"Store.share: the run did not store unit {unmade[0]} (missing keys {missing(unmade[0])})")
                mine += took
            pending = [i for i in pending if missing(i)]
            if pending and not took:
                owners = {f"{o['host']} pid {o.get('pid')}" if o.get("host") else "an unreadable claim (stale in a few seconds)"
                          for i in pending for k in missing(i) if (o := self.claim_owner(k)) is not None}
                log.info("waiting for %d unit(s) claimed by %s", len(pending), ", ".join(sorted(owners)) or "another process")
                wait = min(1.0, self.claim_ttl / 20) if poll is None else poll
                while not any(all(self.claim_owner(k) is None for k in missing(i)) for i in pending):
                    time.sleep(wait)
                pending = [i for i in pending if missing(i)]
        return mine
