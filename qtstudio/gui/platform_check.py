"""Find a Qt platform plugin that can load, before QApplication aborts without saying why.

On Linux, Qt's xcb plugin (PySide6/Qt/plugins/platforms/libqxcb.so) needs system libraries a
fresh Debian/Ubuntu machine lacks (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1 ...). When
one is missing, Qt prints "no Qt platform plugin could be initialized ... Reinstalling the
application may fix this problem" and aborts, which is wrong advice. This module resolves every
library the plugin needs (through ``ldd`` when present, else by reading the ELF files' needed
entries and searching the linker's paths) and returns one line naming each missing library and
the package that provides it; when the session also has Wayland and the wayland plugin's
libraries are all there, it switches to that plugin instead.

No Qt import here: the whole point is to run before Qt loads its plugins.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

#: sonames whose Debian/Ubuntu package name does not follow from the soname
_PACKAGES = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgobject-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libgio-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g",
    "libgcc_s.so.1": "libgcc-s1",
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
    "libdl.so.2": "libc6",
    "libpthread.so.0": "libc6",
    "librt.so.1": "libc6",
    "libGLX.so.0": "libglx0",
    "libxcb-util.so.1": "libxcb-util1",
}

_SONAME = re.compile(r"^(?P<stem>lib.+?)\.so\.(?P<version>[0-9]+)(?:\.[0-9.]+)?$")

#: where glibc's loader looks after RUNPATH, LD_LIBRARY_PATH and its cache
_DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib",
                 "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                 "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")

_XCB = "libqxcb.so"
_WAYLAND = ("libqwayland.so", "libqwayland-generic.so", "libqwayland-egl.so")


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname``, by the library packaging policy:
    the name before ``.so``, lower-cased, then the major version (with a ``-`` when the name
    already ends in a digit): libxcb-cursor.so.0 -> libxcb-cursor0, libX11.so.6 -> libx11-6."""
    if soname in _PACKAGES:
        return _PACKAGES[soname]
    m = _SONAME.match(soname)
    if m is None:
        return soname
    stem, version = m.group("stem").lower(), m.group("version")
    return f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"


def plugin_dir() -> Path | None:
    """PySide6's folder of platform plugins, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        d = Path(root) / "Qt" / "plugins" / "platforms"
        if d.is_dir():
            return d
    return None


# ---- resolving libraries -------------------------------------------------------------------

LddRunner = Callable[[Path], "str | None"]


def run_ldd(path: Path) -> str | None:
    """``ldd``'s output for ``path``, or None when there is no usable ldd."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        res = subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=20,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = res.stdout + res.stderr
    if res.returncode != 0 and "=>" not in out:
        return None
    return out


def parse_ldd(output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``not found``, in its order, once each."""
    missing: list[str] = []
    for line in output.splitlines():
        if "=>" in line and "not found" in line.split("=>", 1)[1]:
            name = line.split("=>", 1)[0].strip()
            if name and name not in missing:
                missing.append(name)
    return missing


@dataclass
class _Elf:
    needed: list[str]
    runpath: list[str]


def read_elf_dynamic(path: Path) -> _Elf | None:
    """DT_NEEDED and DT_RUNPATH/DT_RPATH of a 64- or 32-bit little/big-endian ELF file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return None
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    try:
        if is64:
            phoff, = struct.unpack_from(end + "Q", data, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
        else:
            phoff, = struct.unpack_from(end + "I", data, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
        loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
        dyn_off = dyn_size = None
        for i in range(min(phnum, 256)):
            base = phoff + i * phentsize
            if is64:
                p_type, _flags, off, vaddr, _pa, filesz = struct.unpack_from(
                    end + "IIQQQQ", data, base)
            else:
                p_type, off, vaddr, _pa, filesz = struct.unpack_from(end + "IIIII", data, base)
            if p_type == 1:
                loads.append((vaddr, off, filesz))
            elif p_type == 2:
                dyn_off, dyn_size = off, filesz
        if dyn_off is None:
            return _Elf([], [])
        entry = struct.Struct(end + ("qQ" if is64 else "iI"))
        needed_off: list[int] = []
        run_off: list[int] = []
        strtab = None
        for pos in range(dyn_off, dyn_off + (dyn_size or 0), entry.size):
            tag, val = entry.unpack_from(data, pos)
            if tag == 0:
                break
            if tag == 1:
                needed_off.append(val)
            elif tag in (15, 29):  # DT_RPATH, DT_RUNPATH
                run_off.append(val)
            elif tag == 5:
                strtab = val
        if strtab is None:
            return _Elf([], [])
        # DT_STRTAB holds a virtual address: map it to a file offset through the load segments
        str_file = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz),
                        strtab)

        def cstr(o: int) -> str:
            s = str_file + o
            return data[s:data.index(b"\0", s)].decode("utf-8", "replace")

        runpath = [d for o in run_off for d in cstr(o).split(":") if d]
        return _Elf([cstr(o) for o in needed_off], runpath)
    except (struct.error, ValueError):
        return None


def _ldconfig_dirs() -> list[str]:
    dirs: list[str] = []
    for conf in [Path("/etc/ld.so.conf"), *sorted(Path("/etc/ld.so.conf.d").glob("*.conf"))]:
        try:
            lines = conf.read_text().splitlines()
        except OSError:
            continue
        dirs += [ln.strip() for ln in lines if ln.strip().startswith("/")]
    return dirs


def missing_by_search(path: Path, search_dirs: list[str] | None = None) -> list[str]:
    """Without ldd: follow DT_NEEDED from ``path`` through the loader's search order and
    return the libraries found nowhere."""
    env_dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    base_dirs = search_dirs if search_dirs is not None else (
        env_dirs + _ldconfig_dirs() + list(_DEFAULT_DIRS))
    missing: list[str] = []
    seen: set[str] = set()
    todo = [path]
    while todo and len(seen) < 500:
        lib = todo.pop()
        elf = read_elf_dynamic(lib)
        if elf is None:
            continue
        origin = str(lib.resolve().parent)
        dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in elf.runpath]
        for name in elf.needed:
            if name in seen:
                continue
            seen.add(name)
            found = next((Path(d) / name for d in [*dirs, *base_dirs]
                          if (Path(d) / name).is_file()), None)
            if found is None:
                missing.append(name)
            else:
                todo.append(found)
    return missing


def missing_libraries(plugin: Path, ldd: LddRunner | None = None) -> list[str]:
    """Every shared library ``plugin`` needs (directly or through another) that cannot be
    found, ldd-style."""
    out = (ldd or run_ldd)(plugin)
    if out is not None:
        return parse_ldd(out)
    return missing_by_search(plugin)


# ---- the decision ----------------------------------------------------------------------------

@dataclass
class PlatformDecision:
    ok: bool
    message: str | None = None  # one line for stderr, or None
    platform: str | None = None  # what QT_QPA_PLATFORM was set to, when this module chose


def missing_line(missing: list[str]) -> str:
    packages = list(dict.fromkeys(debian_package(m) for m in missing))
    return (f"Qt's xcb platform plugin cannot load: missing {', '.join(missing)}; on "
            f"Debian/Ubuntu install them with: sudo apt-get install {' '.join(packages)}")


def check_platform(env: MutableMapping[str, str] | None = None, *,
                   plugins: Path | None = None, ldd: LddRunner | None = None,
                   platform: str = sys.platform) -> PlatformDecision:
    """Decide whether Qt can start its platform plugin; may set ``QT_QPA_PLATFORM=wayland``
    in ``env`` (default ``os.environ``) when xcb cannot load and Wayland can."""
    env = os.environ if env is None else env
    if not platform.startswith("linux"):
        return PlatformDecision(True)
    requested = env.get("QT_QPA_PLATFORM", "").split(":", 1)[0].strip()
    if requested and requested != "xcb":
        return PlatformDecision(True)  # offscreen, wayland, vnc ...: the user chose
    d = plugins if plugins is not None else plugin_dir()
    if d is None or not (d / _XCB).is_file():
        return PlatformDecision(True)  # not a PySide6 wheel layout; let Qt speak for itself
    missing = missing_libraries(d / _XCB, ldd)
    if not missing:
        if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY") and not requested:
            return PlatformDecision(False, "no display to open the window on (DISPLAY and "
                                           "WAYLAND_DISPLAY are unset): run qtstudio in a "
                                           "desktop session or under xvfb-run")
        return PlatformDecision(True)
    line = missing_line(missing)
    if env.get("WAYLAND_DISPLAY") and requested != "xcb":
        for name in _WAYLAND:
            wl = d / name
            if wl.is_file() and not missing_libraries(wl, ldd):
                env["QT_QPA_PLATFORM"] = "wayland"
                return PlatformDecision(True, f"{line}. Using the Wayland platform meanwhile.",
                                        "wayland")
    return PlatformDecision(False, line)


def ensure_platform(env: Mapping[str, str] | None = None, *, prog: str = "qtstudio") -> None:
    """Run :func:`check_platform` and act on it: a note on stderr, or exit status 1."""
    decision = check_platform(os.environ if env is None else env)  # type: ignore[arg-type]
    if decision.message:
        print(f"{prog}: {decision.message}", file=sys.stderr)
    if not decision.ok:
        raise SystemExit(1)
