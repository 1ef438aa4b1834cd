"""Run a model job in a child process, seen from the parent as an ordinary generator job.

Threads were not enough: a job thread that holds the GIL while the OS has descheduled it (two
busy cores, other processes) keeps the event loop waiting for 100+ ms. In a child process the job
has its own interpreter; the parent only waits on a pipe, which never holds the GIL.

The child reopens the model from its path (models hold memory maps, which do not pickle), calls
``module:function(model, *args, cancel=token, **kwargs)`` and streams back progress, then the
result. Qt-free: the child never imports Qt.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import pickle
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtstudio.jobs import Cancelled, CancelToken, Progress, run_job

_POLL_S = 0.05
_MIN_SEND_INTERVAL_S = 0.03
_CHILD_NICENESS = 10


class JobError(RuntimeError):
    """An error from the child whose exception type could not travel back as itself."""


@dataclass(frozen=True)
class JobSpec:
    """``target`` is "package.module:function"; it receives the reopened model first."""

    target: str
    model_path: Path
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def _resolve(target: str):
    mod, _, fn = target.partition(":")
    return getattr(importlib.import_module(mod), fn)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a JobError with its message."""
    try:
        back = pickle.loads(pickle.dumps(exc))
        if isinstance(back, BaseException) and str(back) == str(exc):
            return back
    except Exception:
        pass
    return JobError(str(exc) or type(exc).__name__)


def _own_env() -> dict[str, str]:
    """The window's QTSTUDIO_* settings now (the cache folder and the others read at job time)."""
    return {k: v for k, v in os.environ.items() if k.startswith("QTSTUDIO_")}


def _apply_env(env: dict[str, str]) -> None:
    """Children fork from a server started with the first job: its environment is that moment's,
    so the job takes the window's current QTSTUDIO_* settings instead."""
    for k in [k for k in os.environ if k.startswith("QTSTUDIO_") and k not in env]:
        del os.environ[k]
    os.environ.update(env)


def _child(conn, spec: JobSpec, env: dict[str, str]) -> None:
    """Child process body: run the job, forward progress, answer cancel requests."""
    _apply_env(env)
    with contextlib.suppress(AttributeError, OSError):
        os.nice(_CHILD_NICENESS)  # the window's process must win the CPU
    token = CancelToken()

    def listen() -> None:
        try:
            while True:
                if conn.recv() == "cancel":
                    token.cancel()
                    return
        except (EOFError, OSError):  # parent gone: stop too
            token.cancel()

    threading.Thread(target=listen, daemon=True).start()
    from qtstudio.formats import open_model

    try:
        with open_model(spec.model_path) as model:
            gen = _resolve(spec.target)(model, *spec.args, cancel=token, **spec.kwargs)
            result = run_job(gen, lambda p: conn.send(("progress", p)),
                             min_interval_s=_MIN_SEND_INTERVAL_S)
        conn.send(("result", result))
    except Cancelled:
        conn.send(("cancelled", None))
    except BaseException as exc:
        conn.send(("error", _portable(exc)))
    finally:
        conn.close()


_PRELOAD = ["qtstudio.gui.process_job", "qtstudio.jobs.quantize", "qtstudio.jobs.optimize",
            "qtstudio.formats",
            "qtstudio.jobs.benchmark"]


def _context():
    """A fork server where the platform has one: children fork from a small, already warm
    process, so starting a job neither forks the GUI (unsafe with Qt's threads) nor stalls it
    while a fresh interpreter spawns. Elsewhere, spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


#: BLAS pools in job processes stay single-threaded: the native kernels bring their own threads,
#: and a busy-waiting BLAS pool beside them turns a 0.1 ms float32 matmul into 90 ms
_JOB_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def warm_up() -> None:
    """Start the fork server now (at window creation) rather than with the first job."""
    ctx = _context()
    if ctx.get_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    saved = {k: os.environ.get(k) for k in _JOB_ENV}
    os.environ.update({k: v for k, v in _JOB_ENV.items() if saved[k] is None})
    try:
        forkserver.ensure_running()  # the server (and every job forked from it) keeps this env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def run_in_process(spec: JobSpec, cancel: CancelToken) -> Generator[Progress, None, Any]:
    """Generator job for JobWorker: yields the child's progress, returns its result."""
    warm_up()
    ctx = _context()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, spec, _own_env()), daemon=True,
                       name=f"qtstudio-{spec.target.rpartition(':')[2]}")
    proc.start()
    child.close()
    asked = False
    try:
        while True:
            if cancel.cancelled and not asked:
                parent.send("cancel")
                asked = True
            if not parent.poll(_POLL_S):
                if not proc.is_alive() and not parent.poll(0):
                    raise JobError(f"the {spec.target} worker process exited unexpectedly "
                                   f"(exit code {proc.exitcode})")
                continue
            try:
                kind, value = parent.recv()
            except EOFError:
                proc.join(5)  # the pipe closes a moment before the exit status is known
                raise JobError(f"the {spec.target} worker process exited unexpectedly "
                               f"(exit code {proc.exitcode})") from None
            if kind == "progress":
                yield value
            elif kind == "result":
                return value
            elif kind == "cancelled":
                raise Cancelled("cancelled")
            else:
                raise value
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(1)


def process_factory(target: str, model_path: Path, *args: Any, **kwargs: Any):
    """A JobWorker factory running ``target`` on a fresh copy of the model in a child process."""
    spec = JobSpec(target, Path(model_path), args, dict(kwargs))
    return lambda cancel: run_in_process(spec, cancel)
