"""Recipes: JSON round trips, validation messages, llama-quantize --tensor-type lines."""

from __future__ import annotations

import json

import pytest

from qtstudio.core.recipe import RECIPE_VERSION, Recipe, RecipeError, Rule
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
])
def test_validation_messages(tmp_path, doc, message):
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(RecipeError, match=message):
        Recipe.load(p)


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
