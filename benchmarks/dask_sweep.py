"""A study through a local Dask cluster beside the same study run here: identical
outputs, what the cluster costs, and a worker killed mid-run.

    python -m benchmarks.dask_sweep [--study superposition_sweep] [--level quick] [--workers 2] [--rounds 2]

Each round runs, each into a fresh store and in this order,

1. `python -m analyses.<study> --<level> --device cpu` (here, in one process);
2. the same with `--dask local:<workers>` (a LocalCluster of single-threaded worker
   processes: this process plans, the workers train, this process stores);

and, once, the Dask run again with one worker process killed (SIGKILL) as soon as
the first trained models are stored, while the others still train. Every Dask run's
`results.csv` (wall-clock `*_seconds` columns aside) and store keys must equal the
local run's. Printed per run: wall seconds, CPU seconds of the whole process tree
(the command and its workers, from `wait4`), and `train_seconds` from summary.json
(planning to the last stored model). The last line gives the medians' ratios,

    dask local:<N>: wall <x>x, CPU <y>x the local run (<study> --<level>; identical: yes|NO; kill: ...)

On a shared machine the wall time follows the load (printed with `uptime`'s
figures): compare runs of one invocation, and prefer the CPU ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _workers_of(pid: int) -> list[int]:
    """The Dask worker processes a command started (its spawned children)."""
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if any("spawn_main" in part for part in k.cmdline()):
                out.append(k.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _killer(pid: int, store: Path, note: dict) -> None:
    """Kill one worker of command `pid` once its first models are stored."""
    while True:
        time.sleep(0.2)
        n = len([d for d in store.glob("*") if not d.name.startswith(".")]) if store.is_dir() else 0
        workers = _workers_of(pid)
        if n and workers:
            os.kill(workers[0], signal.SIGKILL)
            note.update(killed=workers[0], stored_at_kill=n)
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return


def run_once(study: str, level: str, data: Path, dask: str | None, kill: bool = False) -> dict:
    cmd = [sys.executable, "-m", f"analyses.{study}", f"--{level}", "--device", "cpu", "--data", str(data)]
    if dask:
        cmd += ["--dask", dask]
    load = _load()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    note: dict = {}
    watcher = threading.Thread(target=_killer, args=(p.pid, data / "store", note), daemon=True) if kill else None
    if watcher:
        watcher.start()
    err = p.stderr.read() if p.stderr else ""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    (out,) = (data / "results" / study).iterdir()
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "train": summary["run"]["train_seconds"],
            "out": out, "store": data / "store", "load": load, **note}


def same(a: dict, b: dict) -> bool:
    x, y = pd.read_csv(a["out"] / "results.csv"), pd.read_csv(b["out"] / "results.csv")
    cols = [c for c in x.columns if not c.endswith("_seconds")]
    keys = lambda r: sorted(d.name for d in r["store"].iterdir() if not d.name.startswith("."))  # noqa: E731
    return list(x.columns) == list(y.columns) and x[cols].equals(y[cols]) and keys(a) == keys(b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dask_sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="superposition_sweep")
    ap.add_argument("--level", default="quick", choices=["quick", "tiny"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    dask = f"local:{args.workers}"
    runs: dict[str, list[dict]] = {"local": [], "dask": []}
    with tempfile.TemporaryDirectory(prefix="fci-dask-bench-") as tmp:
        root = Path(tmp)
        for r in range(args.rounds):
            for name, addr in (("local", None), ("dask", dask)):
                res = run_once(args.study, args.level, root / f"{name}-{r}", addr)
                runs[name].append(res)
                print(f"round {r + 1} {name:<6} wall {res['wall']:6.1f} s  CPU {res['cpu']:6.1f} s  "
                      f"train {res['train']:6.1f} s  (load {res['load']})", flush=True)
        killed = run_once(args.study, args.level, root / "kill", dask, kill=True)
        print(f"killed  dask   wall {killed['wall']:6.1f} s  CPU {killed['cpu']:6.1f} s  train {killed['train']:6.1f} s  "
              f"(load {killed['load']}; worker pid {killed.get('killed')} killed with {killed.get('stored_at_kill')} "
              "models stored)", flush=True)
        ref = runs["local"][0]
        identical = all(same(ref, r) for r in runs["local"][1:] + runs["dask"])
        kill_ok = same(ref, killed)
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall", "cpu")} for k, v in runs.items()}
        print(f"median local: wall {med['local']['wall']:.1f} s, CPU {med['local']['cpu']:.1f} s; "
              f"{dask}: wall {med['dask']['wall']:.1f} s, CPU {med['dask']['cpu']:.1f} s")
        kill = (f"a worker killed after {killed['stored_at_kill']} models were stored: identical {'yes' if kill_ok else 'NO'}"
                if "killed" in killed else "no worker was killed (the run ended first)")
        print(f"dask {dask}: wall {med['dask']['wall'] / med['local']['wall']:.2f}x, CPU "
              f"{med['dask']['cpu'] / med['local']['cpu']:.2f}x the local run ({args.study} --{args.level}; "
              f"identical: {'yes' if identical else 'NO'}; {kill})")
    return 0 if identical and kill_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
