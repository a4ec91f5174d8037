"""Every stop of a command is one line: Ctrl-C, SIGTERM and a full disk keep what
was finished, leave nothing half-written and no claim, and a rerun resumes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fci.store import Store, graceful
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="needs POSIX signals")

TINY = ["--clauses", "3", "--hidden", "4", "--alpha", "2", "--trials", "2", "--warmup", "2", "--finetune", "2",
        "--train-samples", "128", "--test-samples", "64", "--device", "cpu"]


def _default_sigint() -> None:
    """In the child: Ctrl-C as in a terminal, even when the tests run in the background
    (where the shell starts them with SIGINT ignored, and Python keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _claims(store: Store) -> list[str]:
    d = store.dir / ".claims"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _temporaries(store: Store) -> list[str]:
    return sorted(p.name for p in store.dir.iterdir() if ".tmp-" in p.name) if store.dir.is_dir() else []


def test_ctrl_c_ends_in_one_line_and_releases_claims(tmp_path, capsys):
    store = Store(tmp_path)

    @graceful("prog")
    def main() -> int:
        store.try_claim(["a", "b"])
        store.save({"unit": 0}, {}, {"w": torch.ones(1)})
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 130 and err.count("\n") == 1
    assert err.startswith("prog: interrupted (Ctrl-C); the 1 store entry it finished is kept")
    assert "nothing half-written; rerun the same command to resume" in err
    assert _claims(store) == [] and not store._held


def test_sigterm_takes_the_same_path_and_the_handler_is_restored(tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM)

    @graceful("prog")
    def main() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            time.sleep(0.01)
        return 0

    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err.startswith("prog: stopped by SIGTERM; no new store entry was finished") and err.count("\n") == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_bugs_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        with graceful("prog"):
            1 / 0


def test_a_full_disk_mid_write_ends_in_one_line_and_the_rerun_heals(tmp_path, capsys, monkeypatch):
    import fci.store.files as files
    from fci.__main__ import main

    real = files.write_new
    weights: list[Path] = []

    def fills_up(path: Path, data: bytes) -> None:
        if path.name == "weights.safetensors":
            weights.append(path)
            if len(weights) == 2:  # the second model's weights: the disk is full half-way through
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                os.write(fd, data[: len(data) // 2])
                os.close(fd)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(files, "write_new", fills_up)
    args = [*TINY, "--data", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("python -m fci: stopped: No space left on device writing ")
    assert "the 1 store entry it finished is kept" in err[-1] and err[-1].endswith("rerun the same command to resume")
    store = Store(tmp_path)
    assert len(store.keys()) == 1 and store.verify() == {}  # nothing corrupt, nothing half-written, no claim
    assert _claims(store) == [] and _temporaries(store) == []

    monkeypatch.setattr(files, "write_new", real)
    assert main(args) == 0
    assert len(store.keys()) == 6 and store.verify() == {} and not store.quarantined()


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_python_m_fci_prints_one_line_and_leaves_no_claim(tmp_path, sig):
    """`python -m fci` long enough to be caught training (it holds claims), then signalled."""
    signum = getattr(signal, sig)
    args = [sys.executable, "-m", "fci", "--clauses", "3", "--hidden", "16", "--alpha", "2", "--trials", "2",
            "--warmup", "150", "--finetune", "150", "--train-samples", "1024", "--test-samples", "64", "--device", "cpu",
            "--data", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_default_sigint)
    store = Store(tmp_path)
    t0 = time.monotonic()
    while p.poll() is None and not any(not n.startswith(".") for n in _claims(store)) and time.monotonic() - t0 < 300:
        time.sleep(0.005)
    assert p.poll() is None, "the run ended before it could be signalled"
    p.send_signal(signum)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 128 + signum, err[-2000:]
    assert "Traceback" not in err
    ours = [line for line in err.splitlines() if line.startswith("python -m fci:")]
    assert len(ours) == 1 and err.rstrip().splitlines()[-1] == ours[0]
    how = "interrupted (Ctrl-C)" if sig == "SIGINT" else "stopped by SIGTERM"
    assert ours[0].startswith(f"python -m fci: {how}; ") and ours[0].endswith("rerun the same command to resume")
    assert _claims(store) == [] and _temporaries(store) == [] and store.verify() == {}
    for key in store.keys():
        assert json.loads((store.path(key) / "checksums.json").read_text())["writer"]["pid"] == p.pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_does_not_wait_for_work_that_cannot_be_interrupted(tmp_path, sig):
    """The main thread joins a worker that cannot be interrupted (as it joins the C
    kernel's threads): the watchdog still ends the command within its grace period,
    with the one line, the status of the signal and no claim left."""
    script = tmp_path / "cmd.py"
    script.write_text(f"""
import sys, threading, time
from fci.store import Store, graceful

@graceful("prog")
def main():
    store = Store({str(tmp_path)!r})
    store.try_claim(["a"])
    worker = threading.Thread(target=time.sleep, args=(120,))
    worker.start()
    print("ready", flush=True)
    worker.join()

main()
""")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30  # the grace period is a few seconds; the worker would hold it for 120
    assert proc.returncode == 128 + sig
    how = "interrupted (Ctrl-C)" if sig == signal.SIGINT else "stopped by SIGTERM"
    assert err.count("\n") == 1 and err.startswith(f"prog: {how}; no new store entry was finished"), err
    assert _claims(Store(tmp_path)) == []
