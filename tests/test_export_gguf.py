"""The GGUF export job without llama.cpp: metadata, names, bytes, container mode, cancel."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
from gguf import GGUFValueType as V
from safetensors.numpy import load_file, save_file

from qtstudio.core.plan import resolve_plan
from qtstudio.core.recipe import Recipe, Rule
from qtstudio.export.gguf import export_gguf, export_gguf_job
from qtstudio.formats import open_model
from qtstudio.formats.atomic import ExportError
from qtstudio.formats.gguf_writer import GGUFStreamWriter
from qtstudio.formats.imatrix import load_imatrix, save_imatrix_gguf
from qtstudio.jobs import Cancelled, CancelToken
from tests.helpers.tiny_models import build_tiny_llama


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def _export(src, out, preset=None, rules=(), **kw):
    with open_model(src) as m:
        target = "gguf_name" if any(t.gguf_name for t in m.tensors) else "name"
        recipe = Recipe(preset=preset, rules=[Rule.parse(r, target=target) for r in rules])
        return export_gguf(m, resolve_plan(m, recipe, has_imatrix="imatrix" in kw), out, **kw)


def _fields(path):
    return {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items()
            if not k.startswith("GGUF.")}


def test_hf_llama_metadata_and_tensors(llama_dir, tmp_path):
    out = tmp_path / "f32.gguf"
    rep = _export(llama_dir, out, "F32")
    assert rep.kind == "llama.cpp" and rep.runnable and rep.file_type == 0
    f = _fields(out)
    cfg = json.loads((llama_dir / "config.json").read_text())
    assert f["general.architecture"] == "llama"
    assert f["llama.block_count"] == cfg["num_hidden_layers"]
    assert f["llama.embedding_length"] == cfg["hidden_size"]
    assert f["llama.feed_forward_length"] == cfg["intermediate_size"]
    assert f["llama.attention.head_count"] == cfg["num_attention_heads"]
    assert f["llama.attention.head_count_kv"] == cfg["num_key_value_heads"]
    assert f["llama.rope.dimension_count"] == cfg["hidden_size"] // cfg["num_attention_heads"]
    assert f["llama.rope.freq_base"] == pytest.approx(10000.0)
    assert f["general.file_type"] == 0
    assert f["general.quantization_version"] == 2  # written always, as llama.cpp's tools do
    # tokenizer: every token and merge of tokenizer.json, in id order
    tj = json.loads((llama_dir / "tokenizer.json").read_text())
    vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.tokens"] == [t for t, _ in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    assert f["tokenizer.ggml.merges"] == merges
    assert f["tokenizer.ggml.bos_token_id"] == tj["model"]["vocab"]["<s>"]
    assert f["tokenizer.ggml.token_type"][0] == gguf.TokenType.CONTROL
    weights = load_file(llama_dir / "model.safetensors")
    r = gguf.GGUFReader(out)
    t = {x.name: np.asarray(x.data) for x in r.tensors}
    np.testing.assert_array_equal(t["blk.1.ffn_down.weight"],
                                  weights["model.layers.1.mlp.down_proj.weight"])
    np.testing.assert_array_equal(t["token_embd.weight"], weights["model.embed_tokens.weight"])
    # q/k rows are reordered (a permutation of the same rows), v is not
    q_hf = weights["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(t["blk.0.attn_q.weight"], q_hf)
    np.testing.assert_array_equal(np.sort(t["blk.0.attn_q.weight"], axis=0), np.sort(q_hf, axis=0))
    np.testing.assert_array_equal(t["blk.0.attn_v.weight"],
                                  weights["model.layers.0.self_attn.v_proj.weight"])


def test_quantized_export_sets_versions_and_types(llama_dir, tmp_path):
    out = tmp_path / "q.gguf"
    rep = _export(llama_dir, out, "Q8_0", rules=[r"ffn_down=Q4_0"])
    f = _fields(out)
    assert f["general.quantization_version"] == 2 and f["general.file_type"] == 7
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.ffn_down.weight"] == "Q4_0"
    assert types["blk.0.ffn_up.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert {t["gguf_name"] for t in rep.tensors} == set(types)


def _gguf_source(path, quantized=False):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 256)).astype(np.float16)
    b = rng.standard_normal((256,)).astype(np.float32)
    with open(path, "wb") as f:
        w = GGUFStreamWriter(f)
        w.add_kv("general.architecture", "llama")
        w.add_kv("custom.odd_u16", 9, V.UINT16)
        w.add_kv("custom.list", [1.5, 2.5], V.ARRAY, V.FLOAT64)
        w.add_kv("split.count", 1, V.UINT16)
        w.add_kv("general.file_type", 1, V.UINT32)
        # order deliberately not alphabetical
        w.add_tensor_info("blk.0.ffn_up.weight", a.shape, "Q8_0" if quantized else "F16")
        w.add_tensor_info("blk.0.attn_norm.weight", b.shape, "F32")
        w.write_header()
        if quantized:
            import qtstudio
            w.write_tensor_data("blk.0.ffn_up.weight",
                                qtstudio.quantize(a.astype(np.float32), "Q8_0").data)
        else:
            w.write_tensor_data("blk.0.ffn_up.weight", a)
        w.write_tensor_data("blk.0.attn_norm.weight", b)
        w.finish()
    return a, b


def test_from_gguf_keeps_keys_types_and_order(tmp_path):
    src = tmp_path / "src.gguf"
    _, b = _gguf_source(src)
    out = tmp_path / "out.gguf"
    rep = _export(src, out, "Q4_0")
    assert rep.kind == "gguf"
    r = gguf.GGUFReader(out)
    assert r.fields["custom.odd_u16"].types == [V.UINT16]
    assert r.fields["custom.list"].contents() == [1.5, 2.5]
    assert "split.count" not in r.fields  # describes the input's shards only
    assert r.fields["general.file_type"].contents() == 2
    assert r.fields["general.quantization_version"].contents() == 2
    assert [t.name for t in r.tensors] == ["blk.0.ffn_up.weight", "blk.0.attn_norm.weight"]
    assert r.tensors[0].tensor_type.name == "Q4_0"
    assert bytes(r.tensors[1].data.tobytes()) == b.tobytes()  # copied untouched


def test_requantize_needs_permission(tmp_path):
    src = tmp_path / "q8.gguf"
    _gguf_source(src, quantized=True)
    with pytest.raises(ExportError, match="allow-requantize"):
        _export(src, tmp_path / "o.gguf", "Q4_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q8.gguf"]
    rep = _export(src, tmp_path / "o.gguf", "Q4_0", allow_requantize=True)
    assert any("requantized from Q8_0" in w for w in rep.warnings)
    # same type in and out is a plain copy, allowed without the flag
    rep = _export(src, tmp_path / "same.gguf", "Q8_0")
    r_src, r_out = gguf.GGUFReader(src), gguf.GGUFReader(tmp_path / "same.gguf")
    assert bytes(r_src.tensors[0].data.tobytes()) == bytes(r_out.tensors[0].data.tobytes())


def test_container_for_other_architectures(tmp_path):
    folder = tmp_path / "resnetish"
    folder.mkdir()
    long_name = "encoder.stages.3.layers.11.convolution_block.pointwise_conv.weight"  # 67 bytes
    w = {long_name: np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32),
         "head.bias": np.arange(10, dtype=np.float32)}
    save_file(w, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "resnet", "depth": 3}))
    out = tmp_path / "c.gguf"
    rep = _export(folder, out, None, rules=[r".*=Q8_0"])
    assert rep.kind == "container" and not rep.runnable
    assert "llama.cpp cannot run" in rep.warnings[0]
    r = gguf.GGUFReader(out)
    assert r.fields["qtstudio.original_architecture"].contents() == "resnet"
    assert json.loads(r.fields["qtstudio.config_json"].contents())["depth"] == 3
    assert {t.name for t in r.tensors} == set(w)
    assert r.tensors[0].tensor_type.name == "Q8_0"  # rows of 64: quantizable
    np.testing.assert_array_equal(np.asarray(r.tensors[1].data), w["head.bias"])
    with open_model(out) as back:  # and qtstudio reopens it, names kept
        assert back.tensor(long_name).dtype == "Q8_0"
        np.testing.assert_allclose(back.load(long_name), w[long_name], atol=0.02)


def test_cancel_leaves_no_file(llama_dir, tmp_path):
    out = tmp_path / "x.gguf"
    token = CancelToken()
    with open_model(llama_dir) as m:
        job = export_gguf_job(m, resolve_plan(m, Recipe(preset="Q4_K_M")), out, cancel=token)
        next(job)
        next(job)
        token.cancel()
        with pytest.raises(Cancelled):
            for _ in job:
                pass
    assert list(tmp_path.iterdir()) == []


def test_chunking_does_not_change_bytes(llama_dir, tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    _export(llama_dir, a, "Q4_K_M")
    _export(llama_dir, b, "Q4_K_M", chunk_bytes=4096)  # a few rows per chunk
    assert a.read_bytes() == b.read_bytes()


def test_imatrix_changes_the_bytes_and_is_recorded(llama_dir, tmp_path):
    sums = {f"blk.{i}.ffn_up.weight": np.linspace(0.01, 50, 256, dtype=np.float32)
            for i in range(2)}
    im_path = tmp_path / "im.gguf"
    save_imatrix_gguf(im_path, sums, dict.fromkeys(sums, 1.0), datasets=["d.txt"],
                      chunk_count=3, chunk_size=64)
    plain, weighted = tmp_path / "p.gguf", tmp_path / "w.gguf"
    _export(llama_dir, plain, "Q4_K_M")
    _export(llama_dir, weighted, "Q4_K_M", imatrix=load_imatrix(im_path))
    rp, rw = gguf.GGUFReader(plain), gguf.GGUFReader(weighted)
    tp = {t.name: bytes(t.data.tobytes()) for t in rp.tensors}
    tw = {t.name: bytes(t.data.tobytes()) for t in rw.tensors}
    changed = sorted(n for n in tp if tp[n] != tw[n])
    assert changed == ["blk.0.ffn_up.weight", "blk.1.ffn_up.weight"]
    assert rw.fields["quantize.imatrix.dataset"].contents() == "d.txt"
    assert rw.fields["quantize.imatrix.entries_count"].contents() == 2
    # a plain name -> weights mapping works the same
    mapped = tmp_path / "m.gguf"
    _export(llama_dir, mapped, "Q4_K_M", imatrix={k: v.copy() for k, v in
                                                  load_imatrix(im_path).entries.items()})
    tm = {t.name: bytes(t.data.tobytes()) for t in gguf.GGUFReader(mapped).tensors}
    assert tm == tw


def test_output_may_not_be_the_input(tmp_path):
    src = tmp_path / "src.gguf"
    _gguf_source(src)
    before = src.read_bytes()
    with pytest.raises(ExportError, match="refusing to overwrite"):
        _export(src, src, "Q8_0")
    assert src.read_bytes() == before


def test_non_finite_weights_fail_cleanly(tmp_path):
    folder = tmp_path / "nan"
    folder.mkdir()
    x = np.ones((4, 64), np.float32)
    x[2, 5] = np.nan
    save_file({"w.weight": x}, str(folder / "model.safetensors"))
    with pytest.raises(ExportError, match=r"w\.weight.*row 2, column 5"):
        _export(folder / "model.safetensors", tmp_path / "o.gguf", None, rules=[r".*=Q8_0"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan"]


def test_disk_full_mid_export_is_clear_and_clean(llama_dir, tmp_path, monkeypatch):
    import errno

    calls = {"n": 0}
    real = GGUFStreamWriter.write_piece

    def fill_disk(self, piece):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, piece)

    monkeypatch.setattr(GGUFStreamWriter, "write_piece", fill_disk)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ExportError, match="not enough disk space to write"):
        _export(llama_dir, out / "m.gguf", "Q8_0")
    assert list(out.iterdir()) == []


def test_llama_without_tokenizer_or_config_keys(llama_dir, tmp_path):
    import shutil

    folder = tmp_path / "notok"
    shutil.copytree(llama_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match=r"no tokenizer\.json or tokenizer\.model"):
        _export(folder, tmp_path / "o.gguf", "F16")
    cfg = json.loads((llama_dir / "config.json").read_text())
    del cfg["num_attention_heads"]
    shutil.copy(llama_dir / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match=r"config\.json: missing 'num_attention_heads'"):
        _export(folder, tmp_path / "o.gguf", "F16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notok"]


def test_bf16_checkpoint_values_are_exact(tmp_path):
    import torch
    from safetensors.torch import load_file as load_torch

    folder = build_tiny_llama(tmp_path / "bf16", dtype="bfloat16", layers=1)
    out = tmp_path / "f32.gguf"
    _export(folder, out, "F32")
    weights = load_torch(folder / "model.safetensors")
    assert weights["model.layers.0.mlp.up_proj.weight"].dtype == torch.bfloat16
    t = {x.name: np.asarray(x.data) for x in gguf.GGUFReader(out).tensors}
    np.testing.assert_array_equal(t["blk.0.ffn_up.weight"],
                                  weights["model.layers.0.mlp.up_proj.weight"].float().numpy())


def test_expert_tensors_take_their_own_importance_vectors(tmp_path):
    import qtstudio

    rng = np.random.default_rng(5)
    experts = rng.standard_normal((3, 8, 256)).astype(np.float32)
    src = tmp_path / "moe.gguf"
    with open(src, "wb") as f:
        w = GGUFStreamWriter(f)
        w.add_kv("general.architecture", "llama")
        w.add_tensor_info("blk.0.ffn_up_exps.weight", experts.shape, "F32")
        w.write_header()
        w.write_tensor_data("blk.0.ffn_up_exps.weight", experts)
        w.finish()
    weights = rng.random((3, 256)).astype(np.float32) ** 4 * 30
    im_path = tmp_path / "im.gguf"
    save_imatrix_gguf(im_path, {"blk.0.ffn_up_exps.weight": weights},
                      {"blk.0.ffn_up_exps.weight": np.ones(3, np.float32)}, datasets=["d"],
                      chunk_count=1, chunk_size=1)
    out = tmp_path / "q.gguf"
    _export(src, out, None, rules=["ffn_up_exps=Q4_K"], imatrix=load_imatrix(im_path),
            chunk_bytes=5 * 256 * 4)  # chunks of 5 rows: some would straddle two experts
    data = np.asarray(gguf.GGUFReader(out).tensors[0].data).reshape(3, -1)
    for m in range(3):
        expect = qtstudio.quantize(experts[m], "Q4_K", imatrix=weights[m]).data.reshape(-1)
        np.testing.assert_array_equal(data[m], expect)
    assert not np.array_equal(
        data[1], qtstudio.quantize(experts[1], "Q4_K", imatrix=weights[0]).data.reshape(-1))
