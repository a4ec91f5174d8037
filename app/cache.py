"""The explorer's view of a results store, with caches: the catalogue (rescanned
when the store directory changes), loaded runs and per-(run, threshold) analyses (LRU).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from app.catalogue import Catalogue, scan_store
from app.lru import LRU
from app.readings import RunAnalysis, Threshold, analyse
from app.runs import LoadedRun, UnknownRun, load_run
from fci.store import Store

__all__ = ["Explorer"]


class Explorer:
    """The explorer's view of a results store, with caches.

    `catalogue()` is rescanned when the store directory changes (an entry added or
    removed); `run(id)` and `analysis(id, threshold)` are LRU-cached."""

    def __init__(self, data_dir: str | Path = "data", cache_size: int = 8):
        self.store = Store(data_dir)
        self._catalogue: Catalogue | None = None
        self._stamp: Any = None
        self._lock = threading.Lock()
        self._runs = LRU(cache_size)
        self._analyses = LRU(4 * cache_size)

    def _store_stamp(self) -> Any:
        try:
            st = self.store.dir.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino

    def catalogue(self) -> Catalogue:
        stamp = self._store_stamp()
        with self._lock:
            if self._catalogue is None or stamp != self._stamp:
                self._catalogue, self._stamp = scan_store(self.store), stamp
            return self._catalogue

    def run(self, run_id: str) -> LoadedRun:
        """A loaded run; UnknownRun for an id not in the catalogue, RunError when it
        cannot be loaded."""
        info = self.catalogue().get(run_id)
        if info is None:
            raise UnknownRun(f"unknown run {run_id!r}: no such run in {self.store.dir}")
        return self._runs.get(run_id, lambda: load_run(self.store, info))

    def analysis(self, run_id: str, threshold: Threshold) -> RunAnalysis:
        t = threshold if isinstance(threshold, str) else round(float(threshold), 6)
        return self._analyses.get((run_id, t), lambda: analyse(self.run(run_id), t))
