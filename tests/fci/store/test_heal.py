"""The store heals and shares: checksums, quarantine, verify/repair, permissions, claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from fci.store import Store, StoreError, UnsealedError, config_key
from fci.store.entries import FILES
from fci.store.files import HOST


def _entry(store: Store, i: int = 0) -> str:
    return store.save({"unit": i}, {"acc": 0.5 + i / 100}, {"w": torch.arange(6, dtype=torch.float32) + i})


# --------------------------------------------------------------------------- checksums


def test_an_entry_records_checksums_and_load_verifies_them(tmp_path):
    store = Store(tmp_path)
    key = _entry(store)
    sums = json.loads((store.path(key) / "checksums.json").read_text())
    assert set(sums["files"]) == {"config.json", "metrics.json", "weights.safetensors"}
    assert sums["writer"]["pid"] == os.getpid()
    assert store.load(key).verified and store.has(key)
    w = store.path(key) / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0x01  # one flipped bit in a tensor value: the file still parses, the checksum does not match
    w.write_bytes(bytes(raw))
    assert not store.has(key)
    with pytest.raises(StoreError, match=r"weights\.safetensors fails its checksum"):
        store.load(key)


def test_an_entry_without_checksums_is_never_used_as_is(tmp_path):
    """An entry from before checksums (or whose checksums.json was deleted) is
    unsealed: nothing vouches for it, so it is refused until re-verified."""
    store = Store(tmp_path)
    key = _entry(store)
    (store.path(key) / "checksums.json").unlink()
    with pytest.raises(UnsealedError, match="not sealed.*checksums.json is missing.*repair"):
        store.load(key)
    assert not store.has(key)
    assert "not sealed" in store.verify()[key]
    assert list(store.entries()) == []
    w = store.path(key) / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:40])  # without a checksum, a truncation is still caught by parsing
    assert "could not be read as safetensors" in store.verify()[key]


CORRUPTIONS = {
    "garbage JSON": lambda p: (p / "metrics.json").write_text("{garbage"),
    "truncated weights": lambda p: (p / "weights.safetensors").write_bytes((p / "weights.safetensors").read_bytes()[:30]),
    "missing config": lambda p: (p / "config.json").unlink(),
    "wrong checksum": lambda p: (p / "checksums.json").write_text(
        json.dumps({"files": {n: {"sha256": "0" * 64, "bytes": 1} for n in FILES}})),
}
NAMED = {"garbage JSON": "metrics.json", "truncated weights": "weights.safetensors", "missing config": "config.json",
         "wrong checksum": "fails its checksum"}


def test_verify_lists_and_repair_quarantines_only_the_bad_entries(tmp_path, caplog):
    store = Store(tmp_path)
    keys = [_entry(store, i) for i in range(len(CORRUPTIONS) + 1)]
    for key, (what, corrupt) in zip(keys, CORRUPTIONS.items()):
        corrupt(store.path(key))
    bad = store.verify()
    assert set(bad) == set(keys[:-1])
    for key, what in zip(keys, CORRUPTIONS):
        assert NAMED[what] in bad[key] and key in bad[key]
    with caplog.at_level("WARNING", logger="fci.store"):
        store.repair()
    assert store.keys() == [keys[-1]] and store.verify() == {}
    assert store.load(keys[-1]).metrics["acc"] == pytest.approx(0.5 + len(CORRUPTIONS) / 100)  # the intact one is untouched
    moved = store.quarantined()
    assert sorted(p.name.split(".")[0] for p in moved) == sorted(keys[:-1])
    assert all((p / "reason.txt").is_file() for p in moved)
    warned = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(warned) == len(CORRUPTIONS)  # one warning per entry
    assert all(any(k in w for w in warned) for k in keys[:-1])


def test_the_command_verifies_and_repairs(tmp_path):
    store = Store(tmp_path)
    good, bad = _entry(store, 0), _entry(store, 1)
    CORRUPTIONS["garbage JSON"](store.path(bad))
    run = lambda action: subprocess.run([sys.executable, "-m", "fci.store", action, str(tmp_path)],  # noqa: E731
                                        capture_output=True, text=True, timeout=120)
    r = run("verify")
    assert r.returncode == 1 and bad in r.stdout and "metrics.json" in r.stdout and good not in r.stdout
    assert store.keys() == sorted([good, bad])  # verify changes nothing
    r = run("repair")
    assert r.returncode == 0 and bad in r.stdout
    assert store.keys() == [good] and len(store.quarantined()) == 1
    assert run("verify").returncode == 0
    r = subprocess.run([sys.executable, "-m", "fci.store", "verify", str(tmp_path / "nowhere")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "DIR" in r.stderr and "Traceback" not in r.stderr


def test_load_or_none_quarantines_and_save_replaces_a_corrupt_entry(tmp_path, caplog):
    store = Store(tmp_path)
    key = _entry(store)
    CORRUPTIONS["truncated weights"](store.path(key))
    with caplog.at_level("WARNING", logger="fci.store"):
        assert store.load_or_none(key) is None
        assert store.load_or_none(key) is None  # now simply absent: no second warning
    assert len([r for r in caplog.records if key in r.getMessage()]) == 1
    assert _entry(store) == key and store.has(key)


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("umask, dmode, fmode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640), (0o077, 0o700, 0o600)])
def test_entries_honour_the_umask(tmp_path, umask, dmode, fmode):
    old = os.umask(umask)
    try:
        store = Store(tmp_path)
        key = _entry(store)
    finally:
        os.umask(old)
    p = store.path(key)
    assert p.stat().st_mode & 0o777 == dmode
    for f in p.iterdir():
        assert f.stat().st_mode & 0o777 == fmode, f.name


# --------------------------------------------------------------------------- claims


def test_a_claim_is_exclusive_until_released(tmp_path):
    a, b = Store(tmp_path), Store(tmp_path)
    c = a.try_claim(["k1", "k2"])
    assert c is not None
    assert b.try_claim("k2") is None and b.try_claim(["k0", "k1"]) is None
    assert b.claim_owner("k0") is None  # all or nothing: the failed claim left nothing behind
    owner = b.claim_owner("k1")
    assert owner["pid"] == os.getpid() and owner["token"] == c.token
    c.release()
    with b.claim("k1") as again:
        assert again is not None and a.try_claim("k1") is None
    assert a.claim_owner("k1") is None


def _write_claim(store: Store, key: str, host: str, pid: int, age: float) -> None:
    p = store.dir / ".claims" / key
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"host": host, "pid": pid, "token": "theirs"}))
    t = time.time() - age
    os.utime(p, (t, t))


def test_an_expired_claim_is_taken_over_and_a_live_one_is_not(tmp_path):
    store = Store(tmp_path, claim_ttl=60)
    _write_claim(store, "fresh", "another-host", 12345, age=5)
    _write_claim(store, "old", "another-host", 12345, age=61)
    assert store.try_claim("fresh") is None
    c = store.try_claim("old")
    assert c is not None and store.claim_owner("old")["token"] == c.token
    c.release()


def test_a_claim_whose_owner_died_on_this_host_is_taken_over_at_once(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = Store(tmp_path, claim_ttl=3600)
    _write_claim(store, "k", HOST, dead.pid, age=0)
    assert store.claim_owner("k") is None
    assert store.try_claim("k") is not None


def test_the_heartbeat_keeps_a_long_claim_alive(tmp_path):
    a, b = Store(tmp_path, claim_ttl=1.0), Store(tmp_path, claim_ttl=1.0)
    _write_claim(a, "k", "another-host", 1, age=0)  # a foreign claim to prove expiry works here...
    c = None
    time.sleep(1.3)
    assert a.claim_owner("k") is None  # ...it expired without a heartbeat
    c = a.try_claim("k")
    time.sleep(2.5)  # well past the ttl: the heartbeat (every 0.1 s) keeps ours fresh
    assert b.try_claim("k") is None and b.claim_owner("k")["token"] == c.token
    c.release()


def test_share_splits_the_units_and_runs_each_once(tmp_path):
    """Two workers (separate Store objects, as two processes would be) on one store."""
    runs: dict[str, list[int]] = {"A": [], "B": []}
    b_started = threading.Event()
    groups = [[config_key({"unit": i})] for i in range(8)]

    def worker(name: str):
        store = Store(tmp_path)

        def run(idx):
            if name == "B":
                b_started.set()
            else:
                b_started.wait(30)  # A's first batch lasts until B has claimed some work
            for i in idx:
                runs[name].append(i)
                _entry(store, i)

        return store.share(groups, run, batch=2)

    threads = [threading.Thread(target=worker, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(runs["A"] + runs["B"]) == list(range(8))  # each unit exactly once
    assert runs["A"] and runs["B"]
    assert len(Store(tmp_path).keys()) == 8


def test_share_waits_for_the_owner_and_takes_over_after_a_crash(tmp_path):
    a, b = Store(tmp_path, claim_ttl=60), Store(tmp_path, claim_ttl=60)
    key0, key1 = config_key({"unit": 0}), config_key({"unit": 1})
    held = a.try_claim(key0)

    def finish():
        time.sleep(0.5)
        _entry(a, 0)
        held.release()

    threading.Thread(target=finish).start()
    ran = []
    assert b.share([[key0]], lambda idx: ran.extend(idx)) == []  # waited, then found it stored
    assert ran == [] and b.has(key0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_claim(b, key1, HOST, dead.pid, age=0)  # a crashed owner on this machine
    assert b.share([[key1]], lambda idx: [_entry(b, 1) for _ in idx]) == [0]
    with pytest.raises(RuntimeError, match="did not store"):
        b.share([[config_key({"unit": 2})]], lambda idx: None)


def test_run_fpe_retrains_a_corrupt_entry_with_one_warning(tmp_path, caplog):
    from fci.train import entry_configs, run_fpe
    from tests.helpers import tiny_spec

    store = Store(tmp_path)
    spec = tiny_spec()
    (first,) = run_fpe([spec], device="cpu", store=store)
    key = config_key(entry_configs(spec)[("random", 2)])
    CORRUPTIONS["garbage JSON"](store.path(key))
    with caplog.at_level("WARNING", logger="fci.store"):
        (again,) = run_fpe([spec], device="cpu", store=store)
    assert len([r for r in caplog.records if key in r.getMessage()]) == 1
    assert store.has(key) and len(store.quarantined()) == 1
    assert again.children[("random", 2)].test_accuracy == first.children[("random", 2)].test_accuracy


def test_repair_leaves_verify_clean_whatever_it_found(tmp_path):
    """Every fault at once: corrupt, unsealed (good and edited), linked and misplaced
    entries, stale, unreadable, dead and linked claims, abandoned temporary folders."""
    import shutil

    from fci.store.claims import GRACE
    from fci.train import entry_configs, run_fpe
    from tests.helpers import tiny_spec

    store = Store(tmp_path)
    spec = tiny_spec()
    run_fpe([spec], device="cpu", store=store)
    fpe = [config_key(c) for c in entry_configs(spec).values()]
    for key in fpe[:2]:
        (store.path(key) / "checksums.json").unlink()
    m = json.loads((store.path(fpe[1]) / "metrics.json").read_text())
    m["test_loss"] += 0.5
    (store.path(fpe[1]) / "metrics.json").write_text(json.dumps(m))
    shutil.rmtree(store.path(fpe[2]))
    os.symlink(fpe[2], store.path(fpe[2]))  # a loop
    keys = [_entry(store, i) for i in range(len(CORRUPTIONS))]
    for key, corrupt in zip(keys, CORRUPTIONS.values()):
        corrupt(store.path(key))
    (store.dir / config_key({"unit": 99})).write_text("a file")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_claim(store, "dead", HOST, dead.pid, age=0)
    _write_claim(store, "expired", "another-host", 1, age=10 * store.claim_ttl)
    (store.dir / ".claims" / "garbled").write_text("")
    t = time.time() - GRACE - 1
    os.utime(store.dir / ".claims" / "garbled", (t, t))
    os.symlink("loop", store.dir / ".claims" / "loop")
    (store.dir / f".{config_key({'unit': 98})}.tmp-abcd1234-{dead.pid}.1@{HOST}").mkdir()

    assert len(store.verify()) == 3 + len(CORRUPTIONS) + 1 + 4 + 1
    store.repair()
    assert store.verify() == {} and store.verify(deep=True) == {}
    assert store.keys() == [fpe[0]]  # the good unsealed entry was sealed; the rest moved aside
