"""Job targets for process_job tests (imported by the worker process by name)."""

from __future__ import annotations

import os
import time

from qtstudio.jobs import Progress


def die(model, *, cancel=None):
    """A native crash, as far as the parent can tell: the process vanishes mid-job."""
    yield Progress("crash", "", 0, 1, 0, 0, 0.0)
    time.sleep(0.2)
    os._exit(3)


def count_tensors(model, scale, *, cancel=None):
    for i, t in enumerate(model.tensors):
        cancel.check()
        yield Progress("count", t.name, i, len(model.tensors), 0, 0, 0.0)
    return len(model.tensors) * scale


def refuse(model, *, cancel=None):
    yield Progress("refuse", "", 0, 1, 0, 0, 0.0)
    raise ValueError(f"{model.path}: tensor x has an unsupported layout")


def read_env(model, name, *, cancel=None):
    yield Progress("env", "", 0, 1, 0, 0, 0.0)
    return os.environ.get(name)
