"""`qtstudio-cli info`: version, CPU features, kernel level and encodings."""

from __future__ import annotations

import argparse
import json

import qtstudio
from qtstudio import kernels


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="version, CPU features, kernel level, encodings")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def collect() -> dict:
    encs = qtstudio.encodings()
    return {
        "version": qtstudio.__version__,
        "native_version": kernels.version(),
        "cpu_features": kernels.cpu_features(),
        "isa_levels": [i.name.lower() for i in kernels.available_isas()],
        "active_isa": kernels.active_isa().name.lower(),
        "encodings": [
            {
                "name": e.name,
                "ggml_type": e.ggml_type,
                "elements_per_block": e.elements_per_block,
                "block_bytes": e.block_bytes,
                "bpw": e.bpw,
                "uses_imatrix": e.uses_imatrix,
                "formats": sorted(e.export_formats),
            }
            for e in encs
        ],
    }


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"qtstudio {data['version']} (native library {data['native_version']})")
    print(f"CPU features: {' '.join(data['cpu_features']) or 'none detected'}")
    print(f"kernel levels: {', '.join(data['isa_levels'])}; active: {data['active_isa']}")
    print("encodings:")
    print(f"  {'name':<8} {'ggml':>4} {'block':>5} {'bytes':>5} {'bpw':>7}  formats")
    for e in data["encodings"]:
        ggml = "-" if e["ggml_type"] is None else str(e["ggml_type"])
        print(f"  {e['name']:<8} {ggml:>4} {e['elements_per_block']:>5} {e['block_bytes']:>5} "
              f"{e['bpw']:>7.4g}  {', '.join(e['formats'])}")
    return 0
