"""Recipes: the user's whole per-tensor choice in one versioned JSON document.

A recipe holds an optional preset (a llama-quantize mixture), ordered rules (first match wins,
as llama-quantize's ``--tensor-type``), per-tensor overrides, the storage for tensors that stay
float, the quantization method (plain rounding, or GPTQ with its parameters and calibration
data), and free-form notes. It round-trips to JSON and to llama-quantize ``--tensor-type`` lines.

The method is optional in JSON: a recipe without one (every recipe written before it existed)
means plain rounding, and a plain recipe is written without the field, so older readers load it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .encodings import get_encoding

if TYPE_CHECKING:
    from .model import Model, TensorInfo

RECIPE_VERSION = 1
MAX_RECIPE_BYTES = 16 * 1024 * 1024


class RecipeError(ValueError):
    """A recipe or rule that cannot be used, with the reason."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def glob_to_regex(pattern: str) -> str:
    """A glob as a plain regex (ECMAScript-compatible: llama-quantize uses std::regex)."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "^" + "".join(out) + "$"


@dataclass(frozen=True)
class Rule:
    """``pattern`` -> ``encoding`` for every tensor it matches (regex search or full glob)."""

    pattern: str
    encoding: str
    syntax: Literal["regex", "glob"] = "regex"
    target: Literal["name", "gguf_name"] = "name"

    def __post_init__(self) -> None:
        for fld in ("pattern", "encoding", "syntax", "target"):
            if not isinstance(getattr(self, fld), str):
                raise RecipeError(f"rule {fld} must be a string, got "
                                  f"{_short(getattr(self, fld))}")
        if self.syntax not in ("regex", "glob"):
            raise RecipeError(f"rule {self.pattern!r}: syntax must be 'regex' or 'glob', "
                              f"got {self.syntax!r}")
        if self.target not in ("name", "gguf_name"):
            raise RecipeError(f"rule {self.pattern!r}: target must be 'name' or 'gguf_name', "
                              f"got {self.target!r}")
        if not self.pattern:
            raise RecipeError("a rule needs a non-empty pattern")
        if self.syntax == "regex":
            try:
                re.compile(self.pattern)
            except (re.error, RecursionError, OverflowError) as exc:
                raise RecipeError(f"rule {_short(self.pattern)} is not a valid regex: {exc}") \
                    from None
        try:
            canonical = get_encoding(self.encoding).name
        except ValueError as exc:
            raise RecipeError(f"rule {_short(self.pattern)}: {exc}") from None
        object.__setattr__(self, "encoding", canonical)

    def matches(self, info: TensorInfo) -> bool:
        text = info.gguf_name if self.target == "gguf_name" else info.name
        if text is None:
            return False
        if self.syntax == "glob":
            return fnmatch.fnmatchcase(text, self.pattern)
        return re.search(self.pattern, text) is not None

    def as_regex(self) -> str:
        return self.pattern if self.syntax == "regex" else glob_to_regex(self.pattern)

    def to_dict(self) -> dict[str, str]:
        return {"pattern": self.pattern, "encoding": self.encoding, "syntax": self.syntax,
                "target": self.target}

    @classmethod
    def from_dict(cls, d: Any) -> Rule:
        if not isinstance(d, dict):
            raise RecipeError(f"a rule must be an object, got {d!r}")
        unknown = set(d) - {"pattern", "encoding", "syntax", "target"}
        if unknown:
            raise RecipeError(f"rule {d.get('pattern')!r}: unknown fields {sorted(unknown)}")
        if not isinstance(d.get("pattern"), str) or not isinstance(d.get("encoding"), str):
            raise RecipeError(f"a rule needs string 'pattern' and 'encoding': {_short(d)}")
        return cls(d["pattern"], d["encoding"], d.get("syntax", "regex"),
                   d.get("target", "name"))

    @classmethod
    def parse(cls, text: str, *, target: Literal["name", "gguf_name"] = "name") -> Rule:
        """``REGEX=TYPE`` (the last '=' splits, so regexes may hold '=')."""
        pattern, sep, enc = text.strip().rpartition("=")
        if not sep or not pattern or not enc:
            raise RecipeError(f"expected REGEX=TYPE, got {text!r}")
        return cls(pattern, enc.strip(), "regex", target)


METHODS = ("plain", "gptq")
_METHOD_FIELDS = {"name", "damp_percent", "block_size", "desc_act", "data", "ctx", "windows"}


@dataclass(frozen=True)
class QuantMethod:
    """How the planned types are filled: ``plain`` rounding, or ``gptq`` (error-compensating, on
    calibration activations). The GPTQ fields are its dampening, lazy-batch size and act order,
    and the calibration text (``data``, a path) cut into ``windows`` windows of ``ctx`` tokens:
    together they decide its bytes."""

    name: str = "plain"
    damp_percent: float = 0.01
    block_size: int = 128
    desc_act: bool = False
    data: str | None = None
    ctx: int = 512
    windows: int = 64

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise RecipeError(f"method must be one of {', '.join(METHODS)}, got "
                              f"{_short(self.name)}")
        if isinstance(self.damp_percent, bool) or not isinstance(self.damp_percent,
                                                                  (int, float)) \
                or not 0 < self.damp_percent < 1:
            raise RecipeError(f"method damp_percent must be a number in (0, 1), got "
                              f"{_short(self.damp_percent)}")
        for fld, low in (("block_size", 1), ("ctx", 2), ("windows", 1)):
            v = getattr(self, fld)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise RecipeError(f"method {fld} must be an integer of at least {low}, got "
                                  f"{_short(v)}")
        if not isinstance(self.desc_act, bool):
            raise RecipeError(f"method desc_act must be true or false, got "
                              f"{_short(self.desc_act)}")
        if self.data is not None and not isinstance(self.data, str):
            raise RecipeError(f"method data must be a file path, got {_short(self.data)}")
        object.__setattr__(self, "damp_percent", float(self.damp_percent))

    @property
    def is_plain(self) -> bool:
        return self.name == "plain"

    def to_dict(self) -> dict[str, Any]:
        if self.is_plain:
            return {"name": "plain"}
        return {"name": self.name, "damp_percent": self.damp_percent,
                "block_size": self.block_size, "desc_act": self.desc_act, "data": self.data,
                "ctx": self.ctx, "windows": self.windows}

    @classmethod
    def from_dict(cls, d: Any) -> QuantMethod:
        if isinstance(d, str):
            return cls(d)
        if not isinstance(d, dict):
            raise RecipeError(f"method must be a name or an object, got {_short(d)}")
        unknown = set(d) - _METHOD_FIELDS
        if unknown:
            raise RecipeError(f"method: unknown fields {sorted(unknown)}")
        if "name" not in d:
            raise RecipeError(f"method needs a name ({' or '.join(METHODS)}): {_short(d)}")
        return cls(**d)


@dataclass
class Recipe:
    """Everything that decides a plan, except the model."""

    preset: str | None = None
    rules: list[Rule] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    #: storage for tensors that stay float (norms, biases, 1-D tensors)
    float_encoding: str = "F32"
    notes: str = ""
    #: encoding for quantizable tensors no preset, rule or override covers (None: stay float)
    default_encoding: str | None = None
    #: llama-quantize --output-tensor-type / --token-embedding-type / --pure
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    pure: bool = False
    #: how the planned types are filled (plain rounding or GPTQ)
    method: QuantMethod = field(default_factory=QuantMethod)
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for fld in ("preset", "float_encoding", "default_encoding", "output_tensor_type",
                    "token_embedding_type"):
            val = getattr(self, fld)
            if val is not None and not isinstance(val, str):
                raise RecipeError(f"{fld} must be a name (a string), got {_short(val)}")
        if not isinstance(self.pure, bool):
            raise RecipeError(f"pure must be true or false, got {_short(self.pure)}")
        if not isinstance(self.method, QuantMethod):
            self.method = QuantMethod.from_dict(self.method)
        if self.preset is not None:
            from .presets import PRESETS
            key = self.preset.upper()
            if key not in PRESETS:
                raise RecipeError(f"unknown preset {self.preset!r}; presets: "
                                  f"{', '.join(PRESETS)}")
            self.preset = key
        for fld in ("float_encoding", "default_encoding", "output_tensor_type",
                    "token_embedding_type"):
            val = getattr(self, fld)
            if val is not None:
                try:
                    setattr(self, fld, get_encoding(val).name)
                except ValueError as exc:
                    raise RecipeError(f"{fld}: {exc}") from None
        fenc = get_encoding(self.float_encoding)
        if fenc.ggml_type not in (0, 1, 30):
            raise RecipeError(f"float_encoding must be F32, F16 or BF16, got {fenc.name}")
        clean: dict[str, str] = {}
        for name, enc in self.overrides.items():
            try:
                clean[name] = get_encoding(enc).name
            except (ValueError, TypeError) as exc:
                raise RecipeError(f"override for {name!r}: {exc}") from None
        self.overrides = clean
        self.rules = [r if isinstance(r, Rule) else Rule.from_dict(r) for r in self.rules]

    # --- JSON -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": "qtstudio-recipe",
            "version": self.version,
            "preset": self.preset,
            "rules": [r.to_dict() for r in self.rules],
            "overrides": dict(self.overrides),
            "float_encoding": self.float_encoding,
            "default_encoding": self.default_encoding,
            "output_tensor_type": self.output_tensor_type,
            "token_embedding_type": self.token_embedding_type,
            "pure": self.pure,
            "notes": self.notes,
        }
        if not self.method.is_plain:
            d["method"] = self.method.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Recipe:
        if not isinstance(d, dict):
            raise RecipeError("a recipe must be a JSON object")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RecipeError(f"recipe version must be a positive integer, got {_short(version)}")
        if version > RECIPE_VERSION:
            raise RecipeError(f"recipe version {version} is newer than this qtstudio understands "
                              f"(up to {RECIPE_VERSION})")
        known = {"format", "version", "preset", "rules", "overrides", "float_encoding",
                 "default_encoding", "output_tensor_type", "token_embedding_type", "pure",
                 "notes", "method"}
        unknown = set(d) - known
        if unknown:
            raise RecipeError(f"unknown recipe fields: {', '.join(sorted(unknown))}")
        rules = d.get("rules", [])
        overrides = d.get("overrides", {})
        if not isinstance(rules, list):
            raise RecipeError("'rules' must be a list")
        if not isinstance(overrides, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in overrides.items()):
            raise RecipeError("'overrides' must map tensor names to encoding names")
        notes = d.get("notes", "")
        if not isinstance(notes, str):
            raise RecipeError("'notes' must be a string")
        return cls(
            preset=d.get("preset"),
            rules=[Rule.from_dict(r) for r in rules],
            overrides=dict(overrides),
            float_encoding=d.get("float_encoding") or "F32",
            notes=notes,
            default_encoding=d.get("default_encoding"),
            output_tensor_type=d.get("output_tensor_type"),
            token_embedding_type=d.get("token_embedding_type"),
            pure=d.get("pure", False),
            method=QuantMethod.from_dict(d.get("method", "plain")),
            version=version,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        p = Path(path)
        from qtstudio.core.regular_files import read_regular

        text = read_regular(p, MAX_RECIPE_BYTES, "a recipe",
                            lambda path, problem: RecipeError(f"{path}: {problem}"))
        try:
            doc = json.loads(text.decode("utf-8"))
        # ValueError also covers integers beyond Python's digit limit
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RecipeError(f"{p}: not valid JSON ({exc})") from None
        # A plan saved by `qtstudio-cli plan --out` carries its recipe.
        if isinstance(doc, dict) and isinstance(doc.get("recipe"), dict) and "tensors" in doc:
            doc = doc["recipe"]
        try:
            return cls.from_dict(doc)
        except RecipeError as exc:
            raise RecipeError(f"{p}: {exc}") from None

    # --- llama-quantize --tensor-type lines -------------------------------------------------
    def to_tensor_type_lines(self, model: Model | None = None) -> list[str]:
        """``REGEX=type`` lines for llama-quantize, which matches GGUF tensor names.

        Rules over GGUF names export as they are; per-tensor overrides export as anchored
        patterns when ``model`` tells us each tensor's GGUF name. Rules over checkpoint names
        cannot be expressed and are refused rather than silently mistranslated.
        """
        lines: list[str] = []
        if model is not None:
            for name, enc in self.overrides.items():
                g = model.tensor(name).gguf_name if name in model else None
                if g is None:
                    raise RecipeError(f"override {name!r} has no GGUF name to export")
                lines.append(f"^{re.escape(g)}$={enc.lower()}")
        elif self.overrides:
            raise RecipeError("exporting per-tensor overrides needs the model (for GGUF names)")
        for i, r in enumerate(self.rules):
            if r.target != "gguf_name":
                raise RecipeError(f"rule {i + 1} ({r.pattern!r}) matches checkpoint names; "
                                  "llama-quantize matches GGUF names")
            lines.append(f"{r.as_regex()}={r.encoding.lower()}")
        return lines

    @classmethod
    def from_tensor_type_lines(cls, lines: Iterable[str], *, preset: str | None = None,
                               ) -> Recipe:
        """Rules from ``REGEX=TYPE`` lines (``--tensor-type`` prefixes and # comments allowed)."""
        rules: list[Rule] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            for prefix in ("--tensor-type=", "--tensor-type "):
                if line.startswith(prefix):
                    line = line[len(prefix):].strip()
            rules.append(Rule.parse(line, target="gguf_name"))
        return cls(preset=preset, rules=rules)
