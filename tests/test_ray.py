"""The jobs on a real local Ray cluster (a head and a second worker node, `ray start` processes
on 127.0.0.1) against the in-process run: identical GGUF bytes, identical plans and
measurements, a worker killed mid-export changes nothing, cancel leaves no file, and the
cluster's processes are all gone at the end."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from qtstudio.cli import main
from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe, Rule
from qtstudio.export.gguf import export_gguf_job
from qtstudio.formats import open_model
from qtstudio.jobs import Cancelled, CancelToken, run_job
from qtstudio.jobs.optimize import optimize_job
from qtstudio.jobs.quantize import quantize_job
from qtstudio.jobs.whatif import whatif_job
from tests.helpers.tiny_models import build_tiny_llama

ray = pytest.importorskip("ray")

from qtstudio.jobs.executor_localcluster import LocalCluster  # noqa: E402
from qtstudio.jobs.executor_ray import RayExecutor  # noqa: E402

pytestmark = pytest.mark.ray

#: rows per export task small enough for many tasks (about 340 rows of 768 values)
CHUNK = 1 << 20


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(workers=1, cpus_per_node=1).start()
    try:
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.stop()
        left = c.worker_pids()
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="module")
def executor(cluster):
    ex = RayExecutor(cluster.address)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("ray") / "llama", hidden=768,
                            intermediate=3072, heads=4, kv_heads=2, dtype="float16")


def _imatrix(model) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {t.gguf_name or t.name: (0.1 + rng.random(t.shape[-1])).astype(np.float32)
            for t in model.tensors if len(t.shape) == 2}


def _export(model, plan, out, **kw):
    return run_job(export_gguf_job(model, plan, out, chunk_bytes=CHUNK, **kw))


def test_two_nodes_joined(cluster, executor):
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert executor.parallelism == 2


def test_export_identical_bytes(llama, executor, tmp_path):
    with open_model(llama) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"), has_imatrix=True)
        im = _imatrix(m)
        local = _export(m, plan, tmp_path / "local.gguf", imatrix=im)
        remote = _export(m, plan, tmp_path / "ray.gguf", imatrix=im, executor=executor)
    a, b = (tmp_path / "local.gguf").read_bytes(), (tmp_path / "ray.gguf").read_bytes()
    assert len(a) > 10_000_000 and a == b
    assert remote.tensors == local.tensors
    # the q/k rows are reordered for llama.cpp on the worker too, and imatrix weights travel
    assert {t["encoding"] for t in local.tensors} >= {"Q4_K", "Q6_K"}


def test_export_from_gguf_copies_and_tasks_interleaved(llama, executor, tmp_path):
    src = tmp_path / "q.gguf"
    with open_model(llama) as m:
        _export(m, resolve_plan(m, Recipe(preset="Q8_0")), src)
    with open_model(src) as g:
        # most tensors are copied byte for byte by the driver, the FFN ones become tasks
        recipe = Recipe(preset="Q8_0", rules=[Rule.parse("ffn_=Q4_0", target="gguf_name")])
        plan = resolve_plan(g, recipe)
        assert {e.encoding for e in plan.entries} >= {"Q8_0", "Q4_0", "F32"}
        _export(g, plan, tmp_path / "a.gguf", allow_requantize=True)
        _export(g, plan, tmp_path / "b.gguf", allow_requantize=True, executor=executor)
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()


def test_optimize_identical_plan(llama, executor):
    with open_model(llama) as m:
        local = run_job(optimize_job(m, target_bpw=4.5))
        remote = run_job(optimize_job(m, target_bpw=4.5, executor=executor))
    assert remote.recipe().overrides == local.recipe().overrides
    assert remote.total_error == local.total_error and remote.total_bytes == local.total_bytes
    for a, b in zip(local.table.tensors, remote.table.tensors, strict=True):
        assert [(o.encoding, o.nbytes, o.error) for o in a.options] == \
               [(o.encoding, o.nbytes, o.error) for o in b.options]
        assert (a.signal, a.measured_rows) == (b.signal, b.measured_rows)


def test_quantize_and_whatif_identical(llama, executor):
    with open_model(llama) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
        got: dict[str, list] = {"local": [], "ray": []}
        rl = run_job(quantize_job(m, plan, sink=lambda e, q: got["local"].append(q)))
        rr = run_job(quantize_job(m, plan, sink=lambda e, q: got["ray"].append(q),
                                  executor=executor))
        names = [t.name for t in m.tensors if t.quantizable][:4]
        cands = {n: ["Q8_0", "Q4_K", "Q2_K"] for n in names}
        wl = run_job(whatif_job(m, cands))
        wr = run_job(whatif_job(m, cands, executor=executor))

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(rr.tensors) == strip(rl.tensors)
    assert rr.totals()["overall_snr_db"] == rl.totals()["overall_snr_db"]
    assert [q.data.tobytes() for q in got["ray"]] == [q.data.tobytes() for q in got["local"]]
    assert wr == wl and len(wl) == 12


def test_worker_killed_mid_export_same_bytes(llama, cluster, executor, tmp_path):
    killed: list[int] = []
    stop = threading.Event()

    def killer():
        # the first worker seen running an export task dies with it (SIGKILL, no cleanup)
        while not stop.is_set() and not killed:
            for pid in cluster.worker_pids("export_span"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.002)

    with open_model(llama) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
        _export(m, plan, tmp_path / "local.gguf")
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        try:
            _export(m, plan, tmp_path / "ray.gguf", executor=executor)
        finally:
            stop.set()
            t.join(5)
    assert killed, "no worker was caught running a task"
    assert (tmp_path / "local.gguf").read_bytes() == (tmp_path / "ray.gguf").read_bytes()


def test_cancel_mid_export_leaves_no_file(llama, executor, tmp_path):
    out = tmp_path / "cancelled.gguf"
    cancel = CancelToken()
    with open_model(llama) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
        job = export_gguf_job(m, plan, out, chunk_bytes=CHUNK, cancel=cancel,
                              executor=executor)
        seen = 0
        with pytest.raises(Cancelled):
            for p in job:
                if "tasks done" in p.message:
                    seen += 1
                    if seen == 3:
                        cancel.cancel()
    assert seen == 3
    assert list(tmp_path.iterdir()) == []


def test_cli_ray_export_and_optimize(llama, cluster, executor, tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    assert main(["export", str(llama), "--preset", "Q4_0", "-o", str(out), "--quiet",
                 "--ray", cluster.address]) == 0
    ref = tmp_path / "ref.gguf"
    assert main(["export", str(llama), "--preset", "Q4_0", "-o", str(ref), "--quiet"]) == 0
    assert out.read_bytes() == ref.read_bytes()
    r1, r2 = tmp_path / "r1.json", tmp_path / "r2.json"
    assert main(["optimize", str(llama), "--target-bpw", "5", "--out", str(r1), "--quiet",
                 "--ray", cluster.address]) == 0
    assert main(["optimize", str(llama), "--target-bpw", "5", "--out", str(r2),
                 "--quiet"]) == 0
    assert r1.read_text() == r2.read_text()
    capsys.readouterr()


def test_worker_sees_a_different_checkpoint(llama, executor, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(llama, copy)
    with open_model(copy) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_0"))
        job = export_gguf_job(m, plan, tmp_path / "x.gguf", executor=executor)
        # the driver stamps the files before the tasks run; the file then changes under it
        p = next(job)
        assert p.stage == "export"
        with open(copy / "config.json", "a") as f:
            f.write(" ")
        from qtstudio.jobs.executor import ClusterError

        with pytest.raises(ClusterError, match="different checkpoint"):
            for _ in job:
                pass
    assert not (tmp_path / "x.gguf").exists()


def test_ray_flag_without_ray_installed(llama, tmp_path, capsys, monkeypatch):
    import qtstudio.jobs.executor_base as ex

    monkeypatch.setattr(ex, "ray_available", lambda: False)
    for cmd in (["export", str(llama), "--preset", "Q4_0", "-o", str(tmp_path / "o.gguf")],
                ["optimize", str(llama), "--target-bpw", "5"],
                ["quantize", str(llama), "--preset", "Q4_0", "--report",
                 str(tmp_path / "r.json")],
                ["whatif", str(llama), "--encodings", "Q4_0"]):
        assert main([*cmd, "--ray", "auto"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pip install 'qtstudio[ray]'" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_cluster_address_checked_before_connecting():
    from qtstudio.jobs.executor import ClusterError
    from qtstudio.jobs.executor_ray import _reachable

    with pytest.raises(ClusterError, match=r"cannot connect to the Ray cluster at 127\.0\.0\.1:1"):
        _reachable("127.0.0.1:1")
    with pytest.raises(ClusterError, match="expected 'auto'"):
        _reachable("nohostport")
