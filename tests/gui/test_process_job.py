"""Jobs in a worker process: results, errors and crashes come back as the thread jobs' do."""

from __future__ import annotations

import pytest

from qtstudio.jobs import CancelToken, run_job

pytestmark = pytest.mark.gui


def test_result_and_progress_come_back(small_model):
    from qtstudio.gui.process_job import process_factory

    seen = []
    job = process_factory("tests.gui.child_jobs:count_tensors", small_model / "model.safetensors",
                          10)(CancelToken())
    assert run_job(job, seen.append) == 210
    assert seen and seen[0].stage == "count"


def test_error_keeps_its_type_and_message(small_model):
    from qtstudio.gui.process_job import process_factory

    job = process_factory("tests.gui.child_jobs:refuse", small_model / "model.safetensors")(
        CancelToken())
    with pytest.raises(ValueError, match="unsupported layout"):
        run_job(job)


def test_a_crashed_worker_is_an_error_not_a_hang(small_model):
    from qtstudio.gui.process_job import JobError, process_factory

    job = process_factory("tests.gui.child_jobs:die", small_model / "model.safetensors")(
        CancelToken())
    with pytest.raises(JobError, match="exit code 3"):
        run_job(job)


def test_jobs_see_the_windows_current_settings(small_model, monkeypatch):
    """The fork server keeps the environment of its start; each job must still read the
    QTSTUDIO_* values set since (a new cache folder), and not one since removed."""
    from qtstudio.gui.process_job import process_factory

    path = small_model / "model.safetensors"

    def child_sees(name: str):
        return run_job(process_factory("tests.gui.child_jobs:read_env", path, name)(
            CancelToken()))

    monkeypatch.setenv("QTSTUDIO_CACHE", "/first")
    monkeypatch.setenv("QTSTUDIO_TEST_GONE", "x")
    assert child_sees("QTSTUDIO_CACHE") == "/first"  # the server may start here
    monkeypatch.setenv("QTSTUDIO_CACHE", "/second")
    monkeypatch.delenv("QTSTUDIO_TEST_GONE")
    assert child_sees("QTSTUDIO_CACHE") == "/second"
    assert child_sees("QTSTUDIO_TEST_GONE") is None
