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
