"""Recipes: JSON round trips, validation messages, llama-quantize --tensor-type lines."""

from __future__ import annotations

import json

import pytest

from qtstudio.core.recipe import RECIPE_VERSION, QuantMethod, Recipe, RecipeError, Rule
from qtstudio.formats import open_model
from tests.helpers.raw_checkpoints import write_hf_llama


def _sample() -> Recipe:
    return Recipe(preset="q4_k_m", rules=[Rule(r"attn_v", "q8_0", target="gguf_name"),
                                          Rule("*.mlp.*", "Q5_K", syntax="glob")],
                  overrides={"lm_head.weight": "q6_k"}, float_encoding="F16", notes="hi",
                  output_tensor_type="Q8_0", pure=False)


def test_round_trip(tmp_path):
    r = _sample()
    assert r.preset == "Q4_K_M" and r.rules[0].encoding == "Q8_0"
    r.save(tmp_path / "r.json")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["version"] == RECIPE_VERSION and doc["format"] == "qtstudio-recipe"
    back = Recipe.load(tmp_path / "r.json")
    assert back.to_dict() == r.to_dict()
    assert back.overrides == {"lm_head.weight": "Q6_K"}


@pytest.mark.parametrize("doc, message", [
    ({"version": 99}, "newer than this qtstudio"),
    ({"version": 1, "bogus": 1}, "unknown recipe fields: bogus"),
    ({"version": 1, "rules": [{"pattern": "(", "encoding": "Q4_0"}]}, "not a valid regex"),
    ({"version": 1, "rules": [{"pattern": "x", "encoding": "Q9_9"}]}, "unknown encoding 'Q9_9'"),
    ({"version": 1, "preset": "Q7_K"}, "unknown preset"),
    ({"version": 1, "float_encoding": "Q4_0"}, "float_encoding must be F32, F16 or BF16"),
    ({"version": 1, "overrides": {"a": 3}}, "'overrides' must map"),
    ([1, 2], "must be a JSON object"),
    ({"version": 1, "method": "awq"}, "method must be one of plain, gptq"),
    ({"version": 1, "method": {"name": "gptq", "damp_percent": 1.5}}, "damp_percent must be"),
    ({"version": 1, "method": {"name": "gptq", "ctx": 1}}, "ctx must be an integer of at least 2"),
    ({"version": 1, "method": {"name": "gptq", "desc_act": "yes"}}, "desc_act must be true"),
    ({"version": 1, "method": {"name": "gptq", "bits": 4}}, r"method: unknown fields \['bits'\]"),
    ({"version": 1, "method": {"damp_percent": 0.1}}, "method needs a name"),
    ({"version": 1, "method": [1]}, "method must be a name or an object"),
])
def test_validation_messages(tmp_path, doc, message):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(RecipeError, match=message):
        Recipe.load(p)


def test_method_round_trip_and_old_recipes(tmp_path):
    gptq = QuantMethod("gptq", damp_percent=0.05, block_size=64, desc_act=True,
                       data="/data/cal.txt", ctx=256, windows=32)
    r = Recipe(overrides={"w": "Q4_K"}, method=gptq)
    r.save(tmp_path / "g.json")
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["method"] == {"name": "gptq", "damp_percent": 0.05, "block_size": 64,
                             "desc_act": True, "data": "/data/cal.txt", "ctx": 256,
                             "windows": 32}
    assert Recipe.load(tmp_path / "g.json").method == gptq
    # plain rounding writes no method field, so readers from before it load the file; a recipe
    # without the field (every older one) is plain rounding
    plain = Recipe(overrides={"w": "Q4_K"}).to_dict()
    assert "method" not in plain
    del doc["method"]
    assert Recipe.from_dict(doc).method == QuantMethod()
    assert Recipe.from_dict({"version": 1, "method": "gptq"}).method.name == "gptq"


def test_bad_json_file(tmp_path):
    (tmp_path / "r.json").write_text("{")
    with pytest.raises(RecipeError, match=r"r\.json: not valid JSON"):
        Recipe.load(tmp_path / "r.json")


def test_tensor_type_lines_round_trip():
    lines = ["# my mix", "--tensor-type attn_v=q8_0", r"blk\.[0-3]\.ffn_down=Q6_K", "",
             "output\\.weight=q8_0"]
    r = Recipe.from_tensor_type_lines(lines, preset="Q4_K_M")
    assert [(x.pattern, x.encoding, x.target) for x in r.rules] == [
        ("attn_v", "Q8_0", "gguf_name"), (r"blk\.[0-3]\.ffn_down", "Q6_K", "gguf_name"),
        (r"output\.weight", "Q8_0", "gguf_name")]
    assert r.to_tensor_type_lines() == ["attn_v=q8_0", r"blk\.[0-3]\.ffn_down=q6_k",
                                        r"output\.weight=q8_0"]
    with pytest.raises(RecipeError, match="expected REGEX=TYPE"):
        Recipe.from_tensor_type_lines(["no_equals_sign"])


def test_export_of_name_rules_and_overrides(tmp_path):
    glob = Recipe(rules=[Rule("blk.*.attn_v.weight", "Q8_0", syntax="glob", target="gguf_name")])
    assert glob.to_tensor_type_lines() == [r"^blk\..*\.attn_v\.weight$=q8_0"]
    with pytest.raises(RecipeError, match="matches checkpoint names"):
        Recipe(rules=[Rule("q_proj", "Q8_0")]).to_tensor_type_lines()
    with open_model(write_hf_llama(tmp_path / "m", layers=1, hidden=64, ffn=64)) as m:
        r = Recipe(overrides={"model.layers.0.self_attn.v_proj.weight": "Q8_0"})
        assert r.to_tensor_type_lines(m) == [r"^blk\.0\.attn_v\.weight$=q8_0"]


def test_saved_plan_loads_as_recipe(tmp_path):
    doc = {"recipe": _sample().to_dict(), "tensors": [], "total_bytes": 0}
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    assert Recipe.load(tmp_path / "plan.json").preset == "Q4_K_M"
