"""JobWorker: a plain generator job becomes yielded/returned/errored/finished signals."""

from __future__ import annotations

import threading

import pytest

from qtstudio.jobs import Cancelled, Progress

pytestmark = pytest.mark.gui


def _counting_job(n: int, seen_threads: list):
    def factory(cancel):
        seen_threads.append(threading.get_ident())
        for i in range(n):
            cancel.check()
            yield Progress("count", f"t{i}", i, n, i, n, 0.0)
        return n * 10

    return factory


def test_signals_in_order_and_result(qtbot):
    from qtstudio.gui.worker import JobWorker

    threads: list[int] = []
    w = JobWorker(_counting_job(5, threads), name="count")
    got: list = []
    results: list = []
    w.yielded.connect(got.append)
    w.returned.connect(results.append)
    with qtbot.waitSignals([w.returned, w.finished], order="strict", timeout=5000):
        w.start()
    assert results == [50]
    # throttled, but the last progress always arrives before the result
    assert got and got[-1].index == 4
    assert threads and threads[0] != threading.get_ident()  # ran off the GUI thread


def test_exception_reaches_errored(qtbot):
    from qtstudio.gui.worker import JobWorker

    def factory(cancel):
        yield Progress("x", "", 0, 1, 0, 0, 0.0)
        raise ValueError("bad tensor in model.safetensors")

    w = JobWorker(factory)
    with qtbot.waitSignal(w.errored, timeout=5000) as blocker:
        w.start()
    exc = blocker.args[0]
    assert isinstance(exc, ValueError) and "model.safetensors" in str(exc)
    qtbot.waitUntil(lambda: not w.is_running)


def test_cancel_stops_between_steps(qtbot):
    from qtstudio.gui.worker import JobWorker

    started = threading.Event()
    release = threading.Event()
    steps: list[int] = []

    def factory(cancel):
        for i in range(1000):
            cancel.check()
            steps.append(i)
            if i == 0:
                started.set()
                release.wait(5)
            yield Progress("slow", "", i, 1000, 0, 0, 0.0)
        return "never"

    w = JobWorker(factory)
    returned: list = []
    w.returned.connect(returned.append)
    with qtbot.waitSignal(w.errored, timeout=5000) as blocker:
        w.start()
        assert started.wait(5)
        w.cancel()
        release.set()
    assert isinstance(blocker.args[0], Cancelled)
    assert returned == []
    assert len(steps) == 1


def test_a_worker_runs_once(qtbot):
    from qtstudio.gui.worker import JobWorker

    w = JobWorker(_counting_job(1, []))
    with qtbot.waitSignal(w.finished, timeout=5000):
        w.start()
    with pytest.raises(RuntimeError):
        w.start()
