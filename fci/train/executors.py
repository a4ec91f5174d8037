"""Where the stacks of a run train: in this process (`LocalExecutor`) or on a Dask
cluster (`DaskExecutor`).

An executor runs one function over many calls and hands back each call's result as
it finishes. The schedule (`fci.train.run_fpe(..., executor=...)`) plans the stacks,
sends each stack's *specs* (the data is rebuilt from them where it runs), gets back
weights and metrics, and writes the store itself: the driver is the only writer, so
a cluster needs no shared filesystem. Dask reschedules the task of a worker that
died; a stack is a pure function of its specs, so a rerun gives the same models.

`distributed` is optional (`pip install "fci[cluster]"`); `dask_executor` and
`parse_dask_address` say so in one line when it is missing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import math
import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "DaskAddress", "ClusterError", "parse_dask_address",
           "dask_executor", "require_distributed", "INSTALL_HINT", "fingerprint", "importable", "Importable"]

log = logging.getLogger(__name__)

#: What to install for `--dask` (the optional `cluster` extra).
INSTALL_HINT = 'pip install "fci[cluster]" (or pip install "distributed>=2024.1")'

#: Seconds to wait for a scheduler to answer before refusing its address.
CONNECT_TIMEOUT = 10.0


class ClusterError(RuntimeError):
    """A Dask cluster cannot be used: not installed, not reachable, or its workers
    run other code than this process. The message is one line."""


class Executor(Protocol):
    """Runs `fn(*call, **shared)` for each call and yields `(index, result)` as each
    finishes (in any order). `parallelism`: how many calls can run at once."""

    @property
    def parallelism(self) -> int: ...

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], shared: dict[str, Any] | None = None,
            name: str = "fci") -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs every call here, one after another, in order."""

    parallelism = 1

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], shared: dict[str, Any] | None = None,
            name: str = "fci") -> Iterator[tuple[int, Any]]:
        for i, call in enumerate(calls):
            yield i, fn(*call, **(shared or {}))

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalExecutor()"


# ---------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class DaskAddress:
    """A parsed `--dask` value: `local` workers started here, a scheduler `address`,
    or a `scheduler_file` written by `dask scheduler --scheduler-file`."""

    text: str
    local: int | None = None
    address: str | None = None
    scheduler_file: str | None = None


_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
_HOST_PORT = re.compile(r"^(?:(?P<proto>[a-z]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+)(?::(?P<port>[^/:]*))?/?$")


def require_distributed() -> None:
    """Raise ClusterError (one line, naming the extra to install) when `distributed` is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ClusterError(f"Dask's distributed package is not installed; {INSTALL_HINT}") from None


def parse_dask_address(text: str) -> DaskAddress:
    """`local:N` (N >= 1 worker processes on this machine), a scheduler address
    (`tcp://host:8786`, `host:8786`, `tls://...`) or a scheduler file (`.json`).
    Raises ValueError (one line) for anything else, before any connection."""
    text = str(text).strip()
    hint = ("must be local:N (N worker processes on this machine), a scheduler address such as tcp://host:8786, "
            "or a scheduler file (.json)")
    if not text:
        raise ValueError(f"--dask {hint}, got ''")
    if text.startswith("local"):
        n = text[len("local"):].lstrip(":")
        if not text.startswith("local:") or not n.isdigit() or int(n) < 1:
            raise ValueError(f"--dask local:N needs a whole number of worker processes N >= 1, got {text!r}")
        return DaskAddress(text, local=int(n))
    if text.endswith(".json"):
        if not os.path.isfile(text):
            raise ValueError(f"--dask: no scheduler file {text!r} (dask scheduler --scheduler-file writes one)")
        return DaskAddress(text, scheduler_file=os.path.abspath(text))
    m = _HOST_PORT.match(text)
    if m is None or (m["proto"] is not None and m["proto"] not in _PROTOCOLS):
        raise ValueError(f"--dask {hint}, got {text!r}")
    if m["proto"] != "inproc":
        port = m["port"]
        if port is None or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--dask: a scheduler address needs a port in 1..65535 (e.g. tcp://host:8786), got {text!r}")
    return DaskAddress(text, address=text if m["proto"] else f"tcp://{text}")


# ---------------------------------------------------------------------- the code a worker runs


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".c") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _digest(package: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return _tree_digest(Path(list(spec.submodule_search_locations)[0]))


def fingerprint(packages: Sequence[str] = ("fci",)) -> dict[str, Any]:
    """What a worker must share with the driver for its results to be the driver's:
    a digest of each package's source (and the kernel's C file), torch's version and
    Python's. Importing torch and fci here also warms a new worker up."""
    import torch

    import fci.train  # noqa: F401 (the code every task runs)

    out: dict[str, Any] = {p: _digest(p) for p in packages}
    out.update(torch=torch.__version__, python=".".join(map(str, sys.version_info[:2])))
    return out


# ---------------------------------------------------------------------- Dask


class DaskExecutor:
    """Runs calls as tasks on a Dask cluster through `client`.

    Large keyword arguments shared by every call (`shared`, e.g. a dataset only the
    driver can read) travel once, as a task of their own (so a lost copy is rebuilt
    like any other task). A task whose worker dies is rescheduled by Dask (up to
    `distributed.scheduler.allowed-failures` times, then the run stops with Dask's
    KilledWorker); a task that raises stops the run with that error."""

    def __init__(self, client: Any, cluster: Any = None, address: str = ""):
        self.client = client
        self.cluster = cluster  # a LocalCluster this executor started (closed with it)
        self.address = address or str(getattr(client, "scheduler", {}) and client.scheduler.address)

    @property
    def parallelism(self) -> int:
        """Worker threads on the cluster now (at least 1: tasks wait for workers to join)."""
        try:
            info = self.client.scheduler_info(n_workers=-1)  # newer releases list only the first 5 by default
        except TypeError:
            info = self.client.scheduler_info()
        workers = info.get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], shared: dict[str, Any] | None = None,
            name: str = "fci") -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        kw: dict[str, Any] = {}
        for k, v in (shared or {}).items():
            kw[k] = self.client.submit(_given, v, key=f"{name}-{k}-{token}", pure=False)
        futures = [self.client.submit(fn, *call, **kw, key=f"{name}-{token}-{i}", pure=False) for i, call in enumerate(calls)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                result = fut.result()
                fut.release()
                yield index[fut.key], result
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
            for f in kw.values():
                f.release()

    def close(self) -> None:
        """Disconnect; a LocalCluster started here stops with its workers."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.address!r}, {self.parallelism} worker threads)"


def _given(value: Any) -> Any:
    """A task that returns the value its spec carries (data shipped once per run)."""
    return value


def dask_executor(address: str | DaskAddress, timeout: float = CONNECT_TIMEOUT, packages: Sequence[str] = ("fci",)) -> DaskExecutor:
    """Start (`local:N`) or connect to a Dask cluster and check its workers.

    `local:N` starts a `distributed.LocalCluster` of N single-threaded worker
    processes; anything else connects to a running scheduler (one started by
    dask-jobqueue, dask-kubernetes or `dask scheduler`). Every worker present must
    run the same source of `packages`, torch and Python as this process (results
    are the driver's only then). Raises ClusterError (one line) when `distributed`
    is missing, no scheduler answers within `timeout` seconds, or a worker differs."""
    require_distributed()
    addr = parse_dask_address(address) if isinstance(address, str) else address
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if addr.local is not None:
            with _main_not_rerun():
                # No dashboard; the scheduler's HTTP endpoints on a free port (not 8787, which another cluster may hold).
                cluster = LocalCluster(n_workers=addr.local, threads_per_worker=1, processes=True, dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=logging.WARNING)
            client = Client(cluster, timeout=timeout)
        elif addr.scheduler_file is not None:
            client = Client(scheduler_file=addr.scheduler_file, timeout=timeout)
        else:
            client = Client(addr.address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ClusterError(f"no Dask scheduler answered at {addr.text} within {timeout:g} s ({reason[:200]})") from None
    ex = DaskExecutor(client, cluster, addr.text)
    try:
        _check_workers(ex, packages)
    except BaseException:
        ex.close()
        raise
    log.info("Dask: %s, %d worker thread(s)", addr.text if addr.local is None else f"a local cluster of {addr.local} "
             "worker process(es)", ex.parallelism)
    return ex


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """While local workers start, hide where this process's `__main__` came from.

    multiprocessing's spawn runs the parent's main module again in every child, so
    that objects pickled from it resolve; a study module costs each worker about a
    CPU-second of imports (pandas, plotly) it never uses. Dask ships functions
    defined in `__main__` by value (cloudpickle), so its workers need none of it."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)


def _check_workers(ex: DaskExecutor, packages: Sequence[str]) -> None:
    """Refuse workers that run other code than this process (one line naming one)."""
    if ex.cluster is not None:
        ex.client.wait_for_workers(len(ex.cluster.workers))
    mine = fingerprint(packages)
    theirs = ex.client.run(fingerprint, packages)
    for worker, fp in sorted(theirs.items()):
        diff = [k for k in mine if fp.get(k) != mine[k]]
        if diff:
            what = ", ".join(f"{k} {fp.get(k)} (here {mine[k]})" for k in diff)
            raise ClusterError(f"Dask worker {worker} runs other code than this process: {what}; install the same "
                               "fci, torch and Python on the workers")


@dataclass(frozen=True)
class Importable:
    """A function named by its module and qualified name, imported where it is called."""

    module: str
    qualname: str

    def resolve(self) -> Callable[..., Any]:
        obj: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


def importable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as a worker elsewhere can find it. A function of the module this process
    runs as its main program (`python -m analyses.<study>`) lives in `__main__`,
    which on a worker is another module: it is sent as its module's real name."""
    if getattr(fn, "__module__", None) != "__main__":
        return fn
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    if not name or name == "__main__" or name.endswith(".__main__") or "<locals>" in fn.__qualname__:
        return fn  # a script or a nested function: sent by value
    return Importable(name, fn.__qualname__)


def split_evenly(n: int, parts: int) -> int:
    """The chunk size that splits n items into at least `parts` chunks (>= 1)."""
    return max(1, math.ceil(n / max(1, parts)))
