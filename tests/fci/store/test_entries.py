"""Entries are trusted only when sealed: unsealed ones are re-verified by
recomputation or quarantined, never used as is; formats are declared and checked."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import torch
from safetensors.torch import save

from fci.store import FORMAT_VERSION, FormatError, Store, config_key
from fci.store.entries import FILES
from fci.train import entry_configs, run_fpe
from tests.helpers import tiny_spec


def _trial(tmp_path):
    store = Store(tmp_path)
    spec = tiny_spec()
    (res,) = run_fpe([spec], device="cpu", store=store)
    keys = {cond: config_key(cfg) for cond, cfg in entry_configs(spec).items()}
    return store, spec, res, keys


def _flip_high_byte(path, tensor: str, index: int) -> None:
    """XOR the most significant byte of float32 element `index` of `tensor` in a
    safetensors file with 0x01: its exponent changes, the value is scaled by 4 or 1/4."""
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    start = json.loads(raw[8 : 8 + n])[tensor]["data_offsets"][0]
    raw[8 + n + start + 4 * index + 3] ^= 0x01
    path.write_bytes(bytes(raw))


def _reseal(p) -> None:
    """Rewrite checksums.json to match the files as they are now (a forged seal)."""
    sums = json.loads((p / "checksums.json").read_text())
    for name in FILES:
        b = (p / name).read_bytes()
        sums["files"][name] = {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
    (p / "checksums.json").write_text(json.dumps(sums))


# --------------------------------------------------------------------------- unsealed entries


def test_an_unsealed_entry_with_one_weight_byte_flipped_is_made_again_not_used(tmp_path, caplog):
    store, spec, first, keys = _trial(tmp_path)
    key = keys[("clause", 2)]
    p = store.path(key)
    (p / "checksums.json").unlink()
    w = first.children[("clause", 2)].model
    eff = (w.weights[0] * w.weight_mask(0)).abs().flatten()
    _flip_high_byte(p / "weights.safetensors", "W0", int(eff.argmax()))  # the largest live first-layer weight
    assert "not sealed" in store.verify()[key]
    with caplog.at_level("WARNING", logger="fci.store"):
        (again,) = run_fpe([spec], device="cpu", store=Store(tmp_path))
    child, ref = again.children[("clause", 2)], first.children[("clause", 2)]
    assert (child.test_accuracy, child.test_loss) == (ref.test_accuracy, ref.test_loss)  # made again, not read as is
    (moved,) = store.quarantined()
    reason = (moved / "reason.txt").read_text()
    assert moved.name.startswith(key) and "not sealed" in reason and "recomputed" in reason
    assert len([r for r in caplog.records if key in r.getMessage()]) == 1
    assert store.verify() == {} and store.has(key)


def test_an_unsealed_entry_with_an_edited_test_accuracy_changes_no_result(tmp_path):
    store, spec, first, keys = _trial(tmp_path)
    key = keys[("random", 2)]
    p = store.path(key)
    (p / "checksums.json").unlink()
    m = json.loads((p / "metrics.json").read_text())
    m["test_accuracy"] = round(m["test_accuracy"] + 1 / 64, 6)
    (p / "metrics.json").write_text(json.dumps(m))
    (again,) = run_fpe([spec], device="cpu", store=Store(tmp_path))
    assert again.children[("random", 2)].test_accuracy == first.children[("random", 2)].test_accuracy
    (moved,) = store.quarantined()
    assert "test_accuracy recorded" in (moved / "reason.txt").read_text()
    assert json.loads((p / "metrics.json").read_text())["test_accuracy"] == first.children[("random", 2)].test_accuracy


def test_untouched_unsealed_entries_are_sealed_by_recomputation_without_training(tmp_path, monkeypatch):
    store, spec, first, keys = _trial(tmp_path)
    for key in keys.values():
        (store.path(key) / "checksums.json").unlink()
    assert set(store.verify()) == set(keys.values())
    import fci.train.schedule as schedule

    monkeypatch.setattr(schedule, "_run_chunk", lambda *a, **k: pytest.fail("retrained an entry that recomputes"))
    (again,) = run_fpe([spec], device="cpu", store=Store(tmp_path))
    assert again.dense.test_loss == first.dense.test_loss
    for key in keys.values():
        sums = json.loads((store.path(key) / "checksums.json").read_text())
        assert sums["sealed"]["by"] == "recomputation" and sums["format"] == FORMAT_VERSION
    assert store.verify() == {} and not store.quarantined()


def test_an_unsealed_entry_that_cannot_be_recomputed_is_quarantined(tmp_path):
    store = Store(tmp_path)
    key = store.save({"kind": "some-study-job", "job": 1}, {"rows": [{"x": 1}]}, {"w": torch.ones(2)})
    (store.path(key) / "checksums.json").unlink()
    done = store.repair()
    assert "quarantined" in done[key] and not store.keys()
    (moved,) = store.quarantined()
    assert "cannot be re-verified" in (moved / "reason.txt").read_text()
    assert store.verify() == {}


def test_repair_from_the_command_line_seals_and_quarantines(tmp_path, capsys):
    from fci.store.cli import main

    store, spec, first, keys = _trial(tmp_path)
    for key in keys.values():
        (store.path(key) / "checksums.json").unlink()
    m = json.loads((store.path(keys[("dense", 1)]) / "metrics.json").read_text())
    m["test_loss"] *= 1.01
    (store.path(keys[("dense", 1)]) / "metrics.json").write_text(json.dumps(m))
    assert main(["verify", str(tmp_path)]) == 1
    assert main(["repair", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("sealed after recomputation") == 2 and out.count("(quarantined)") == 1
    assert main(["verify", str(tmp_path)]) == 0
    assert store.keys() == sorted([keys[("clause", 2)], keys[("random", 2)]])


# --------------------------------------------------------------------------- keys and folders


def test_a_sealed_entry_under_another_key_is_not_served(tmp_path):
    store = Store(tmp_path)
    a = store.save({"unit": 0}, {"acc": 0.5}, {"w": torch.zeros(2)})
    b = config_key({"unit": 1})
    import shutil

    shutil.copytree(store.path(a), store.path(b))  # a valid seal, in the wrong folder
    assert not store.has(b) and f"names key '{a}'" in store.check(b)
    assert store.heal([b]) == [b]


# --------------------------------------------------------------------------- formats


def test_every_file_of_a_new_entry_declares_the_format(tmp_path):
    store = Store(tmp_path)
    key = store.save({"unit": 0}, {"acc": 0.5}, {"w": torch.zeros(2)})
    p = store.path(key)
    for name in ("config.json", "metrics.json", "checksums.json"):
        assert json.loads((p / name).read_text())["format"] == FORMAT_VERSION
    raw = (p / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8 : 8 + n])["__metadata__"] == {"format": str(FORMAT_VERSION)}
    entry = store.load(key)
    assert entry.metrics == {"acc": 0.5} and entry.format == FORMAT_VERSION  # the store's own field is not the caller's


def test_a_format_1_entry_loads_through_the_migration(tmp_path):
    """Format 1 as it was written: format in config.json and checksums.json only."""
    store = Store(tmp_path)
    config, metrics = {"unit": 3, "note": "old"}, {"acc": 0.25}
    key = config_key(config)
    p = store.path(key)
    p.mkdir(parents=True)
    raw = {"config.json": json.dumps({"format": 1, "key": key, **config}).encode(),
           "metrics.json": json.dumps(metrics).encode(),
           "weights.safetensors": save({"w": torch.arange(3.0)})}
    for name, b in raw.items():
        (p / name).write_bytes(b)
    (p / "checksums.json").write_text(json.dumps({
        "format": 1, "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in raw.items()},
        "writer": {"host": "old-host", "pid": 1}}))
    entry = store.load(key)
    assert entry.format == 1 and entry.metrics == metrics and entry.config["note"] == "old"
    assert torch.equal(entry.tensors["w"], torch.arange(3.0))
    assert store.verify() == {}


NEWER = {
    "checksums.json format 7, unknown fields": ("checksums.json", 7),
    "config.json format 99": ("config.json", 99),
    "metrics.json format 3": ("metrics.json", 3),
}


@pytest.mark.parametrize("what", NEWER)
def test_a_newer_format_is_refused_in_one_line_and_left_alone(tmp_path, what, capsys):
    from fci.__main__ import main

    args = ["--clauses", "3", "--hidden", "4", "--alpha", "2", "--trials", "1", "--warmup", "2", "--finetune", "2",
            "--train-samples", "128", "--test-samples", "64", "--device", "cpu", "--data", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    store = Store(tmp_path)
    key = store.keys()[0]
    p = store.path(key)
    name, fmt = NEWER[what]
    doc = json.loads((p / name).read_text())
    doc.update({"format": fmt, "a_field_from_the_future": [1, 2]})
    (p / name).write_text(json.dumps(doc))
    if name != "checksums.json":
        _reseal(p)
    sums = json.loads((p / "checksums.json").read_text())
    sums["writer"]["fci"] = "9.1.0"
    (p / "checksums.json").write_text(json.dumps(sums))

    with pytest.raises(FormatError) as e:
        store.load(key)
    assert f"format {fmt}" in str(e.value) and "fci 9.1.0" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FormatError):
        store.has(key)
    survey = store.survey()
    assert key in survey.newer and key not in survey.problems
    store.repair()
    assert key in store.keys() and not store.quarantined()  # refused, never moved or rewritten
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 1 and "\n" not in err and "Traceback" not in err
    assert err.startswith("python -m fci: error: ") and f"format {fmt}" in err and "fci 9.1.0" in err
