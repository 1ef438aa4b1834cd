"""A new user's first hour: the platform check before Qt, `demo` everywhere a model is taken,
Ctrl-C during start-up, and the window really opening on an X server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qtstudio.cli import main
from qtstudio.gui import platform_check as pc

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd5d1f2000)
\tlibQt6XcbQpa.so.6 => /opt/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x1)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibX11-xcb.so.1 => /lib/x86_64-linux-gnu/libX11-xcb.so.1 (0x2)
\tlibxkbcommon-x11.so.0 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0b1c20c000)
"""
LDD_OK = "\tlibwayland-client.so.0 => /lib/x86_64-linux-gnu/libwayland-client.so.0 (0x1)\n"


@pytest.fixture
def fake_plugins(tmp_path) -> Path:
    d = tmp_path / "platforms"
    d.mkdir()
    for name in ("libqxcb.so", "libqwayland.so", "libqoffscreen.so"):
        (d / name).write_bytes(b"\x7fELF not really")
    return d


def fake_ldd(ok: set[str]):
    calls: list[str] = []

    def run(path: Path) -> str:
        calls.append(path.name)
        return LDD_OK if path.name in ok else LDD_MISSING

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_parse_ldd_lists_every_missing_library_once():
    assert pc.parse_ldd(LDD_MISSING) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4",
                                         "libxcb-keysyms.so.1", "libxkbcommon-x11.so.0"]
    assert pc.parse_ldd(LDD_OK) == []


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"), ("libxcb-render-util.so.0",
                                                 "libxcb-render-util0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"), ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libX11.so.6", "libx11-6"), ("libEGL.so.1", "libegl1"), ("libGL.so.1", "libgl1"),
    ("libfontconfig.so.1", "libfontconfig1"), ("libdbus-1.so.3", "libdbus-1-3"),
    ("libglib-2.0.so.0", "libglib2.0-0"), ("libz.so.1", "zlib1g"),
])
def test_debian_package_names(soname, package):
    assert pc.debian_package(soname) == package


def test_missing_xcb_libraries_give_one_line_naming_all_and_their_packages(fake_plugins):
    env = {"DISPLAY": ":0"}
    d = pc.check_platform(env, plugins=fake_plugins, ldd=fake_ldd(set()), platform="linux")
    assert not d.ok
    assert "\n" not in d.message
    for lib, pkg in (("libxcb-cursor.so.0", "libxcb-cursor0"),
                     ("libxcb-icccm.so.4", "libxcb-icccm4"),
                     ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
                     ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0")):
        assert lib in d.message and pkg in d.message
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 " \
           "libxkbcommon-x11-0" in d.message
    assert "Reinstalling" not in d.message
    assert "QT_QPA_PLATFORM" not in env


def test_wayland_is_used_when_xcb_cannot_load_and_the_session_has_it(fake_plugins):
    env = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}
    d = pc.check_platform(env, plugins=fake_plugins, ldd=fake_ldd({"libqwayland.so"}),
                          platform="linux")
    assert d.ok and d.platform == "wayland" and env["QT_QPA_PLATFORM"] == "wayland"
    assert "libxcb-cursor0" in d.message and "Wayland" in d.message
    # the wayland plugin itself lacking libraries: no switch, the xcb line and a failure
    env = {"WAYLAND_DISPLAY": "wayland-0"}
    d = pc.check_platform(env, plugins=fake_plugins, ldd=fake_ldd(set()), platform="linux")
    assert not d.ok and "QT_QPA_PLATFORM" not in env


def test_xcb_fine_and_other_platforms_are_left_alone(fake_plugins):
    ldd = fake_ldd({"libqxcb.so"})
    assert pc.check_platform({"DISPLAY": ":0"}, plugins=fake_plugins, ldd=ldd,
                             platform="linux").ok
    ldd = fake_ldd(set())
    for chosen in ("offscreen", "wayland", "minimal"):
        assert pc.check_platform({"QT_QPA_PLATFORM": chosen}, plugins=fake_plugins, ldd=ldd,
                                 platform="linux").ok
    assert pc.check_platform({}, plugins=fake_plugins, ldd=ldd, platform="darwin").ok
    assert ldd.calls == []
    d = pc.check_platform({}, plugins=fake_plugins, ldd=fake_ldd({"libqxcb.so"}),
                          platform="linux")
    assert not d.ok and "DISPLAY" in d.message


def test_app_exits_1_with_the_line_before_creating_qt(fake_plugins, monkeypatch, capsys):
    from qtstudio.gui import app

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(pc, "plugin_dir", lambda: fake_plugins)
    monkeypatch.setattr(pc, "run_ldd", fake_ldd(set()))

    def no_qt(*a, **k):
        raise AssertionError("QApplication must not be created")

    monkeypatch.setattr(app, "create_application", no_qt)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(SystemExit) as exc:
        app.main([])
    assert exc.value.code == 1
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # put back
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qtstudio: Qt's xcb platform plugin")


def test_without_ldd_the_elf_files_are_followed():
    d = pc.plugin_dir()
    if d is None or not (d / "libqxcb.so").is_file():
        pytest.skip("PySide6 has no xcb plugin here")
    elf = pc.read_elf_dynamic(d / "libqxcb.so")
    assert elf is not None and "libxcb.so.1" in elf.needed and "libQt6Gui.so.6" in elf.needed
    # the Qt libraries come through the plugin's $ORIGIN RUNPATH; system ones need the system
    nowhere = pc.missing_by_search(d / "libqxcb.so", search_dirs=[])
    assert "libxcb-cursor.so.0" in nowhere and "libxcb.so.1" in nowhere
    assert not any(n.startswith("libQt6") for n in nowhere)
    # on this machine the window starts, so ldd and the search agree that nothing is missing
    assert pc.missing_by_search(d / "libqxcb.so") == pc.missing_libraries(d / "libqxcb.so") == []
    assert pc.missing_libraries(d / "libqxcb.so", ldd=lambda p: None) == []


# ---- `demo` everywhere a model is taken ------------------------------------------------------

DEMO_COMMANDS = [
    ["inspect", "demo"],
    ["plan", "demo", "--preset", "Q4_K_M"],
    ["quantize", "demo", "--preset", "Q4_K_M", "--report", "{tmp}/r.json", "--quiet"],
    ["optimize", "demo", "--target-bpw", "4.5", "--out", "{tmp}/o.json", "--quiet"],
    ["bench", "demo", "--preset", "Q4_0", "--repeats", "1", "--quiet"],
    ["whatif", "demo", "--encodings", "Q8_0,Q4_K", "--quiet"],
    ["export", "demo", "--preset", "Q4_K_M", "-o", "{tmp}/out.gguf", "--quiet"],
    ["export", "demo", "--format", "nnef", "--preset", "Q4_0", "-o", "{tmp}/out.nnef.tgz",
     "--quiet"],
    ["eval", "demo", "--preset", "Q4_0"],
]


@pytest.mark.parametrize("argv", DEMO_COMMANDS, ids=lambda a: "-".join(a[:3:2]))
def test_demo_is_a_model_for_every_command(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no file called demo here
    assert main([a.format(tmp=tmp_path) for a in argv]) == 0
    assert "no such file" not in capsys.readouterr().err


def test_a_local_demo_folder_is_reached_as_dot_slash(tmp_path, monkeypatch, capsys):
    from tests.helpers.raw_checkpoints import write_hf_llama

    write_hf_llama(tmp_path / "demo")
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", "./demo"]) == 0
    assert "model.layers.0" in capsys.readouterr().out
    assert main(["inspect", "demo"]) == 0
    assert "fc1.weight" in capsys.readouterr().out


# ---- Ctrl-C during start-up ----------------------------------------------------------------

@pytest.mark.parametrize("entry", ["cli", "gui"])
def test_ctrl_c_during_start_up_prints_no_traceback(entry, tmp_path):
    """Ctrl-C at several moments while the entry point loads numpy, the native library, Qt
    and the demo model. The child says "go" once the interpreter is up and the console script's
    own few-millisecond import (qtstudio/__init__ and qtstudio.launch: no numpy, no Qt) is done,
    where the guarded part of start-up begins."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QTSTUDIO_DEBUG": ""}
    args = ["eval", "demo"] if entry == "cli" else []
    seen = set()
    for delay in (0.02, 0.1, 0.3, 0.6):  # after "go": past the harness's own line
        proc = subprocess.Popen(
            [sys.executable, "-c",
             f"import sys; from qtstudio.launch import {entry}; sys.stderr.write('go\\n'); "
             f"sys.stderr.flush(); sys.exit({entry}())", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
            cwd=tmp_path)
        assert proc.stderr.readline() == "go\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        if entry == "gui":
            time.sleep(1.5)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # a window that came up closes on Ctrl-C too
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        # 130: stopped while loading; 0: already done (cli) or window closed (gui); -2: it
        # landed while the interpreter was shutting down (its handlers are reset by then)
        assert proc.returncode in (130, 0, -signal.SIGINT), (delay, proc.returncode, err)
        assert proc.returncode != 130 or "interrupted" in err or "stopped by Ctrl-C" in err
        seen.add(proc.returncode)
    assert 130 in seen


# ---- the window on a real X server ---------------------------------------------------------

@pytest.mark.slow
def test_window_opens_under_xvfb(tmp_path):
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are not installed (apt-get install xvfb xdotool)")
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            display = ":" + f.readline().strip()
        env = {k: v for k, v in os.environ.items()
               if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        env["DISPLAY"] = display
        app = subprocess.Popen([sys.executable, "-c", "import sys; from qtstudio.launch import "
                                "gui; sys.exit(gui())", "demo"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name",
                                    "qtstudio"], env=env, capture_output=True, text=True,
                                   timeout=90)
            assert found.stdout.strip(), "no visible qtstudio window"
            geometry = subprocess.run(["xdotool", "getwindowgeometry",
                                       found.stdout.split()[0]], env=env, capture_output=True,
                                      text=True, timeout=10).stdout
            assert "Geometry" in geometry
            time.sleep(2)  # the demo's showcase plan, then the event loop
        finally:
            app.send_signal(signal.SIGINT)
            _, err = app.communicate(timeout=30)
        # 0: closed from the event loop; 130: the signal still caught start-up (a loaded machine)
        assert app.returncode in (0, 130), err
        assert "Traceback" not in err
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


# ---- smaller first-hour items ----------------------------------------------------------------

def test_a_rule_that_matches_nothing_warns(capsys):
    assert main(["plan", "demo", "--preset", "Q4_K_M", "--rule", "attn_v=Q8_0"]) == 0
    err = capsys.readouterr().err
    assert "warning: rule attn_v=Q8_0 matches no tensor" in err and "fc1.weight" in err
    assert main(["plan", "demo", "--preset", "Q4_K_M", "--rule", "fc2=Q8_0"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert any(line.startswith("fc2.weight") and "Q8_0" in line
               for line in captured.out.splitlines())


def test_eval_demo_shows_progress(capsys):
    assert main(["eval", "demo", "--preset", "Q4_0"]) == 0
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("[")]
    # the first report is drawn at once, the final one always; those between are throttled
    assert "float model" in progress[0] and progress[0].split()[1] == "0.0%"
    assert progress[-1].split()[1] == "100.0%" and len(progress) >= 2
    assert "quantized accuracy" in captured.out
    assert main(["eval", "demo", "--preset", "Q4_0", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_whatif_on_demo_says_which_tensors_cannot_take_an_encoding(capsys):
    assert main(["whatif", "demo", "--encodings", "Q8_0,Q4_K", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert ("note: Q4_K: 2 of the 3 selected tensors cannot take it: fc1.weight (row length 64 "
            "is not a multiple of Q4_K's block of 256), fc3.weight (row length 128") in err
    assert "Q8_0" not in err


def test_nnef_export_reports_progress_before_building_the_graph(tmp_path, monkeypatch, capsys):
    """The first progress line comes before the (slow) graph rebuild, not after it."""
    import qtstudio.export.nnef.sources as sources

    seen_before_build: list[str] = []
    real = sources.source_for

    def slow_source(*a, **k):
        seen_before_build.append(capsys.readouterr().err)
        return real(*a, **k)

    monkeypatch.setattr(sources, "source_for", slow_source)
    out = tmp_path / "d.nnef.tgz"
    assert main(["export", "demo", "--format", "nnef", "--preset", "Q4_0", "-o", str(out)]) == 0
    assert seen_before_build and "building the graph of model.safetensors" in \
        seen_before_build[0]
    assert out.is_file()


def test_bench_leaves_integer_tensors_out(tmp_path, capsys):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w.weight": np.random.default_rng(0).standard_normal((64, 256)).astype(
        np.float32), "position_ids": np.arange(512, dtype=np.int64)[None]}, path)
    assert main(["bench", str(path), "--preset", "Q4_0", "--quiet", "--repeats", "1"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "w.weight" in rows and "position_ids" not in rows
    assert main(["inspect", str(path), "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert {t["name"]: t["quantizable"] for t in doc["tensors"]}["position_ids"] is False
