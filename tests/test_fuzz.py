"""Mutation fuzzing of every reader, bounded for CI: a fixed number of hypothesis examples per
reader, derandomized so a run is repeatable. Each mutated file must be read to the end or be
refused with one of our errors; no case may take 5 s, and a reader's batch may not raise the
process's peak memory by 256 MiB. scripts/fuzz_campaign.py runs the same mutations at length.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import fuzz_targets as ft

pytestmark = pytest.mark.fuzz

EXAMPLES = 250  # per reader: the whole module runs in well under two minutes on 2 cores
SLOW_S = 5.0
RSS_LIMIT_KIB = 256 * 1024

OPS = st.lists(st.tuples(st.integers(0, ft.N_OPS - 1), st.integers(0, 2**32 - 1),
                         st.integers(0, 2**32 - 1)), min_size=1, max_size=4)


@functools.cache
def _seed(name: str) -> ft.Seed:
    return ft.READERS[name].seed()


@pytest.mark.parametrize("name", list(ft.READERS))
def test_reader_survives_mutations(name):
    reader = ft.READERS[name]
    seed = _seed(name)
    ours = ft.our_errors()
    stats = {"cases": 0, "ours": 0, "ok": 0, "slowest": 0.0}

    with tempfile.TemporaryDirectory(dir=ft.scratch_dir(), prefix="qtfuzz-") as tmp:
        folder = Path(tmp)

        @settings(max_examples=EXAMPLES, deadline=SLOW_S * 1000, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))
        @given(ops=OPS)
        def one_case(ops):
            data = ft.mutate(reader, seed.files[seed.mutable], ops)
            path = ft.write_case(folder, seed, data)
            t0 = time.perf_counter()
            try:
                reader.read(path)
                stats["ok"] += 1
            except ours as exc:
                stats["ours"] += 1
                # our errors name the file they are about
                assert str(path) in str(exc) or path.name in str(exc) or any(
                    f in str(exc) for f in seed.files), exc
            finally:
                stats["cases"] += 1
                stats["slowest"] = max(stats["slowest"], time.perf_counter() - t0)

        can_reset = ft.peak_rss_reset()
        before = ft.rss_kib("VmRSS" if can_reset else "VmHWM")
        one_case()
        grew = ft.rss_kib("VmHWM") - before

    assert stats["cases"] >= EXAMPLES
    assert stats["slowest"] < SLOW_S, stats
    assert grew < RSS_LIMIT_KIB, f"peak RSS grew by {grew} KiB during {name} fuzzing"
    # the mutations must reach past the first check: some files still read, some are refused
    assert stats["ours"] > 0, stats
    if name not in ("shard_index", "recipe"):
        assert stats["ok"] > 0, stats


def test_every_seed_reads_cleanly():
    """Unmutated, every seed is a valid file of its kind (so mutations start from real data)."""
    for name, reader in ft.READERS.items():
        seed = _seed(name)
        with tempfile.TemporaryDirectory(dir=ft.scratch_dir()) as tmp:
            path = ft.write_case(Path(tmp), seed, seed.files[seed.mutable])
            assert reader.read(path) > 0, name


def test_mutations_hit_the_classes_users_met(tmp_path):
    """The structured mutations produce the damage classes of issue 15 among their outputs."""
    from qtstudio.formats import open_model

    gguf_seed = _seed("gguf").files["model.gguf"]
    q8k = ft._GGML_TYPES.index(15)
    for b, why in ((6 * q8k + 1, "Q8_K data cannot be decoded"), (0, "has a zero dimension")):
        p = tmp_path / f"{b}.gguf"
        p.write_bytes(ft.gguf_structured(gguf_seed, 3, b))  # tensor 3: blk.1.attn_norm.weight
        with open_model(p) as m:
            assert [t.name for t in m.unreadable] == ["blk.1.attn_norm.weight"]
            assert why in m.unreadable[0].unreadable
    st_seed = _seed("safetensors").files["model.safetensors"]
    # a header length that is 128 mod 256 (first byte 0x80)
    assert ft.safetensors_structured(st_seed, 0, 0)[0] == 0x80
    # a thousand-digit integer spliced into JSON
    assert any(ft.BIG_DIGITS.encode() in ft.safetensors_structured(st_seed, a, b)
               for a in range(40) for b in range(40))
