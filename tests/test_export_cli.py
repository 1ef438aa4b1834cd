"""`qtstudio-cli export`: the command line over the export job."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from qtstudio.cli import main
from tests.helpers.tiny_models import build_tiny_llama


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("cli") / "llama")


def test_export_preset_with_rule(llama_dir, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    rc = main(["export", str(llama_dir), "--preset", "Q4_K_M", "--rule", "ffn_up=Q8_0",
               "-o", str(out), "--threads", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "wrote" in cap.out and "file type 15" in cap.out
    assert "%" in cap.err  # the progress bar
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.ffn_up.weight"] == "Q8_0"
    assert types["blk.0.ffn_gate.weight"] == "Q4_K"
    assert types["output.weight"] == "Q6_K"


def test_export_recipe_file(llama_dir, tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"version": 1, "preset": "Q8_0", "rules": [],
                                  "overrides": {}, "float_encoding": "F32", "notes": ""}))
    out = tmp_path / "m.gguf"
    assert main(["export", str(llama_dir), "--recipe", str(recipe), "-o", str(out),
                 "--quiet"]) == 0
    assert gguf.GGUFReader(out).fields["general.file_type"].contents() == 7


def test_export_needs_a_plan_and_refuses_the_input(llama_dir, tmp_path, capsys):
    assert main(["export", str(llama_dir), "-o", str(tmp_path / "x.gguf")]) == 2
    assert "needs --preset" in capsys.readouterr().err
    src = tmp_path / "in.gguf"
    assert main(["export", str(llama_dir), "--preset", "F16", "-o", str(src), "--quiet"]) == 0
    before = src.read_bytes()
    assert main(["export", str(src), "--preset", "Q8_0", "-o", str(src), "--quiet"]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_export_bad_preset_and_imatrix(llama_dir, tmp_path, capsys):
    assert main(["export", str(llama_dir), "--preset", "Q9_Z", "-o",
                 str(tmp_path / "x.gguf")]) == 2
    assert "Q9_Z" in capsys.readouterr().err
    bad = tmp_path / "im.dat"
    bad.write_bytes(b"\x01\x00")
    assert main(["export", str(llama_dir), "--preset", "Q4_0", "--imatrix", str(bad), "-o",
                 str(tmp_path / "x.gguf")]) == 2
    assert "im.dat" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im.dat"]


def test_export_container_says_llama_cpp_cannot_run_it(tmp_path, capsys):
    w = {"features.0.weight": np.ones((16, 32), np.float32)}
    save_file(w, str(tmp_path / "cnn.safetensors"))
    out = tmp_path / "c.gguf"
    assert main(["export", str(tmp_path / "cnn.safetensors"), "--rule", ".*=Q8_0", "-o",
                 str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "llama.cpp cannot run this file" in cap.out
    assert [t.name for t in gguf.GGUFReader(out).tensors] == ["features.0.weight"]


def test_format_nnef_dispatches(llama_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    from qtstudio.cli import export as export_cmd

    if importlib.util.find_spec("qtstudio.export.nnef") is None:
        assert main(["export", str(llama_dir), "--format", "nnef", "--preset", "Q4_0", "-o",
                     str(tmp_path / "n")]) == 2
        assert "NNEF export is not available" in capsys.readouterr().err
        return
    seen = {}

    class Fake:
        @staticmethod
        def export_nnef_cli(args):
            seen["args"] = args
            return 0

    monkeypatch.setattr(export_cmd.importlib, "import_module", lambda name: Fake)
    assert main(["export", str(llama_dir), "--format", "nnef", "--preset", "Q4_0", "-o",
                 str(tmp_path / "n")]) == 0
    assert seen["args"].output == str(tmp_path / "n")


def test_ctrl_c_stops_and_leaves_no_file(llama_dir, tmp_path, capsys, monkeypatch):
    import os
    import signal

    from qtstudio.formats.gguf_writer import GGUFStreamWriter

    calls = {"n": 0}
    real = GGUFStreamWriter.write_piece

    def write_then_interrupt(self, piece):
        real(self, piece)
        calls["n"] += 1
        if calls["n"] == 3:  # the user presses Ctrl-C while tensors are being written
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(GGUFStreamWriter, "write_piece", write_then_interrupt)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc = main(["export", str(llama_dir), "--preset", "Q4_K_M", "-o", str(out_dir / "m.gguf")])
    assert rc == 130
    assert "no output file was written" in capsys.readouterr().err
    assert list(out_dir.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_nnef_only_options_are_refused_for_gguf(llama_dir, tmp_path, capsys):
    assert main(["export", str(llama_dir), "--preset", "Q8_0", "--verify", "-o",
                 str(tmp_path / "x.gguf")]) == 2
    assert "--verify: only for --format nnef" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
