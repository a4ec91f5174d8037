"""`python -m app` tells the truth: a busy port and a mistyped --data are refused
in one line before any work, a new --data folder is announced, one line says
where the explorer runs, and Ctrl-C stops it with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from app.__main__ import main
from tests.helpers import ROOT


def _error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_a_busy_port_is_refused_in_one_line_naming_the_flag(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _error_line(capsys, ["--data", str(tmp_path), "--port", str(port)])
    assert f"port {port} on 127.0.0.1 is in use" in line and "--port" in line
    assert not (tmp_path / "store").exists(), "nothing was trained before refusing"


def test_a_typo_of_an_existing_data_folder_is_refused(tmp_path, capsys, monkeypatch):
    (tmp_path / "results").mkdir()
    monkeypatch.chdir(tmp_path)
    line = _error_line(capsys, ["--data", "reslts", "--port", "1"])
    assert "--data 'reslts' does not exist; did you mean 'results'?" in line
    assert not (tmp_path / "reslts").exists()


def test_a_new_data_folder_is_created_with_a_line_saying_so(tmp_path):
    from app.__main__ import build_parser, check_data

    line = check_data(build_parser(), str(tmp_path / "fresh"))
    assert line is not None and "did not exist: created it" in line
    assert check_data(build_parser(), str(tmp_path)) is None  # an existing folder: nothing to say


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_one_start_line_and_ctrl_c_stops_it_in_one_line(tmp_path, app_demo_dir):
    data_dir, _ = app_demo_dir
    """Served by waitress on the demo store: one line on start, one on Ctrl-C, exit 0."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "app", "--data", str(data_dir), "--port", str(port)],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < end, "the explorer did not start"
                time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [x for x in proc.stderr.read().splitlines() if x.strip()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("fci explorer: ") and f"http://127.0.0.1:{port}/" in lines[0]
    assert lines[1] == "fci explorer stopped"
