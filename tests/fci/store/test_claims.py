"""Claims that cannot stall: written whole, stale when unreadable, dead or
expired, cleared by `repair` with the temporary files of writers that are gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from fci.store import SettingError, Store, config_key, resolve_claim_ttl
from fci.store.claims import GRACE
from fci.store.files import HOST, owner_tag, process_start


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _claim_file(store: Store, key: str, body: bytes | dict, age: float = 0.0):
    p = store.dir / ".claims" / key
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_a_reader_never_sees_a_claim_without_its_owner(tmp_path, monkeypatch):
    """While one thread claims and releases an entry over and over through a slow
    disk (each file written in two halves, 2 ms apart), every read of the claim
    finds it absent or holding its owner, never empty or half-written."""
    import fci.store.files as files

    def slow_write(path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, data[: len(data) // 2])
            time.sleep(0.002)
            os.write(fd, data[len(data) // 2 :])
        finally:
            os.close(fd)

    monkeypatch.setattr(files, "write_new", slow_write)
    writer, reader = Store(tmp_path), Store(tmp_path)
    done = threading.Event()
    errors: list[BaseException] = []

    def churn():
        try:
            for _ in range(100):
                c = writer.try_claim("k")
                assert c is not None
                time.sleep(0.001)  # held a moment, so the reader sees whole claims too
                c.release()
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            done.set()

    seen = 0
    p = reader.dir / ".claims" / "k"
    t = threading.Thread(target=churn)
    t.start()
    while not done.is_set():
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            continue
        info = json.loads(raw)
        assert {"host", "pid", "token", "format"} <= set(info)
        seen += 1
    t.join()
    assert not errors and seen > 0


@pytest.mark.parametrize("body", [b"", b"\x00\x01garbage{"], ids=["empty", "garbage"])
def test_an_unreadable_claim_is_stale_after_a_few_seconds(tmp_path, body):
    store = Store(tmp_path, claim_ttl=3600)
    _claim_file(store, "k", body, age=0)
    assert store.claim_owner("k")["unreadable"]  # being written right now, perhaps: live for a moment
    assert store.try_claim("k") is None
    _claim_file(store, "k", body, age=GRACE + 1)
    assert store.claim_owner("k") is None
    c = store.try_claim("k")
    assert c is not None and store.claim_owner("k")["token"] == c.token
    c.release()


def test_an_empty_claim_does_not_stall_a_run(tmp_path):
    """A run that finds an empty claim on work it needs goes on after the grace, not after the expiry (an hour here)."""
    store = Store(tmp_path, claim_ttl=3600)
    key = config_key({"unit": 0})
    _claim_file(store, key, b"", age=0)
    ran: list[int] = []
    worker = threading.Thread(target=lambda: ran.extend(store.share(
        [[key]], lambda idx: [store.save({"unit": 0}, {}, {"w": torch.ones(1)}) for _ in idx])))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive() and ran == [0] and store.has(key)


def test_a_claim_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path):
    store = Store(tmp_path, claim_ttl=3600)
    me = os.getpid()
    start = process_start(me)
    if start is None:
        pytest.skip("process start times need /proc")
    _claim_file(store, "reused", {"host": HOST, "pid": me, "start": start + 1, "token": "old"})
    _claim_file(store, "mine", {"host": HOST, "pid": me, "start": start, "token": "live"})
    assert store.claim_owner("reused") is None
    assert store.claim_owner("mine")["token"] == "live"


def test_a_short_expiry_does_not_break_a_healthy_claim_made_with_a_longer_one(tmp_path):
    store = Store(tmp_path, claim_ttl=1)
    _claim_file(store, "k", {"host": "another-host", "pid": 1, "token": "t", "ttl_s": 300}, age=10)
    assert store.claim_owner("k") is not None  # its owner beats every 30 s: 10 s without one is healthy
    _claim_file(store, "k", {"host": "another-host", "pid": 1, "token": "t", "ttl_s": 300}, age=61)
    assert store.claim_owner("k") is None


def test_repair_clears_stale_claims_and_temporary_files_of_any_age_whose_owner_is_gone(tmp_path):
    store = Store(tmp_path, claim_ttl=3600)
    good = store.save({"unit": 0}, {"acc": 1.0}, {"w": torch.ones(1)})
    dead = _dead_pid()
    dead_tag = f"{dead}.1@{HOST}"
    leftovers = [store.dir / f".{config_key({'unit': 1})}.tmp-abcd1234-{dead_tag}",  # an entry being written
                 store.dir / f".{config_key({'unit': 2})}.tmp-old"]  # an older fci's, long abandoned
    for d in leftovers:
        d.mkdir()
        (d / "config.json").write_text("{")
    old = time.time() - 7200
    os.utime(leftovers[1], (old, old))
    _claim_file(store, "dead", {"host": HOST, "pid": dead, "token": "x"})
    _claim_file(store, f".k.claim-abcd1234-{dead_tag}", b'{"host"')
    _claim_file(store, f".k.reap-abcd1234-{dead_tag}", b"{}")
    mine = store.try_claim("mine")  # live work: left alone
    live_tmp = store.dir / f".{config_key({'unit': 3})}.tmp-abcd1234-{owner_tag()}"
    live_tmp.mkdir()

    bad = store.verify()
    assert set(bad) == {p.name for p in leftovers} | {".claims/dead", f".claims/.k.claim-abcd1234-{dead_tag}",
                                                      f".claims/.k.reap-abcd1234-{dead_tag}"}
    store.repair()
    assert store.verify() == {}
    assert store.keys() == [good] and live_tmp.is_dir() and store.claim_owner("mine")["token"] == mine.token
    assert sorted(p.name for p in (store.dir / ".claims").iterdir()) == ["mine"]
    mine.release()


def test_a_run_removes_the_temporary_folders_of_writers_that_died_here(tmp_path, caplog):
    store = Store(tmp_path)
    d = store.dir / f".{config_key({'unit': 1})}.tmp-abcd1234-{_dead_pid()}.1@{HOST}"
    d.mkdir(parents=True)
    store.heal([config_key({"unit": 1})])
    assert d.exists()  # just made: left for a few seconds, in case the host name is shared by another pid namespace
    t = time.time() - 60
    os.utime(d, (t, t))
    with caplog.at_level("INFO", logger="fci.store"):
        store.heal([config_key({"unit": 1})])
    assert not d.exists() and any("left in" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- the expiry setting


def test_the_expiry_comes_from_the_argument_then_the_variable_then_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("FCI_CLAIM_TTL", raising=False)
    assert Store(tmp_path).claim_ttl == 300
    monkeypatch.setenv("FCI_CLAIM_TTL", "2.5")
    assert Store(tmp_path).claim_ttl == 2.5 and resolve_claim_ttl() == 2.5
    assert Store(tmp_path, claim_ttl=7).claim_ttl == 7
    for bad in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("FCI_CLAIM_TTL", bad)
        with pytest.raises(SettingError, match=f"FCI_CLAIM_TTL must be a positive number of seconds, got '{bad}'"):
            Store(tmp_path)
    with pytest.raises(ValueError, match="--claim-ttl must be"):
        resolve_claim_ttl("0", "--claim-ttl")


def test_the_command_takes_the_expiry_as_a_flag(tmp_path, capsys, monkeypatch):
    from fci.store.cli import main

    monkeypatch.delenv("FCI_CLAIM_TTL", raising=False)
    store = Store(tmp_path)
    store.save({"unit": 0}, {}, {"w": torch.ones(1)})
    _claim_file(store, "k", {"host": "another-host", "pid": 1, "token": "t", "ttl_s": 1}, age=30)
    assert main(["verify", str(tmp_path)]) == 0  # 30 s without a heartbeat: live under the default 300 s
    assert main(["verify", str(tmp_path), "--claim-ttl", "10"]) == 1
    assert ".claims/k: stale claim" in capsys.readouterr().out
    assert main(["repair", str(tmp_path), "--claim-ttl", "10"]) == 0
    assert main(["verify", str(tmp_path), "--claim-ttl", "10"]) == 0
    capsys.readouterr()
    assert main(["verify", str(tmp_path), "--claim-ttl", "never"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--claim-ttl must be a positive number of seconds" in err
