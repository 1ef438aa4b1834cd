"""Find and load the native library that the package build placed next to this module."""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig
from pathlib import Path

_LIB_NAMES = {"linux": "libqtnative.so", "darwin": "libqtnative.dylib", "win32": "qtnative.dll"}
ENV_OVERRIDE = "QTSTUDIO_NATIVE_LIB"


def _library_name() -> str:
    return _LIB_NAMES.get(sys.platform, "libqtnative.so")


def candidate_paths() -> list[Path]:
    """Where the library may live, most specific first.

    A regular install puts it beside this file. An editable install (scikit-build-core's
    redirect mode) keeps Python sources in the checkout but installs the compiled library into
    site-packages, so the platform library folders are searched too.
    """
    name = _library_name()
    paths: list[Path] = []
    env = os.environ.get(ENV_OVERRIDE)
    if env:
        paths.append(Path(env))
    paths.append(Path(__file__).resolve().parent / name)
    for key in ("platlib", "purelib"):
        root = sysconfig.get_path(key)
        if root:
            paths.append(Path(root) / "qtstudio" / "kernels" / name)
    seen: set[Path] = set()
    unique = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def load_library() -> ctypes.CDLL:
    tried = []
    for path in candidate_paths():
        if path.is_file():
            return ctypes.CDLL(str(path))
        tried.append(str(path))
    raise OSError(
        "qtstudio's native library was not found; build it with `pip install -e .` "
        f"(or set {ENV_OVERRIDE}). Looked in: " + ", ".join(tried)
    )
