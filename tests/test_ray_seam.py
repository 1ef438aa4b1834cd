"""The executor seam without a cluster: the jobs' task path through the in-process executor
gives what their own loops give (bytes, plans, measurements), and stops cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe
from qtstudio.export.gguf import export_gguf_job
from qtstudio.formats import open_model
from qtstudio.jobs import Cancelled, CancelToken, run_job
from qtstudio.jobs.executor import ClusterError, InProcessExecutor, executor_for
from qtstudio.jobs.optimize import optimize_job
from qtstudio.jobs.quantize import quantize_job
from qtstudio.jobs.whatif import whatif_job
from qtstudio.jobs.worker_source import open_source, source_stamp
from tests.helpers.tiny_models import build_tiny_llama


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("seam") / "llama")


def test_export_task_path_same_bytes(llama, tmp_path):
    ex = InProcessExecutor(threads=1)
    with open_model(llama) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_K_M"))
        im = {t.gguf_name: np.linspace(0.5, 2, t.shape[-1], dtype=np.float32)
              for t in m.tensors if len(t.shape) == 2}
        a = run_job(export_gguf_job(m, plan, tmp_path / "a.gguf", imatrix=im,
                                    chunk_bytes=1 << 16))
        b = run_job(export_gguf_job(m, plan, tmp_path / "b.gguf", imatrix=im,
                                    chunk_bytes=1 << 16, executor=ex))
    assert (tmp_path / "a.gguf").read_bytes() == (tmp_path / "b.gguf").read_bytes()
    assert a.tensors == b.tensors


def test_optimize_quantize_whatif_task_paths_agree(llama):
    ex = InProcessExecutor()
    with open_model(llama) as m:
        o1 = run_job(optimize_job(m, target_bpw=4.5))
        o2 = run_job(optimize_job(m, target_bpw=4.5, executor=ex))
        plan = resolve_plan(m, Recipe(preset="Q4_0"))
        q1 = run_job(quantize_job(m, plan))
        q2 = run_job(quantize_job(m, plan, executor=ex))
        cands = {t.name: ["Q8_0", "Q4_0"] for t in m.tensors if t.quantizable}
        w1 = run_job(whatif_job(m, cands))
        w2 = run_job(whatif_job(m, cands, executor=ex))
    assert o1.recipe().overrides == o2.recipe().overrides and o1.total_error == o2.total_error
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(q1.tensors) == strip(q2.tensors)
    assert w1 == w2 and w1


def test_cancel_on_the_task_path_leaves_no_file(llama, tmp_path):
    cancel = CancelToken()
    with open_model(llama) as m:
        plan = resolve_plan(m, Recipe(preset="Q4_0"))
        job = export_gguf_job(m, plan, tmp_path / "x.gguf", chunk_bytes=1 << 14, cancel=cancel,
                              executor=InProcessExecutor())
        with pytest.raises(Cancelled):
            for i, _ in enumerate(job):
                if i == 5:
                    cancel.cancel()
    assert list(tmp_path.iterdir()) == []


def test_worker_refuses_a_changed_checkpoint(llama, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(llama, copy)
    path = str(copy / "model.safetensors")
    stamp = source_stamp(path)  # the driver's view
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    with pytest.raises(ClusterError, match="different checkpoint"):
        open_source(path, stamp)
    fresh = source_stamp(path)
    assert open_source(path, fresh) is open_source(path, fresh)  # opened once per worker
    with pytest.raises(ClusterError, match="cannot read"):
        open_source(str(tmp_path / "missing.safetensors"), stamp)


def test_executor_argument_forms(monkeypatch):
    assert executor_for(None) == (None, False)
    ex = InProcessExecutor()
    assert executor_for(ex) == (ex, False)
    with pytest.raises(ValueError, match="Ray address"):
        executor_for("  ")
    import qtstudio.jobs.executor_base as mod

    monkeypatch.setattr(mod, "ray_available", lambda: False)
    with pytest.raises(ClusterError, match=r"pip install 'qtstudio\[ray\]'"):
        executor_for("auto")
