"""Never lose the user's data: writing commands refuse their inputs and non-regular files, and a
stop signal mid-export leaves no temporary file behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from qtstudio.cli import main
from qtstudio.core.demo import demo_model_path
from tests.helpers.raw_checkpoints import write_hf_llama


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sharded_folder(folder: Path) -> Path:
    """A two-shard safetensors folder with its index, as Hugging Face writes big models."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    shards = {"model-00001-of-00002.safetensors": {"a.weight": rng.standard_normal((64, 64))},
              "model-00002-of-00002.safetensors": {"b.weight": rng.standard_normal((64, 64))}}
    weight_map = {}
    for shard, tensors in shards.items():
        save_file({k: v.astype(np.float32) for k, v in tensors.items()}, folder / shard)
        weight_map.update(dict.fromkeys(tensors, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": weight_map}))
    return folder


@pytest.fixture
def model_file(tmp_path) -> Path:
    p = tmp_path / "model.safetensors"
    p.write_bytes(demo_model_path().read_bytes())
    return p


WRITERS = [
    ["plan", "{model}", "--preset", "Q4_0", "--out", "{out}"],
    ["quantize", "{model}", "--preset", "Q4_0", "--report", "{out}", "--quiet"],
    ["optimize", "{model}", "--target-bpw", "5", "--out", "{out}", "--quiet"],
    ["bench", "{model}", "--preset", "Q4_0", "--json", "{out}", "--quiet", "--repeats", "1"],
    ["whatif", "{model}", "--encodings", "Q4_0", "--json", "{out}", "--quiet"],
    ["export", "{model}", "--preset", "Q4_0", "-o", "{out}", "--quiet"],
]


def _argv(template: list[str], model: Path | str, out: Path | str) -> list[str]:
    return [a.format(model=model, out=out) for a in template]


@pytest.mark.parametrize("template", WRITERS, ids=lambda t: t[0])
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_writers_refuse_their_model(template, how, model_file, capsys):
    before = _digest(model_file)
    out = model_file
    if how == "symlink":
        out = model_file.parent / "link.safetensors"
        out.symlink_to(model_file)
    elif how == "hardlink":
        out = model_file.parent / "hard.safetensors"
        os.link(model_file, out)
    assert main(_argv(template, model_file, out)) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite the input" in err and str(model_file.name) in err
    assert _digest(model_file) == before
    assert not list(model_file.parent.glob(".*.part"))


@pytest.mark.parametrize("template", [WRITERS[0], WRITERS[5]], ids=lambda t: t[0])
def test_writers_refuse_a_shard_of_a_folder(template, tmp_path, capsys):
    folder = _sharded_folder(tmp_path / "sharded")
    shard = folder / "model-00002-of-00002.safetensors"
    index = folder / "model.safetensors.index.json"
    digests = {p: _digest(p) for p in (shard, index)}
    for model in (folder, index):
        for out in (shard, index):
            assert main(_argv(template, model, out)) == 2, (model, out)
            assert "refusing to overwrite the input" in capsys.readouterr().err
    assert {p: _digest(p) for p in digests} == digests


def test_writers_refuse_the_config_and_the_recipe(tmp_path, capsys):
    folder = write_hf_llama(tmp_path / "llama")
    cfg = folder / "config.json"
    before = cfg.read_bytes()
    assert main(["plan", str(folder), "--preset", "Q4_0", "--out", str(cfg)]) == 2
    assert cfg.read_bytes() == before
    recipe = tmp_path / "r.json"
    assert main(["plan", str(folder), "--preset", "Q4_0", "--out", str(recipe)]) == 0
    saved = recipe.read_bytes()
    assert main(["plan", str(folder), "--recipe", str(recipe), "--out", str(recipe)]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert recipe.read_bytes() == saved


def test_plan_out_into_a_model_folder_as_a_new_file_is_fine(tmp_path):
    folder = write_hf_llama(tmp_path / "llama")
    out = folder / "plan.json"
    assert main(["plan", str(folder), "--preset", "Q4_0", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["recipe"]["preset"] == "Q4_0"


@pytest.mark.parametrize("template", WRITERS, ids=lambda t: t[0])
def test_writers_refuse_non_regular_outputs(template, model_file, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "afolder"
    folder.mkdir()
    for out, kind in ((Path("/dev/full"), "character device"), (Path("/dev/null"),
                                                                 "character device"),
                      (fifo, "FIFO"), (folder, "folder")):
        assert main(_argv(template, model_file, out)) == 2, out
        err = capsys.readouterr().err
        assert kind in err and str(out) in err, err
    assert Path("/dev/null").is_char_device()
    assert not list(tmp_path.glob(".*.part")) and not list(Path("/dev").glob(".full.*"))
    assert list(folder.iterdir()) == []


def test_nnef_export_refuses_its_input_and_devices(tmp_path, capsys):
    assert main(["export", "demo", "--format", "nnef", "--preset", "Q4_0",
                 "-o", str(demo_model_path())]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert main(["export", "demo", "--format", "nnef", "--preset", "Q4_0",
                 "-o", "/dev/full"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    # an NNEF folder export may not replace a folder that holds the input
    folder = write_hf_llama(tmp_path / "llama")
    assert main(["export", str(folder / "model.safetensors"), "--format", "nnef",
                 "--preset", "Q4_0", "-o", str(folder)]) == 2
    assert "is inside it" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_stop_signal_mid_export_leaves_nothing(signum, model_file, tmp_path, monkeypatch,
                                               capsys):
    """The signal lands while the job runs (after its first progress report): the export stops
    at its next safe point, the temporary file is removed, exit status is 128 + N."""
    import qtstudio.export.gguf as gguf_mod

    real = gguf_mod.export_gguf_job

    def job_then_signal(*a, **k):
        gen = real(*a, **k)
        first = next(gen)
        assert list(tmp_path.glob(".out.gguf.*.part")), "the temporary file exists mid-job"
        os.kill(os.getpid(), signum)
        yield first
        return (yield from gen)

    monkeypatch.setattr(gguf_mod, "export_gguf_job", job_then_signal)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    out = tmp_path / "out.gguf"
    rc = main(["export", str(model_file), "--preset", "Q4_0", "-o", str(out), "--quiet"])
    assert rc == 128 + signum
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    assert f"stopped by {name}" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".*.part"))
    # the handlers are put back afterwards
    assert {s: signal.getsignal(s) for s in handlers} == handlers


def test_sigterm_to_a_real_export_process(tmp_path):
    """End to end: a separate qtstudio-cli process writing a bigger GGUF gets SIGTERM after its
    progress starts; it exits 143 and leaves only the files that were there before."""
    rng = np.random.default_rng(1)
    model = tmp_path / "big.safetensors"
    save_file({f"l{i}.weight": rng.standard_normal((1024, 2048)).astype(np.float32)
               for i in range(12)}, model)
    out = tmp_path / "big.gguf"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from qtstudio.launch import cli; sys.exit(cli())",
         "export", str(model), "--preset", "Q4_K_M", "-o", str(out), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # non-tty progress: one line per update; the first one means the job (and .part) exists
    line = ""
    while "%" not in line:
        line = proc.stderr.readline()
        assert line, "the export ended before reporting progress"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert "stopped by SIGTERM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]
