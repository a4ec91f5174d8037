"""Links and odd files are not entries or claims: never followed, quarantined with
a reason by the next run and by `repair`, and never a crash."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from fci.store import Store, config_key
from fci.train import entry_configs, run_fpe
from tests.helpers import tiny_spec


def _loop(p) -> None:
    """A symbolic link to itself at `p` (resolving it fails with ELOOP)."""
    os.symlink(p.name, p)


def test_a_symlink_loop_at_an_entry_heals_on_the_next_run(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec()
    (first,) = run_fpe([spec], device="cpu", store=store)
    key = config_key(entry_configs(spec)[("clause", 2)])
    shutil.rmtree(store.path(key))
    _loop(store.path(key))
    assert key not in store.keys() and not store.has(key)  # listing and checking do not crash
    (again,) = run_fpe([spec], device="cpu", store=Store(tmp_path))
    assert again.children[("clause", 2)].test_accuracy == first.children[("clause", 2)].test_accuracy
    (moved,) = store.quarantined()
    assert os.path.islink(moved / key) and "symbolic link" in (moved / "reason.txt").read_text()
    assert store.has(key) and store.verify() == {}


def test_a_symlink_loop_at_a_claim_heals_on_the_next_run(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec()
    key = config_key(entry_configs(spec)[("dense", 1)])
    (store.dir / ".claims").mkdir(parents=True)
    _loop(store.dir / ".claims" / key)
    assert store.claim_owner(key) is None
    run_fpe([spec], device="cpu", store=store)
    assert store.has(key) and store.verify() == {}
    (moved,) = store.quarantined()
    assert "where the claim on store entry" in (moved / "reason.txt").read_text()
    assert not [p for p in (store.dir / ".claims").iterdir()]


def _sealed_elsewhere(tmp_path):
    other = Store(tmp_path / "elsewhere")
    key = other.save({"unit": 0}, {"acc": 0.5}, {"w": torch.ones(2)})
    return other, key


ODD = {
    "loop at an entry": lambda s, tmp: _loop(s.dir / config_key({"unit": 9})),
    "link to an entry outside the store": lambda s, tmp: os.symlink(_sealed_elsewhere(tmp)[0].path(config_key({"unit": 0})),
                                                                    s.dir / config_key({"unit": 0})),
    "file at an entry": lambda s, tmp: (s.dir / config_key({"unit": 8})).write_text("not a folder"),
    "entry file linked": lambda s, tmp: _link_a_file(s),
    "loop at a claim": lambda s, tmp: _loop(s.dir / ".claims" / "k1"),
    "folder at a claim": lambda s, tmp: (s.dir / ".claims" / "k2").mkdir(),
    "claims folder is a link": lambda s, tmp: (shutil.rmtree(s.dir / ".claims"),
                                               os.symlink(_outside(tmp), s.dir / ".claims")),
    "quarantine folder is a file": lambda s, tmp: (s.dir / ".quarantine").write_text("x"),
}


def _outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir(exist_ok=True)
    (d / "precious").write_text("keep me")
    return d


def _link_a_file(s: Store) -> None:
    key = s.save({"unit": 7}, {"acc": 0.1}, {"w": torch.zeros(1)})
    cfg = s.path(key) / "config.json"
    copy = s.root / "config-copy.json"
    shutil.copy(cfg, copy)
    cfg.unlink()
    os.symlink(copy, cfg)  # the same bytes, through a link: still not read


@pytest.mark.parametrize("what", ODD)
def test_repair_quarantines_what_is_not_an_entry_or_a_claim(tmp_path, what):
    store = Store(tmp_path / "data")
    good = store.save({"unit": 1}, {"acc": 0.9}, {"w": torch.ones(3)})
    (store.dir / ".claims").mkdir()
    ODD[what](store, tmp_path)
    assert store.keys() == sorted({good} | ({config_key({"unit": 7})} if what == "entry file linked" else set()))
    bad = store.verify()
    assert len(bad) == 1, bad
    store.repair()
    assert store.verify() == {}
    assert store.has(good) and store.load(good).metrics == {"acc": 0.9}
    moved = store.quarantined()
    assert moved and all((q / "reason.txt").is_file() for q in moved)
    if (tmp_path / "outside").exists():  # nothing outside the store was touched
        assert [p.name for p in (tmp_path / "outside").iterdir()] == ["precious"]
    if (tmp_path / "elsewhere").exists():
        assert Store(tmp_path / "elsewhere").verify() == {} and len(Store(tmp_path / "elsewhere").keys()) == 1
