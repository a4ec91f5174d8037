"""`run_fpe` on a Dask cluster (`fci.train.executors`): the models a local run trains,
bit for bit, though the cluster cuts the trials into other stacks; a worker killed
while it trains is replaced and its stack retrained; `--dask` refused in one line
when it cannot work. One LocalCluster of two worker processes serves the module."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import torch

from fci.data import DatasetSpec
from fci.data.datasets import task_dataset
from fci.store import Store
from fci.tasks import DNFTask
from fci.train import FPESpec, TrainConfig, run_fpe
from fci.train.backends.kernel import library as kernel
from fci.train.executors import ClusterError, LocalExecutor, parse_dask_address
from fci.train.schedule import _stacks
from tests.helpers import tiny_spec

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # the tests that need Dask are skipped
    WorkerPlugin = object  # type: ignore[assignment,misc]

#: Bit identity across stack mates is the kernel's guarantee (SPEC §7); torch's models agree to rounding only.
needs_kernel = pytest.mark.skipif(not kernel.available(), reason="bit identity across stacks needs the C kernel")


def _specs() -> list[FPESpec]:
    """Two groups of alike trials on per-trial tasks (3 and 4 clauses, mixed widths), and
    trials on a dataset held in this process's memory (which the workers cannot build)."""
    specs = [tiny_spec(seed=s, hidden=h, n_clauses=c) for c in (3, 4) for h in (4, 6) for s in range(3)]
    memory = DatasetSpec.from_dataset(task_dataset(DNFTask.generate(n_clauses=3, clause_size=3, n_vars=10, seed=5,
                                                                    n_train=128, n_test=128)))
    train = TrainConfig(warmup=3, finetune=3, batch_size=64, lr=0.02)
    specs += [FPESpec(data=memory, hidden=5, seed=s, expansions=(("random", 2),), train=train) for s in range(3)]
    return specs


def _assert_same_trials(a, b) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        pairs = [(ra.parent, rb.parent), (ra.dense, rb.dense)] + [(ra.children[k], rb.children[k]) for k in ra.children]
        assert ra.children.keys() == rb.children.keys()
        for x, y in pairs:
            tx, ty = x.model.tensors(), y.model.tensors()
            assert tx.keys() == ty.keys()
            for k in tx:
                assert torch.equal(tx[k], ty[k]), k
            mx, my = x.metrics(), y.metrics()
            assert mx.pop("provenance")["backend"] == my.pop("provenance")["backend"]
            assert mx == my


def _assert_same_store(a: Store, b: Store) -> None:
    assert a.keys() == b.keys() and a.keys()
    for key in a.keys():
        ea, eb = a.load(key), b.load(key)
        assert ea.config == eb.config
        ma, mb = dict(ea.metrics), dict(eb.metrics)
        pa, pb = ma.pop("provenance"), mb.pop("provenance")
        assert pa["backend"] == pb["backend"] and pa.get("kernel_build") == pb.get("kernel_build")
        ma["parent"].pop("provenance"), mb["parent"].pop("provenance")
        assert ma == mb, key
        assert ea.tensors.keys() == eb.tensors.keys()
        for k in ea.tensors:
            assert torch.equal(ea.tensors[k], eb.tensors[k]), (key, k)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    from fci.train.executors import dask_executor

    with dask_executor("local:2") as ex:
        yield ex


def test_the_cluster_cuts_other_stacks_than_a_local_run():
    """What makes the identity below a real test: the cluster's stacks are not the local run's."""
    specs = _specs()
    here, there = _stacks(specs, torch.device("cpu"), "auto", 1), _stacks(specs, torch.device("cpu"), "auto", 2)
    assert len(here) == 3 and len(there) == 6
    assert sorted(i for c in there for i in c) == list(range(len(specs)))
    assert max(len(c) for c in there) == 3


def test_a_local_executor_gives_the_models_of_a_plain_run():
    """The executor path (specs out, tensors and metrics back) on its own, without Dask."""
    specs = _specs()[:6]
    _assert_same_trials(run_fpe(specs, device="cpu"), run_fpe(specs, device="cpu", executor=LocalExecutor()))


@pytest.mark.slow
@needs_kernel
def test_a_cluster_run_stores_what_a_local_run_stores(cluster, tmp_path):
    specs = _specs()
    here, there = Store(tmp_path / "here"), Store(tmp_path / "there")
    local = run_fpe(specs, device="cpu", store=here)
    remote = run_fpe(specs, device="cpu", store=there, executor=cluster)
    assert remote.trained == local.trained == list(range(len(specs)))
    _assert_same_trials(local, remote)
    _assert_same_store(here, there)
    assert {e.metrics["provenance"]["workers"] for e in there.entries()} == {1}  # one thread per worker process
    _assert_same_trials(local, run_fpe(specs, device="cpu", executor=cluster))  # and without a store


@pytest.mark.slow
@needs_kernel
def test_stored_parents_are_sent_and_only_missing_children_train(cluster, tmp_path):
    """A trial whose dense entry (and parent) is stored trains only its new children,
    from the stored parent sent to the worker."""
    first = [tiny_spec(seed=s, hidden=h) for s in range(3) for h in (4, 6)]
    more = [FPESpec(task=s.task, hidden=s.hidden, seed=s.seed, expansions=s.expansions + (("random", 3),), train=s.train)
            for s in first]
    here, there = Store(tmp_path / "here"), Store(tmp_path / "there")
    run_fpe(first, device="cpu", store=here)
    run_fpe(first, device="cpu", store=there)
    _assert_same_store(here, there)
    local = run_fpe(more, device="cpu", store=here)
    remote = run_fpe(more, device="cpu", store=there, executor=cluster)
    assert remote.trained == local.trained == list(range(len(more)))
    _assert_same_trials(local, remote)
    _assert_same_store(here, there)


class KillOnce(WorkerPlugin):
    """A worker plugin: the first worker to start a stack kills its own process (SIGKILL)
    then and there, once per marker file, the way an out-of-memory killer or a lost
    node ends a worker mid-task."""

    name = "fci-kill-once"

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "executing" or not str(key).startswith("fci-stack"):
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.fault
@needs_kernel
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_worker_killed_mid_run_changes_nothing(cluster, tmp_path):
    specs = _specs()[:12]
    local = run_fpe(specs, device="cpu", store=Store(tmp_path / "here"))
    marker = tmp_path / "killed"
    cluster.client.register_plugin(KillOnce(str(marker)), name=KillOnce.name)
    try:
        before = set(cluster.client.scheduler_info()["workers"])
        remote = run_fpe(specs, device="cpu", store=Store(tmp_path / "there"), executor=cluster)
    finally:
        cluster.client.unregister_worker_plugin(KillOnce.name)
    assert marker.exists()  # a worker died while it trained a stack
    cluster.client.wait_for_workers(2, timeout=120)
    assert set(cluster.client.scheduler_info()["workers"]) != before  # and a new one took its place
    _assert_same_trials(local, remote)
    _assert_same_store(Store(tmp_path / "here"), Store(tmp_path / "there"))


def test_a_backend_instance_is_refused_with_an_executor():
    from fci.train import ReferenceBackend

    with pytest.raises(ValueError, match="backend must be a name"):
        run_fpe(_specs()[:1], device="cpu", backend=ReferenceBackend(), executor=LocalExecutor())


def test_a_function_of_the_main_module_is_sent_by_its_real_module_name(monkeypatch):
    """`python -m pkg.mod` runs pkg.mod as `__main__`; a worker's `__main__` is its own,
    so a function defined there travels as (pkg.mod, name) and is imported where it runs."""
    import pickle
    import types

    from fci.train import schedule
    from fci.train.executors import Importable, importable

    assert importable(schedule.train_stack) is schedule.train_stack
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="fci.train.schedule")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    twin = types.FunctionType(schedule.train_stack.__code__, {}, "train_stack")
    twin.__module__, twin.__qualname__ = "__main__", "train_stack"
    ref = importable(twin)
    assert ref == Importable("fci.train.schedule", "train_stack")
    assert pickle.loads(pickle.dumps(ref)).resolve() is schedule.train_stack


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize("text, says", [
    ("", "must be local:N"),
    ("local", "local:N needs a whole number"),
    ("local:0", "local:N needs a whole number"),
    ("local:-2", "local:N needs a whole number"),
    ("local:two", "local:N needs a whole number"),
    ("tcp://scheduler", "needs a port"),
    ("scheduler:99999", "needs a port"),
    ("http://scheduler:8786", "must be local:N"),
    ("two words", "must be local:N"),
    ("no-such-file.json", "no scheduler file"),
])
def test_bad_addresses_are_refused_in_one_line(text, says):
    with pytest.raises(ValueError, match=says) as e:
        parse_dask_address(text)
    assert str(e.value).startswith("--dask") and "\n" not in str(e.value)


@pytest.mark.parametrize("text, want", [
    ("local:3", {"local": 3}),
    ("tcp://10.0.0.5:8786", {"address": "tcp://10.0.0.5:8786"}),
    ("node17:8786", {"address": "tcp://node17:8786"}),
    ("tls://[::1]:8786", {"address": "tls://[::1]:8786"}),
])
def test_good_addresses_parse(text, want):
    got = parse_dask_address(text)
    assert {k: getattr(got, k) for k in want} == want


def test_an_address_where_no_scheduler_answers_is_refused_in_one_line():
    pytest.importorskip("distributed")
    import socket

    from fci.train.executors import dask_executor

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match=f"no Dask scheduler answered at tcp://127.0.0.1:{port}") as e:
        dask_executor(f"tcp://127.0.0.1:{port}", timeout=1)
    assert "\n" not in str(e.value)


def test_without_distributed_the_option_is_refused_naming_the_extra(monkeypatch, capsys, tmp_path):
    from fci.__main__ import main as fci_main
    from fci.train.executors import dask_executor

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails as if it were not installed
    with pytest.raises(ClusterError, match=r'pip install "fci\[cluster\]"'):
        dask_executor("local:2")
    with pytest.raises(SystemExit) as e:
        fci_main(["--dask", "local:2", "--trials", "1", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "--dask" in err and 'pip install "fci[cluster]"' in err
    assert not Store(tmp_path).keys()  # refused before any work
